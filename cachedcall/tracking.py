"""Redis client tracking: one RESP3 connection per process that hears of every change.

The near tier (:mod:`cachedcall.near`) keeps Redis entries and counters in process memory
and must learn of every write to them. Redis 6+ tells a client so ("client tracking"): a
connection that says ``HELLO 3`` and ``CLIENT TRACKING ON BCAST PREFIX <p>`` receives an
``invalidate`` push naming every key under ``<p>`` that any client writes, deletes, or that
expires or is evicted, and a null one when a database is flushed. Broadcasting mode needs
no server memory per key read, and lets the reads themselves go through Django's own
connections (and our fast readers) unchanged.

This module speaks the few frames of RESP3 that this takes over a plain socket (TCP,
TLS or a Unix socket, from the alias's ``LOCATION`` URL), so no private member of redis-py
is needed. The connection is non-blocking once set up: :meth:`Tracker.drain` reads what the
kernel holds without waiting (until the socket is empty), so a near hit costs a ``recv``
syscall and no round trip, and sees every push that reached this process before the hit
began; while a push is half read, nothing kept is served. A daemon thread also drains it
whenever data arrives, so an idle process never lets pushes pile up in Redis's output
buffer. A quiet connection is sent a ``PING`` every second; one that answers nothing for
:data:`SILENCE` seconds is treated as broken, and nothing kept is served meanwhile (a
partition or a failover need not close a socket).

What can lag: a push travels one way from Redis to this process, written by Redis in the
same event-loop turn that answered the write. A read that starts in this process after the
writer's command returned, but before the push reached this socket (loopback: microseconds;
a network: its one-way latency), can still be served the old entry. When the connection
breaks, everything held is dropped at once and nothing is held until it is back (tried
again at most once a second).

Process state: none of its own (each :class:`Tracker` belongs to the near tier's table).
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from cachedcall.resp3 import Incomplete
from cachedcall.resp3 import ReplyError
from cachedcall.resp3 import command
from cachedcall.resp3 import parse

__all__: list[str] = []

logger = logging.getLogger("cachedcall")

#: Seconds to connect and to set tracking up; and between two attempts after a failure.
CONNECT_TIMEOUT = 1.0
RETRY_AFTER = 1.0
#: A quiet connection is asked for a sign of life (PING) after PING_INTERVAL seconds and
#: dropped when none came PING_TIMEOUT seconds later; nothing kept is served from one not
#: heard from for SILENCE seconds.
PING_INTERVAL = 1.0
PING_TIMEOUT = 1.0
SILENCE = PING_INTERVAL + PING_TIMEOUT
PING = b"*1\r\n$4\r\nPING\r\n"


class Tracker:
    """One tracking connection: it calls ``on_keys(keys)`` for every invalidated key (Redis
    key names, as bytes) and ``on_flush()`` when everything must go.

    :meth:`drain` and :meth:`lost` are called with the near tier's lock (``lock``) held;
    :meth:`connect_if_due` without it (it connects outside it, and installs the socket
    under it), so that a server that does not answer stalls no near hit of another alias.
    """

    def __init__(
        self,
        where: dict[str, Any],
        prefix: str,
        lock: threading.Lock,
        on_keys: Callable[[list[bytes]], None],
        on_flush: Callable[[], None],
    ) -> None:
        self.where = where
        self.prefix = prefix
        self.lock = lock
        self.on_keys = on_keys
        self.on_flush = on_flush
        self.sock: socket.socket | None = None
        self.buffer = bytearray()
        self.pid = os.getpid()
        self.retry_at = 0.0
        self.closed = False
        #: When bytes last came in, and when we last asked for some (PING).
        self.received_at = 0.0
        self.pinged_at = 0.0
        #: The buffer's length when it last ended inside a frame (0: it did not).
        self.stalled = 0
        self.connecting = threading.Lock()
        self._logged = False

    @property
    def connected(self) -> bool:
        return self.sock is not None

    @property
    def fresh(self) -> bool:
        """Whether what this connection has told us is all there is to know: connected,
        heard from within :data:`SILENCE` (a connection that died without a word is not),
        and no push half read."""
        return self.sock is not None and not self.buffer and time.monotonic() - self.received_at < SILENCE

    @property
    def due(self) -> bool:
        """Whether :meth:`connect_if_due` would try to connect now."""
        return self.sock is None and not self.closed and time.monotonic() >= self.retry_at

    def connect_if_due(self) -> None:
        """Connect, unless connected, connecting in another thread, or a failure was less
        than :data:`RETRY_AFTER` ago. Call it without the near tier's lock."""
        if not self.due:
            return
        if not self.connecting.acquire(blocking=False):
            return
        try:
            if self.sock is not None:
                return
            try:
                sock, leftover = self._connect()
            except (OSError, ReplyError, ValueError, Incomplete) as exc:
                self.retry_at = time.monotonic() + RETRY_AFTER
                if not self._logged:
                    self._logged = True
                    logger.warning(
                        "cachedcall: the near tier could not set up Redis client tracking "
                        "(%s: %s); near entries are not kept until it can (tried again every "
                        "%.0f s). Further failures are not logged.",
                        type(exc).__name__,
                        exc,
                        RETRY_AFTER,
                    )
                return
            self._logged = False
            with self.lock:
                if self.closed:
                    sock.close()
                    return
                self.sock = sock
                self.buffer[:] = leftover
                self.stalled = 0
                self.received_at = self.pinged_at = time.monotonic()
                # Reads that started before tracking was on keep nothing.
                self.on_flush()
            threading.Thread(
                target=self._drainer, args=(sock,), name="cachedcall-tracking", daemon=True
            ).start()
        finally:
            self.connecting.release()

    def _connect(self) -> tuple[socket.socket, bytes]:
        where = self.where
        if "path" in where:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            sock = socket.socket(socket.AF_INET6 if ":" in where["host"] else socket.AF_INET)
        try:
            sock.settimeout(CONNECT_TIMEOUT)
            if "path" in where:
                sock.connect(where["path"])
            else:
                sock.connect((where["host"], where["port"]))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                _keepalive(sock)
                if where["tls"]:
                    sock = ssl.create_default_context().wrap_socket(sock, server_hostname=where["host"])
            hello: list[str | bytes] = ["HELLO", "3"]
            if where["password"] is not None:
                hello += ["AUTH", where["username"] or "default", where["password"]]
            self._ask(sock, command(*hello))
            self._ask(sock, command("CLIENT", "SETNAME", "cachedcall-near"))
            leftover = self._ask(sock, command("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", self.prefix))
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        return sock, leftover

    def _ask(self, sock: socket.socket, request: bytes) -> bytes:
        # Blocking, during set-up only. Returns what came after the reply: once tracking is
        # on, a push may follow it in the same read.
        sock.sendall(request)
        buf = bytearray()
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise OSError("Redis closed the connection")
            buf += chunk
            try:
                reply, end = parse(buf)
            except Incomplete:
                continue
            if isinstance(reply, ReplyError):
                raise reply
            return bytes(buf[end:])

    def drain(self, force: bool = False) -> None:
        """Read and apply every push this socket holds now, without waiting; ask for a sign
        of life (PING) when it has been quiet, and drop the connection when none comes."""
        sock = self.sock
        if sock is None:
            return
        got = 0
        try:
            while True:
                chunk = sock.recv(262144)
                if not chunk:
                    raise OSError("Redis closed the tracking connection")
                self.buffer += chunk
                got += len(chunk)
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
        except OSError:
            self.lost()
            return
        now = time.monotonic()
        if got:
            self.received_at = now
        # A push that arrives over many reads is parsed again from its start each time:
        # only once the buffer has doubled since it last stopped inside a frame (or when
        # the socket went quiet, ``force``), so that a large push costs linear time. Until
        # then ``fresh`` is false: nothing kept is served while a push is half read.
        if self.buffer and (force or len(self.buffer) >= 2 * self.stalled):
            self._apply()
        if self.sock is None:
            return
        if self.pinged_at > self.received_at:
            if now - self.pinged_at > PING_TIMEOUT:
                self.lost()  # asked, and no answer: a dead connection that said nothing
        elif now - self.received_at >= PING_INTERVAL:
            try:
                sock.send(PING)
            except OSError:
                self.lost()
                return
            self.pinged_at = now

    def _apply(self) -> None:
        buf = self.buffer
        pos = 0
        try:
            while pos < len(buf):
                frame, pos = parse(buf, pos)
                if type(frame) is tuple and frame[0] == "push" and frame[1][:1] == [b"invalidate"]:
                    keys = frame[1][1] if len(frame[1]) > 1 else None
                    if keys is None:
                        self.on_flush()
                    else:
                        self.on_keys(keys)
        except Incomplete:
            del buf[:pos]
            self.stalled = len(buf)
            return
        except ValueError:
            self.lost()  # out of step with the stream: start over on a new connection
            return
        del buf[:pos]
        self.stalled = 0

    def lost(self) -> None:
        """The connection broke, or this is a forked child (whose copy of the parent's
        socket must never be read): drop it and all held."""
        sock, self.sock = self.sock, None
        self.buffer.clear()
        self.stalled = 0
        forked = self.pid != os.getpid()
        # A child connects at once; a broken connection is tried again after a pause.
        self.retry_at = 0.0 if forked else time.monotonic() + RETRY_AFTER
        self.pid = os.getpid()
        if sock is not None:
            # In a child this closes its copy of the descriptor only: the parent's
            # connection stays open (nothing is sent on close).
            sock.close()
        self.on_flush()

    def forked(self) -> None:
        """In a child, right after ``fork()``: forget the parent's connection."""
        self.connecting = threading.Lock()
        self.lost()

    def close(self) -> None:
        self.closed = True
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()

    def _drainer(self, sock: socket.socket) -> None:
        # Wakes when a push arrives, and every PING_INTERVAL / 2 to keep the connection's
        # liveness known; a hit drains too, so freshness does not rest on this thread.
        with selectors.DefaultSelector() as selector:
            try:
                selector.register(sock, selectors.EVENT_READ)
            except (OSError, ValueError):
                return  # closed (forget(), a fork, a loss) before this thread started
            while self.sock is sock:
                try:
                    ready = selector.select(PING_INTERVAL / 2)
                except (OSError, ValueError):
                    break
                with self.lock:
                    if self.sock is sock:
                        self.drain(force=not ready)
        if self.sock is sock:  # pragma: no cover - the selector itself failed
            logger.warning("cachedcall: the near tier's tracking thread stopped; hits still drain.")


def _keepalive(sock: socket.socket) -> None:
    # A peer that vanished without a FIN or RST (a partition, a failover behind the same
    # address) is found by the PINGs; keepalive also tells the kernel to look.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 1), ("TCP_KEEPCNT", 3)):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)
