"""Cross-process locks through the cache itself, for ``lock=True`` and stale refreshes.

A lock is an ``add`` of a key next to the entry, with a TTL: the cache, not the holder,
ends it, so a holder that dies (a killed worker) blocks nobody longer than the TTL. The
holder deletes it after storing. Waiters poll the entry with a growing, jittered pause and
give up after their wait budget to compute themselves: a slow computation delays others
by at most the budget, never by the computation.
"""

from __future__ import annotations

import os
import random
import socket
import threading
from collections.abc import Iterator

__all__: list[str] = []

SUFFIX = ":L"
FIRST_PAUSE = 0.005
MAX_PAUSE = 0.1
_host = socket.gethostname()


def key(entry_key: str) -> str:
    """The lock key of an entry (in the entry's alias)."""
    return entry_key + SUFFIX


def token() -> str:
    """What a lock holds: who took it, for the person reading the cache by hand."""
    return f"{_host}:{os.getpid()}:{threading.get_ident()}"


def pauses(budget: float) -> Iterator[float]:
    """The pauses of a waiter, summing to ``budget``: 5 ms growing x1.5 up to 100 ms, each
    jittered by +-50% so that waiters started together do not poll together."""
    left, step = budget, FIRST_PAUSE
    while left > 0:
        pause = min(left, step * (0.5 + random.random()))
        left -= pause
        yield pause
        step = min(step * 1.5, MAX_PAUSE)
