"""Faults of a scenario, injected by the harness at fixed moments after ``t0``.

``freeze``: SIGSTOP the counters' memcached at ``t0 + 1.5 s``, SIGCONT 1.5 s later.
``kill``: kill it at ``t0 + 1.5 s``, start it again, empty, on the same port 1 s later.
``evict``: all through the run, flood a 1 MB memcached with small values (the size of a
counter, so that they share its slab class) and large ones (100 KB), and list its keys
every second (``lru_crawler metadump``, which does not touch the LRU) to count the counters
and entries that disappeared.

Process state: each :class:`Faults` thread's windows, notes and counts.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.parse
from typing import Any

from benchmarks.race.servers import Server

AT, FROZEN_FOR, DOWN_FOR = 1.5, 1.5, 1.0


class Faults(threading.Thread):
    def __init__(self, kind: str | None, server: Server | None, t0: float) -> None:
        super().__init__(name=f"race-faults-{kind}", daemon=True)
        self.kind, self.server, self.t0 = kind, server, t0
        self.stop = threading.Event()
        #: Outage windows, monotonic (start, end).
        self.windows: list[tuple[float, float]] = []
        self.counts: dict[str, Any] = {}

    def run(self) -> None:
        if self.kind is None or self.server is None:
            return
        if self.kind == "evict":
            self._flood()
            return
        self.stop.wait(max(0.0, self.t0 + AT - time.monotonic()))
        if self.stop.is_set():
            return
        start = time.monotonic()
        if self.kind == "freeze":
            self.server.freeze()
            time.sleep(FROZEN_FOR)
            self.server.thaw()
        else:
            self.server.stop()
            time.sleep(DOWN_FOR)
            self.server.start()
        self.windows.append((start, time.monotonic()))

    def _flood(self) -> None:
        from pymemcache.client.base import Client

        assert self.server is not None
        client = Client(("127.0.0.1", self.server.port), no_delay=True, connect_timeout=1, timeout=1)
        large = b"x" * 100_000
        seen: dict[str, set[str]] = {"counters": set(), "entries": set()}
        lost = {"counters": 0, "entries": 0}
        i, next_dump = 0, time.monotonic()
        while not self.stop.is_set():
            try:
                for _ in range(300):
                    i += 1
                    client.set(f":1:fill:v:race.filler:{i:012d}", i, noreply=True)
                client.set(f":1:fill:large:{i}", large, noreply=True)
                if time.monotonic() >= next_dump:
                    next_dump = time.monotonic() + 1.0
                    now = _keys(self.server.port)
                    for kind, keys in now.items():
                        lost[kind] += len(seen[kind] - keys)
                        seen[kind] = keys
            except Exception as exc:  # the flood must not end the run; say what happened
                self.counts["flood_error"] = repr(exc)
                time.sleep(0.1)
            time.sleep(0.01)
        stats = client.stats()
        client.close()
        self.counts.update(
            filler_sets=i,
            evictions=int(stats.get(b"evictions", 0)),
            counters_disappeared=lost["counters"],
            entries_disappeared=lost["entries"],
        )


def _keys(port: int) -> dict[str, set[str]]:
    """The counter and entry keys a memcached holds, without touching its LRU."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"lru_crawler metadump all\r\n")
        data = b""
        while not data.endswith(b"END\r\n") and not data.startswith(b"ERROR"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    out: dict[str, set[str]] = {"counters": set(), "entries": set()}
    for line in data.decode(errors="replace").splitlines():
        if not line.startswith("key="):
            continue
        key = urllib.parse.unquote(line.split(" ", 1)[0][4:])
        if key.startswith(":1:fill:"):
            continue
        out["counters" if ":v:" in key else "entries"].add(key)
    return out
