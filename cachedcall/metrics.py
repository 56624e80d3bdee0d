"""Counts that survive the process: every process adds its counts to counters in the cache,
where ``manage.py cachedcall stats`` reads the sum.

A call only adds one to a plain int on its :class:`~cachedcall.function.FunctionCache`
(hits, misses, stored, errors, refused, stale), as before: no I/O and no lock on the call
path. A daemon thread of each process (started by the app's ``ready()``, and again in a
forked child) wakes every ``CACHEDCALL["METRICS_INTERVAL"]`` seconds (10 by default; ``0``
or ``None`` keeps every count in its process), and at exit the process flushes once more.
A flush computes what was counted since the last one, per function and per alias (the
counts of :mod:`cachedcall.health`: errors, too_large, corrupt, bad_signatures,
bump_failures, and bypassed per reason), and adds each non-zero difference to its counter
with one ``incr`` (an ``add`` creates a missing one). Nothing counted: no I/O at all.

A flush that fails (the alias is down) stops at its first failure, which
:mod:`cachedcall.health` counts and logs once per outage window; what it could not add
waits for the next flush, so nothing is lost. A counter whose ``incr`` landed though its
answer timed out is added again: counts are at least once. A flush never raises.

The counters live in the alias that holds the version counters of ``CACHEDCALL["CACHE"]``
(``VERSIONS_CACHE`` when set), never expire, and are named under the key prefix; names are
function names (module-qualified) and aliases, never call arguments::

    <prefix>:m:f:<outcome>:<readable>:<digest of the function name>
    <prefix>:m:a:<count>:<readable>:<digest of the alias or reason>
    <prefix>:m:index     JSON bytes: the function names and aliases that have counters

The index is merged on flush (read, add the new names, write, read back): two processes
listing new names at once may overwrite each other's; the read back merges again, and a
name still missing is listed by the next flush. An evicted counter loses what it held.

Process state, all of it reset by :func:`forget` (which also stops the thread): per
function and per alias count, the value last flushed (``_seen``, ``_seen_health``); the
differences not landed yet (``_pending``); the index entries seen in the index
(``_listed``) and those written but not seen back yet (``_unlisted``), all under
``_flush_lock``; the flushing thread and its stop event (``_thread``, ``_stop``, under
``_lock``).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import weakref
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING
from typing import Any
from typing import NamedTuple

from django.core.cache.backends.base import BaseCache

from cachedcall import aliases
from cachedcall import backend
from cachedcall import conf
from cachedcall import counters
from cachedcall import health
from cachedcall.keys import digest
from cachedcall.keys import safe_name

if TYPE_CHECKING:
    from cachedcall.function import FunctionCache

__all__: list[str] = []

logger = logging.getLogger("cachedcall")

#: A function's counts, as named in the output, and the FunctionCache attribute of each.
OUTCOMES = ("hits", "misses", "stored", "errors", "refused", "stale")
_ATTRIBUTES = ("hits", "misses", "stored", "errors", "refused", "stales")
#: The counts of :mod:`cachedcall.health` that are flushed, per alias (``bypassed``: per reason).
HEALTH = ("errors", "too_large", "corrupt", "bad_signatures", "bump_failures", "bypassed")
FUNCTION = "function"
_ZERO = (0,) * len(OUTCOMES)
# Index entries are (FUNCTION, function name) or (a HEALTH count, alias or reason); a
# counter is an index entry and, for a function, its outcome ("" for a health count).
Entry = tuple[str, str]
Series = tuple[str, str, str]


class Counts(NamedTuple):
    """Counts per function and per alias, of this process or of every process."""

    #: function name -> outcome (:data:`OUTCOMES`) -> count
    functions: dict[str, dict[str, int]]
    #: health count (:data:`HEALTH`) -> alias (or reason) -> count
    health: dict[str, dict[str, int]]


_lock = threading.Lock()
_thread: threading.Thread | None = None
_stop = threading.Event()
_flush_lock = threading.Lock()
_seen: weakref.WeakKeyDictionary[FunctionCache, tuple[int, ...]] = weakref.WeakKeyDictionary()
_seen_health: dict[Entry, int] = {}
_pending: Counter[Series] = Counter()
_listed: set[Entry] = set()
_unlisted: set[Entry] = set()


# --- when ------------------------------------------------------------------------------------


def start() -> None:
    """Start this process's flushing thread unless it runs (the app's ``ready()`` does)."""
    global _thread, _stop
    with _lock:
        if _thread is not None and _thread.is_alive():
            return
        _stop = threading.Event()
        _thread = threading.Thread(target=_run, args=(_stop,), name="cachedcall-metrics", daemon=True)
        _thread.start()


def _run(stop: threading.Event) -> None:
    while True:
        interval = _interval()
        if interval is None or stop.wait(interval):
            return  # switched off (a later start() starts another thread), or forgotten
        flush()


def _interval() -> float | None:
    try:
        return conf.metrics_interval()  # not conf.get(): see there
    except Exception:
        # Broken settings are for the process's next call (and the system checks) to report.
        return conf.Settings.metrics_interval


@atexit.register
def _at_exit() -> None:
    with _lock:
        started = _thread is not None
        _stop.set()
    if started:
        flush()


def _after_fork_in_child() -> None:
    # The child starts with its parent's counts, which are the parent's to flush, and with
    # none of its threads: its flushes count from here, in a thread of its own.
    global _lock, _flush_lock, _thread, _stop
    running = _thread is not None
    _lock, _flush_lock, _thread, _stop = threading.Lock(), threading.Lock(), None, threading.Event()
    _pending.clear()
    _unlisted.clear()
    for fc in _functions():
        _seen[fc] = _now(fc)
    for kind in HEALTH:
        # Not health.stats(): its lock may have been held by a thread the child does not have.
        counter: Counter[str] = getattr(health, kind)
        for name, count in list(counter.items()):
            _seen_health[kind, name] = count
    if running:
        start()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --- what ------------------------------------------------------------------------------------


def flush() -> bool:
    """Add what this process counted since the last flush to the counters in the cache.

    Returns whether nothing is left waiting; never raises. Does nothing while
    ``CACHEDCALL["METRICS_INTERVAL"]`` is ``0`` or ``None``.
    """
    try:
        with _flush_lock:
            if conf.metrics_interval() is None:
                return True
            _collect()
            if not _pending and not _unlisted:
                return True  # no I/O, and no settings read in (a writer's exit, say)
            settings = conf.get()
            alias = alias_of(settings)
            # A backend of its own, closed after: this runs in a thread no request ends, and
            # a client that marked the server dead elsewhere must not hold the flush back.
            cache = aliases.fresh(alias)
            try:
                return _land(cache, alias, settings.key_prefix)
            finally:
                cache.close()
    except Exception:
        logger.debug("cachedcall: flushing the metrics raised", exc_info=True)
        return False


def alias_of(settings: conf.Settings) -> str:
    """The alias that holds the metrics: the one of the version counters of ``CACHE``."""
    return settings.counters_for(settings.cache)


def _functions() -> list[FunctionCache]:
    from cachedcall.function import registry

    for _ in range(3):
        try:
            return list(registry)
        except RuntimeError:  # a function decorated meanwhile, in another thread
            continue
    return []


def _now(fc: FunctionCache) -> tuple[int, ...]:
    return tuple(getattr(fc, name) for name in _ATTRIBUTES)


def _difference(now: int, before: int) -> int:
    return now - before if now >= before else now  # counts reset (forget()) start from zero


def _collect() -> None:
    for fc in _functions():
        now = _now(fc)
        before = _seen.get(fc, _ZERO)
        _seen[fc] = now
        for outcome, count, last in zip(OUTCOMES, now, before, strict=True):
            added = _difference(count, last)
            if added:
                _pending[FUNCTION, fc.name, outcome] += added
    snapshot = health.stats()
    for kind in HEALTH:
        for name, count in snapshot[kind].items():
            added = _difference(count, _seen_health.get((kind, name), 0))
            _seen_health[kind, name] = count
            if added:
                _pending[kind, name, ""] += added


def _land(cache: BaseCache, alias: str, prefix: str) -> bool:
    wanted = {(group, name) for group, name, _ in _pending if (group, name) not in _listed} | _unlisted
    if wanted and not _list(cache, alias, prefix, wanted):
        return False
    for series, added in list(_pending.items()):
        if not counters.add_to(cache, alias, key(prefix, *series), added, "incr (metrics)"):
            return False  # the rest waits for the next flush: one timeout per flush at most
        del _pending[series]
    if health.anything_down():
        health.succeeded(alias)
    return not _unlisted


def _list(cache: BaseCache, alias: str, prefix: str, wanted: set[Entry]) -> bool:
    """Merge ``wanted`` into the index; False when the alias failed."""
    index = index_key(prefix)
    for _ in range(3):
        found = backend.read(cache, alias, [index], raw=True)
        if found is None:
            return False
        listed = decode_index(found.get(index))
        _listed.update(listed)
        _unlisted.difference_update(listed)
        missing = wanted - listed
        if not missing:
            return True
        written = backend.write(cache, alias, index, encode_index(listed | missing), None, raw=True)
        if written is not True:
            return False
        # Listed once read back: another process may have written its own index meanwhile.
        _unlisted.update(missing)
    return True  # counts land all the same; the next flush lists what is still missing


# --- names -----------------------------------------------------------------------------------


def key(prefix: str, group: str, name: str, outcome: str = "") -> str:
    """The cache key of one counter (see the module docstring)."""
    readable = safe_name(name.rsplit(".", 1)[-1])
    if group == FUNCTION:
        return f"{prefix}:m:f:{outcome}:{readable}:{digest(name)}"
    return f"{prefix}:m:a:{group}:{readable}:{digest(name)}"


def index_key(prefix: str) -> str:
    return f"{prefix}:m:index"


def encode_index(entries: Iterable[Entry]) -> bytes:
    groups: dict[str, list[str]] = {}
    for group, name in sorted(entries):
        groups.setdefault(group, []).append(name)
    return json.dumps(groups, sort_keys=True, separators=(",", ":")).encode()


def decode_index(raw: Any) -> set[Entry]:
    """The entries of a stored index; none for a missing or foreign value (then rewritten)."""
    if not isinstance(raw, bytes):
        return set()
    try:
        groups = json.loads(raw.decode())
    except ValueError:
        return set()
    if not isinstance(groups, dict):
        return set()
    known = (FUNCTION, *HEALTH)
    return {
        (group, name)
        for group, names in groups.items()
        if group in known and isinstance(names, list)
        for name in names
        if isinstance(name, str)
    }


# --- reading ---------------------------------------------------------------------------------


def read() -> Counts | None:
    """The counts every process flushed, from the cache; ``None`` when the alias failed.

    :raises ImproperlyConfigured: the settings are broken, or name an alias not in CACHES.
    """
    settings = conf.get()
    alias = alias_of(settings)
    prefix = settings.key_prefix
    cache = aliases.fresh(alias)
    try:
        found = backend.read(cache, alias, [index_key(prefix)], raw=True)
        if found is None:
            return None
        series: dict[str, Series] = {}
        for group, name in decode_index(found.get(index_key(prefix))):
            for outcome in OUTCOMES if group == FUNCTION else ("",):
                series[key(prefix, group, name, outcome)] = (group, name, outcome)
        values = backend.read(cache, alias, list(series), raw=True) if series else {}
        if values is None:
            return None
    finally:
        cache.close()
    counts = Counts({}, {kind: {} for kind in HEALTH})
    for name_of_key, (group, name, outcome) in sorted(series.items(), key=lambda item: item[1]):
        value = values.get(name_of_key, 0)
        count = value if type(value) is int else 0  # a foreign value is no count of ours
        if group == FUNCTION:
            counts.functions.setdefault(name, dict.fromkeys(OUTCOMES, 0))[outcome] = count
        else:
            counts.health[group][name] = count
    return counts


def local() -> Counts:
    """The counts of this process (since it started, or since :func:`forget`)."""
    functions: dict[str, dict[str, int]] = {}
    for fc in sorted(_functions(), key=lambda fc: fc.name):
        mine = functions.setdefault(fc.name, dict.fromkeys(OUTCOMES, 0))
        for outcome, count in zip(OUTCOMES, _now(fc), strict=True):
            mine[outcome] += count
    snapshot = health.stats()
    return Counts(functions, {kind: dict(snapshot[kind]) for kind in HEALTH})


def hit_ratio(counts: dict[str, int]) -> float | None:
    """Hits over hits and misses (the reads the cache answered); ``None`` before any."""
    reads = counts["hits"] + counts["misses"]
    return counts["hits"] / reads if reads else None


def forget() -> None:
    """Stop the flushing thread and forget what was flushed and what waits (for tests)."""
    global _thread
    with _lock:
        thread, _thread = _thread, None
        _stop.set()
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout=10)
    with _flush_lock:
        _seen.clear()
        _seen_health.clear()
        _pending.clear()
        _listed.clear()
        _unlisted.clear()
