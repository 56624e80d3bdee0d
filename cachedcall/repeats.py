"""Bumps repeated after the replicas' lag (``CACHEDCALL["REPLICA_LAG"]``).

With reads routed to a replica, a bump follows the primary's commit, but a reader may still
compute from a replica that has not replayed it, and store the old rows under the new
counters. Repeating every bump once the replica must have caught up makes such an entry
stale too: after the lag, nothing computed before the write can be served.

One daemon thread sleeps until the earliest repeat is due; at exit, the repeats still
waiting are made (after their delay, which is short by configuration). Each repeat logs,
at DEBUG, when the bumps it makes were due and when it landed (the promise counts from then).

Process state: the repeats waiting (``_due``, a heap under ``_lock``, with ``_wakeup``) and
the thread that makes them (``_thread``). :func:`forget` makes the waiting repeats at once
rather than dropping them: a dropped repeat could let an entry from a lagging replica live.
"""

from __future__ import annotations

import atexit
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from collections.abc import Iterable

__all__: list[str] = []

logger = logging.getLogger("cachedcall")

_lock = threading.Lock()
_wakeup = threading.Condition(_lock)
_due: list[tuple[float, int, list[str]]] = []
_order = itertools.count()  # ties in time keep their order and never compare the lists
_thread: threading.Thread | None = None


def later(keys: Iterable[str], delay: float) -> None:
    """Bump ``keys`` again in ``delay`` seconds, from the repeat thread."""
    global _thread
    keys = list(keys)
    if not keys:
        return
    with _lock:
        heapq.heappush(_due, (time.monotonic() + delay, next(_order), keys))
        if _thread is None:
            _thread = threading.Thread(target=_run, name="cachedcall-bump-repeat", daemon=True)
            _thread.start()
        _wakeup.notify()


def waiting() -> int:
    """How many repeats wait (for tests and ``stats()``)."""
    with _lock:
        return len(_due)


def _take(until: float | None) -> tuple[list[str], float, float]:
    """Pop every repeat due by ``until`` (all of them when ``None``): their keys, and when the
    first and the last of them were due (monotonic)."""
    keys: list[str] = []
    first = last = 0.0
    while _due and (until is None or _due[0][0] <= until):
        due, _, more = heapq.heappop(_due)
        first, last = first or due, due
        keys.extend(more)
    return keys, first, last


def _run() -> None:
    global _thread
    while True:
        with _lock:
            while not _due:
                if not _wakeup.wait(timeout=30.0) and not _due:
                    # Idle: the next later() starts another thread. Cleared under the lock,
                    # so later() never counts on a thread that is on its way out.
                    _thread = None
                    return
            pause = _due[0][0] - time.monotonic()
            if pause > 0:
                _wakeup.wait(timeout=pause)
                continue
            keys, first, last = _take(time.monotonic())
        _repeat(keys, first, last)


def _repeat(keys: list[str], first: float, last: float) -> None:
    from cachedcall import aliases
    from cachedcall import bumps

    # The two DEBUG records say which repeats were made (those due from ``first`` to
    # ``last``) and when they landed, on time.monotonic()'s clock, one for every process of
    # the machine: the replica promise counts from the landing, and the race harness
    # measures it from these records.
    logger.debug(
        "cachedcall: repeating the bumps of %d keys due from %.6f to %.6f (REPLICA_LAG)",
        len(keys),
        first,
        last,
    )
    try:
        bumps.bump_now(dict.fromkeys(keys), repeat=False)
    except Exception:
        logger.debug("cachedcall: repeating bumps raised", exc_info=True)
    finally:
        logger.debug("cachedcall: repeated the bumps of %d keys, landed at %.6f", len(keys), time.monotonic())
        if threading.current_thread() is _thread:
            aliases.close_thread_caches()  # our thread: no request_finished closes them


def flush(sleep: Callable[[float], None] = time.sleep) -> None:
    """Make every waiting repeat now, after waiting for the last one's delay."""
    with _lock:
        keys, first, last = _take(None)
    if not keys:
        return
    pause = last - time.monotonic()
    if pause > 0:
        sleep(pause)
    _repeat(keys, first, last)


def forget() -> None:
    """For the testing helpers: make the waiting repeats now (see the module docstring)."""
    flush(sleep=lambda pause: None)


atexit.register(flush)
