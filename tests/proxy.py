"""A TCP proxy on a free loopback port, in front of a real memcached or Redis, that a test
can partition.

``Proxy(port).start()`` listens on ``127.0.0.1:<proxy.port>`` and forwards every connection
to ``127.0.0.1:<port>``. A test switches it between three modes:

- :data:`FORWARD`: bytes pass both ways, as if the proxy were not there.
- :data:`BLACKHOLE`: a network partition. Connections are still accepted (the kernel
  would complete the handshake of a loopback connect anyway) but nothing is forwarded and
  nothing answers: what a client sends is read and dropped, so it waits for its own
  timeout, as it would for packets lost between it and the server. When the partition
  heals (back to :data:`FORWARD`), the connections that lost bytes are closed (their
  streams are broken: the client has given up on them, or would read garbage), and the
  ones that stayed idle forward again, as a TCP connection survives a partition it did
  not notice.
- :data:`RESET`: every open connection is reset (``SO_LINGER`` 0, so the client reads
  ``ECONNRESET``) and every new one is reset as soon as it is accepted.

The proxy runs one thread around a selector; the test's thread only sets the mode and
wakes it. Process state: none outside the instance.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading

__all__ = ["BLACKHOLE", "FORWARD", "RESET", "Proxy"]

FORWARD, BLACKHOLE, RESET = "forward", "blackhole", "reset"
_CHUNK = 65536


class _Pair:
    """One client connection and, unless it was accepted during a partition, its upstream."""

    __slots__ = ("client", "lost", "upstream")

    def __init__(self, client: socket.socket, upstream: socket.socket | None) -> None:
        self.client = client
        self.upstream = upstream
        #: Whether bytes were dropped on it (during a partition): its stream is broken.
        self.lost = False

    def other(self, sock: socket.socket) -> socket.socket | None:
        return self.upstream if sock is self.client else self.client


class Proxy:
    """A partitionable TCP proxy from ``127.0.0.1:<port>`` to ``127.0.0.1:<target>``.

    :param target: the port of the real server on the loopback interface.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        # Bound to port 0 and kept open: the port is ours from here on, no race with
        # another process picking the same free port.
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._mode = FORWARD
        self._applied = FORWARD
        self._pairs: dict[socket.socket, _Pair] = {}
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._lock = threading.Lock()
        self._switched: threading.Event | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"proxy-{self.port}", daemon=True)
        #: How many connections were accepted, and how many bytes dropped (for the tests).
        self.accepted = 0
        self.dropped = 0

    @property
    def location(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def mode(self) -> str:
        return self._mode

    def start(self) -> Proxy:
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._thread.start()
        return self

    def forward(self) -> None:
        """Heal: bytes pass again (connections that lost some are closed)."""
        self._switch(FORWARD)

    def blackhole(self) -> None:
        """Partition: accept, but never forward nor answer."""
        self._switch(BLACKHOLE)

    def reset(self) -> None:
        """Reset every connection, open or new."""
        self._switch(RESET)

    def stop(self) -> None:
        """Close every connection and the listener, and end the thread."""
        with self._lock:
            self._stopping = True
        self._wake_w.send(b"x")
        self._thread.join(5)
        for pair in {id(pair): pair for pair in self._pairs.values()}.values():
            self._close(pair)
        self._selector.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()

    def _switch(self, mode: str) -> None:
        done = threading.Event()
        with self._lock:
            self._mode = mode
            self._switched = done
        self._wake_w.send(b"x")
        # Applied by the proxy's thread before this returns, so that a test that partitions
        # and then sends knows its bytes meet the partition, not a forward still under way.
        assert done.wait(5), "the proxy's thread did not apply the switch"

    # -- the proxy's thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            for selected, _ in self._selector.select():
                sock = selected.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._wake_r:
                    self._woken()
                    if self._stopping:
                        return
                elif sock is self._listener:
                    self._accept()
                elif sock in self._pairs:  # not closed by an earlier event of this round
                    self._pump(sock)

    def _woken(self) -> None:
        try:
            self._wake_r.recv(_CHUNK)
        except BlockingIOError:
            pass
        with self._lock:
            mode, done = self._mode, self._switched
        if mode != self._applied:
            self._apply(mode)
            self._applied = mode
        if done is not None:
            done.set()

    def _apply(self, mode: str) -> None:
        # Each pair is in _pairs twice (by its client and by its upstream): once each here.
        for pair in {id(pair): pair for pair in self._pairs.values()}.values():
            if mode == RESET:
                self._close(pair, reset=True)
            elif mode == FORWARD and (pair.lost or pair.upstream is None):
                self._close(pair)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        self.accepted += 1
        if self._applied == RESET:
            _reset(client)
            return
        upstream = None
        if self._applied == FORWARD:
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:
                _reset(client)  # the server itself is down: as a refused connection
                return
            upstream.setblocking(False)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.setblocking(False)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = _Pair(client, upstream)
        self._pairs[client] = pair
        self._selector.register(client, selectors.EVENT_READ)
        if upstream is not None:
            self._pairs[upstream] = pair
            self._selector.register(upstream, selectors.EVENT_READ)

    def _pump(self, sock: socket.socket) -> None:
        pair = self._pairs[sock]
        try:
            data = sock.recv(_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(pair)
            return
        other = pair.other(sock)
        if self._applied != FORWARD or other is None:
            # The partition: what was sent never arrives.
            pair.lost = True
            self.dropped += len(data)
            return
        try:
            # Loopback, small requests: a blocking send of the chunk is simplest, and the
            # far side reads promptly (a server, or a client waiting for its reply).
            other.setblocking(True)
            other.sendall(data)
            other.setblocking(False)
        except OSError:
            self._close(pair)

    def _close(self, pair: _Pair, reset: bool = False) -> None:
        for sock in (pair.client, pair.upstream):
            if sock is None:
                continue
            self._pairs.pop(sock, None)
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            if reset:
                _reset(sock)
            else:
                sock.close()


def _reset(sock: socket.socket) -> None:
    # SO_LINGER on with a zero timeout: close() sends a RST instead of a FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
