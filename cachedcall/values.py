"""A function's values: what a read found, what is served, what is stored.

The function's side of :mod:`cachedcall.entry`: these count hits, misses, stored, refused,
stale and errors on the :class:`~cachedcall.function.FunctionCache`, log (once per function)
what could not be read or stored, and pass values through a view's policy.
:mod:`cachedcall.call` calls them.

Process state: none (the counts live on each FunctionCache).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from cachedcall import entry
from cachedcall import events
from cachedcall import flights
from cachedcall import health
from cachedcall import near
from cachedcall import nearrecords
from cachedcall import signing
from cachedcall import snapshots
from cachedcall.entry import CORRUPT
from cachedcall.entry import FAILED
from cachedcall.entry import HIT
from cachedcall.entry import MISS
from cachedcall.entry import MISSING
from cachedcall.entry import Entry
from cachedcall.entry import ReadState
from cachedcall.function import FunctionCache

__all__: list[str] = []

logger = logging.getLogger("cachedcall")


def classify(
    fc: FunctionCache, found: dict[str, Any] | None, key: str, counter_keys: list[str], args: tuple[Any, ...]
) -> tuple[ReadState, Any, tuple[Any, ...] | None, Entry | None]:
    """``(state, value, versions, entry)`` of a read (see :func:`entry.classify`); counts it."""
    if found is None:
        fc.errors += 1
        return FAILED, MISSING, None, None
    if type(found) is nearrecords.Found and found.value is not MISSING and fc.fresh_for is None:
        # A near hit of a copy=False function whose entry the tier has found current: the
        # value decoded by an earlier hit is shared.
        fc.hits += 1
        value = found.value
        if fc.policy is not None:
            value = fc.policy.serve(value, None, args)
        return HIT, value, found.held.stamped, None
    versions = tuple(map(found.get, counter_keys))
    raw = found.get(key)
    if raw is None and key in found:
        # pymemcache's serde swallows an unpickling error and hands back None; we never
        # store None as an entry, so it is one that did not decode.
        return unreadable(fc, key, "the client could not decode it"), MISSING, versions, None
    try:
        state, value, stored = entry.classify(
            raw, key, versions, fc.sign, fc.stale, fc.early, fc.soft, fc.want_entry
        )
    except signing.BadSignature as exc:
        logger.error(
            "cachedcall: %s: entry %r failed its signature check and was not unpickled "
            "(%s); deleting it. Is something else writing to this cache?",
            fc.name,
            key,
            exc,
        )
        health.bad_signatures[fc.alias] += 1
        fc.errors += 1
        return CORRUPT, MISSING, versions, None
    except ValueError as exc:
        return unreadable(fc, key, str(exc)), MISSING, versions, None
    if state is HIT:
        fc.hits += 1
        if not fc.copy and type(found) is nearrecords.Found:
            near.decoded(fc, found, value)
        if fc.policy is not None:
            value = fc.policy.serve(value, stored, args)
    elif state is MISS:
        fc.misses += 1
    return state, value, versions, stored


def hit_event(
    fc: FunctionCache, key: str, found: dict[str, Any] | None, started: float, counter_keys: list[str]
) -> None:
    """The event of a hit: its reason says ``"near"`` when the near tier served it."""
    reason = "near" if type(found) is nearrecords.Found else None
    events.emit(fc, key, events.HIT, time.perf_counter() - started, reason, depends=counter_keys)


def unreadable(fc: FunctionCache, key: str, why: str) -> ReadState:
    """A corrupt or undecodable entry: counted, logged once per function, deleted."""
    health.errors[fc.alias] += 1
    health.corrupt[fc.alias] += 1
    fc.errors += 1
    if not fc._logged_unreadable:
        fc._logged_unreadable = True
        logger.warning(
            "cachedcall: %s: deleting unreadable entry %r (%s). Further ones are counted "
            "(stats()['corrupt']), not logged.",
            fc.name,
            key,
            why,
        )
    return CORRUPT


def current_value(
    fc: FunctionCache, found: dict[str, Any], key: str, counter_keys: list[str], args: tuple[Any, ...]
) -> tuple[Any, Entry | None, tuple[Any, ...]]:
    """What a lock waiter polls for: ``(value, entry, versions)`` of a current entry, or
    ``(MISSING, None, versions)``; nothing counted, nothing deleted."""
    versions = tuple(map(found.get, counter_keys))
    value, stored = entry.current_value(found.get(key), key, versions, fc.sign)
    if value is not MISSING:
        fc.hits += 1
        if fc.policy is not None:
            value = fc.policy.serve(value, stored, args)
    return value, stored, versions


def old(fc: FunctionCache, stored: Entry, key: str, started: float, args: tuple[Any, ...]) -> Any:
    """An old value served while another caller refreshes it; ``MISSING`` if unreadable."""
    try:
        value = entry.value(stored.payload)
    except ValueError:
        return MISSING
    fc.stales += 1
    if fc.policy is not None:
        value = fc.policy.serve(value, stored, args)
    if events.active:
        events.emit(fc, key, events.STALE, time.perf_counter() - started)
    return value


def shared(
    fc: FunctionCache, value: Any, flight: flights.Flight, key: str, started: float, args: tuple[Any, ...]
) -> Any:
    """A follower's value: the leader's, as if read from the cache."""
    if fc.policy is not None:
        value = fc.policy.serve(value, flight.entry, args)
    if events.active:
        events.emit(fc, key, events.HIT, time.perf_counter() - started)
    return value


def pack(
    fc: FunctionCache,
    versions: tuple[Any, ...] | None,
    duration: float,
    result: Any,
    full: tuple[Any, ...],
    kwargs: dict[str, Any],
    key: str,
) -> tuple[str, Entry | Any]:
    """Return ``(key, entry)`` to store for ``result``; entry ``MISSING`` for none."""
    if versions is None or fc.store_timeout == 0:
        return key, MISSING
    if fc.unless is not None and fc.unless(result):
        return key, MISSING
    if snapshots.open_snapshot() is not None:
        # Computed from a snapshot that may predate the counters read: for this caller
        # only (cachedcall.snapshots).
        fc.refused += 1
        if events.active:
            events.emit(fc, key, events.REFUSED, 0.0, "snapshot")
        return key, MISSING
    if fc.policy is not None:
        prepared = fc.policy.store(fc, result, full, kwargs, key)
        if isinstance(prepared, str):
            fc.refused += 1
            events.emit(fc, key, events.REFUSED, 0.0, prepared)
            return key, MISSING
        key, result = prepared
    try:
        packed = entry.pack(versions, duration, result, fc.fresh_for)
    except Exception as exc:
        health.errors[fc.alias] += 1
        fc.errors += 1
        if not fc._logged_pickle_error:
            fc._logged_pickle_error = True
            logger.warning(
                "cachedcall: %s returned a value that cannot be pickled (%s: %s); it is "
                "returned uncached. Further failures are counted, not logged.",
                fc.name,
                type(exc).__name__,
                exc,
            )
        return key, MISSING
    return key, packed  # counted as stored by the write that follows, if it lands


def refused_size(fc: FunctionCache, size: int) -> None:
    """The backend refused a value of this function for its size: counted, said once."""
    fc.refused += 1
    if not fc._logged_too_large:
        fc._logged_too_large = True
        logger.warning(
            "cachedcall: %s returned a value of %d bytes that the cache alias %r refused "
            "for its size; it is returned uncached. Further refusals are counted "
            "(stats()['too_large']), not logged.",
            fc.name,
            size,
            fc.alias,
        )
