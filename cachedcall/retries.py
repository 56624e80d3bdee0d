"""Failed bumps retried by the writer process itself, from a thread, until they land.

A writer that never makes a cached call itself (an admin process, a worker) would
otherwise leave its failed bumps undone, and every other process stale until the entries
expire. The thread exists only while some bump is dirty (:func:`cachedcall.bumps.is_dirty`):
it retries them after 0.02 s, then with the pause doubling to 0.25 s; at exit, one last try.
The longest pause is short on purpose: once the counter store answers again, other
processes read its old counters (and hit entries computed before the write) until the
retry lands, so the pause is that window. Each try uses this thread's own clients, closed
after it, so a client that marked the server dead in another thread does not hold it back.

Process state: the retry thread (``_thread``, under ``_lock``), alive only while bumps are
dirty.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time

__all__: list[str] = []

logger = logging.getLogger("cachedcall")

FIRST, LONGEST = 0.02, 0.25
_lock = threading.Lock()
_thread: threading.Thread | None = None


def wake() -> None:
    """Start the retry thread unless it runs."""
    global _thread
    with _lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="cachedcall-bump-retry", daemon=True)
            _thread.start()


def _run() -> None:
    from cachedcall import aliases
    from cachedcall import bumps

    aliases.use_fresh_backends()
    pause = FIRST
    while bumps.is_dirty():
        time.sleep(pause)
        pause = min(pause * 2, LONGEST)
        try:
            retry_now()
        finally:
            aliases.close_thread_caches()  # a thread of ours: no request_finished closes them


def retry_now() -> None:
    """Bump the dirty counters again; never raises (a settings error, say, is for the
    process's next call to report)."""
    from cachedcall import bumps

    try:
        bumps.bump_now(bumps.dirty_keys())
    except Exception:
        logger.debug("cachedcall: retrying bumps raised", exc_info=True)


@atexit.register
def _last_try() -> None:
    from cachedcall import bumps

    if bumps.is_dirty():
        retry_now()
