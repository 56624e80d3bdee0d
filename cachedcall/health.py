"""The health of the cache aliases this process uses: failures counted, outages logged once.

A backend failure is counted per alias and opens an outage window with one WARNING on
logger ``cachedcall``; the alias's next success closes it with one INFO. What is not an
outage (a value refused for its size, an entry that did not decode, a bad signature) is
counted apart, and :func:`stats` reports it all.

Process state: the counts per alias (:data:`errors`, :data:`bad_signatures`,
:data:`bump_failures`, :data:`too_large`, :data:`corrupt`), the calls that bypassed the
cache per reason (:data:`bypassed`), and the open outage windows (``_down``: alias -> since
when), under ``_lock``; :func:`forget` resets them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

__all__ = ["stats"]

logger = logging.getLogger("cachedcall")

errors: Counter[str] = Counter()
#: Bumps that failed (and wait for a retry), per alias.
bump_failures: Counter[str] = Counter()
#: Entries that did not decode (corrupt, foreign, a class renamed by a deploy), per alias.
corrupt: Counter[str] = Counter()
#: Values the backend refused for their size, per alias (not outages).
too_large: Counter[str] = Counter()
#: Entries that failed their signature check, per alias (``CACHEDCALL["SIGN"]``).
bad_signatures: Counter[str] = Counter()
#: Calls that bypassed the cache (no read, no write) because of a bump, per reason:
#: ``"pending"`` (one waits for this thread's commit), ``"error"`` (one failed and its retry
#: too). Per reason, not per alias: the decision is made before any alias is read.
bypassed: Counter[str] = Counter()
#: The aliases in an outage window, and since when (monotonic).
_down: dict[str, float] = {}
_lock = threading.Lock()


def failed(alias: str, operation: str, exc: BaseException) -> None:
    """Count a backend failure; log it only when it opens an outage window."""
    with _lock:
        errors[alias] += 1
        opened = alias not in _down
        if opened:
            _down[alias] = time.monotonic()
    if opened:
        logger.warning(
            "cachedcall: cache alias %r failed (%s: %s: %s); calls run uncached until it "
            "answers again. Further failures are counted, not logged.",
            alias,
            operation,
            type(exc).__name__,
            exc,
        )


def succeeded(alias: str) -> None:
    """Close the outage window of ``alias``, if one is open."""
    if alias in _down:
        with _lock:
            since = _down.pop(alias, None)
        if since is not None:
            logger.info(
                "cachedcall: cache alias %r answers again after %.1f s.",
                alias,
                time.monotonic() - since,
            )


def stats() -> dict[str, Any]:
    """Return a snapshot of the failure counters of this process, and of its near tier
    (``stats()["near"]``: hits, evictions and invalidations per alias, entries and bytes
    kept)."""
    from cachedcall import near

    with _lock:
        return {
            "errors": dict(errors),
            "down": sorted(_down),
            "bad_signatures": dict(bad_signatures),
            "bump_failures": dict(bump_failures),
            "too_large": dict(too_large),
            "corrupt": dict(corrupt),
            "bypassed": dict(bypassed),
            "near": near.stats(),
        }


def count(counter: Counter[str], alias: str) -> None:
    """Add one to ``counter`` for ``alias``."""
    with _lock:
        counter[alias] += 1


def anything_down() -> bool:
    """Whether any alias is in an outage window (cheap: read on every backend call)."""
    return bool(_down)


def is_down(alias: str) -> bool:
    """Whether ``alias`` is in an outage window (its failure was logged)."""
    return alias in _down


def forget() -> None:
    """Reset every count and close every outage window, without logging."""
    with _lock:
        for counter in (errors, bad_signatures, bump_failures, too_large, corrupt, bypassed):
            counter.clear()
        _down.clear()
