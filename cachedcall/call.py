"""The call protocol, written once.

A call flows one way: switch -> keys -> one read of the entry and its counters -> a hit,
or everything after a miss. The hit path is two short straight-line functions,
:func:`call` and :func:`acall`, because it is the hot path. Everything after a miss (single
flight, the cross-process lock, stale and early entries, computing, storing) is ONE
sequence of steps, :func:`after_miss`: a generator that does no I/O itself but yields each
operation it needs and is sent the result (sans-IO, as dogpile's ``lock.py`` keeps the
regeneration protocol apart from its backend). The operations it may yield, and the two
small drivers that perform them (in the caller's thread, on the event loop), are
:mod:`cachedcall.steps`'.

Process state: none (each function's flights live in its FunctionCache).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from cachedcall import backend
from cachedcall import events
from cachedcall import flights
from cachedcall import locks
from cachedcall import near
from cachedcall import switch
from cachedcall import values
from cachedcall.entry import CORRUPT
from cachedcall.entry import EARLY
from cachedcall.entry import FAILED
from cachedcall.entry import HIT
from cachedcall.entry import MISS
from cachedcall.entry import MISSING
from cachedcall.entry import STALE
from cachedcall.entry import Entry
from cachedcall.entry import ReadState
from cachedcall.entry import wire
from cachedcall.function import FunctionCache
from cachedcall.steps import COMPUTE
from cachedcall.steps import READ
from cachedcall.steps import RELEASE
from cachedcall.steps import SLEEP
from cachedcall.steps import STORE
from cachedcall.steps import WAIT
from cachedcall.steps import Steps
from cachedcall.steps import adrive
from cachedcall.steps import drive

__all__: list[str] = []

_COMPUTE = (COMPUTE,)


class Miss:
    """What a call that did not hit carries from its read to its computation."""

    __slots__ = ("counter_keys", "flight", "full", "key", "kwargs", "lock", "started", "state", "versions")

    def __init__(
        self,
        key: str,
        counter_keys: list[str],
        versions: tuple[Any, ...] | None,
        state: ReadState,
        started: float,
        full: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.key = key
        self.counter_keys = counter_keys
        self.versions = versions
        self.state = state
        self.started = started
        self.full = full
        self.kwargs = kwargs
        #: ``(slot, flight)`` when this caller leads an in-process flight.
        self.flight: tuple[Any, flights.Flight] | None = None
        #: The lock key this caller holds (and deletes when done), if any.
        self.lock: str | None = None


# --- the hit path: sync and async, the only code spelled twice ------------------------------


def call(
    fc: FunctionCache, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if not switch.is_enabled():
        if events.active:
            events.emit(fc, None, events.DISABLED, 0.0)
        return wrapped(*args, **kwargs)
    plan = fc.keys_for_call(instance, args, kwargs)
    if plan is None:
        return wrapped(*args, **kwargs)
    key, counter_keys = plan
    started = time.perf_counter()
    found = fc.read(key, counter_keys)
    state, value, versions, stored = values.classify(fc, found, key, counter_keys, args)
    if state is HIT:
        if events.active:
            values.hit_event(fc, key, found, started, counter_keys)
        return value
    miss = Miss(key, counter_keys, versions, state, started, fc.full_args(instance, args), kwargs)
    slot = (key, threading.get_ident())
    return drive(after_miss(fc, miss, stored, slot), wrapped, args, kwargs)


async def acall(
    fc: FunctionCache, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if not switch.is_enabled():
        if events.active:
            events.emit(fc, None, events.DISABLED, 0.0)
        return await wrapped(*args, **kwargs)
    if fc.policy is not None:
        await fc.policy.aresolve(args)
    plan = fc.keys_for_call(instance, args, kwargs)
    if plan is None:
        return await wrapped(*args, **kwargs)
    key, counter_keys = plan
    started = time.perf_counter()
    found = await fc.aread(key, counter_keys)
    state, value, versions, stored = values.classify(fc, found, key, counter_keys, args)
    if state is HIT:
        if events.active:
            values.hit_event(fc, key, found, started, counter_keys)
        return value
    miss = Miss(key, counter_keys, versions, state, started, fc.full_args(instance, args), kwargs)
    # Tasks of one event loop share flights per loop: the slot is the loop and the key.
    slot = ((id(asyncio.get_running_loop()), key), asyncio.current_task())
    return await adrive(after_miss(fc, miss, stored, slot), wrapped, args, kwargs)


def refresh(
    fc: FunctionCache, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``f.refresh(...)``: recompute, store and return, whatever is stored."""
    plan = fc.keys_for_call(instance, args, kwargs) if switch.is_enabled() else None
    if plan is None:
        return wrapped(*args, **kwargs)
    return drive(refresh_steps(fc, plan, fc.full_args(instance, args), kwargs), wrapped, args, kwargs)


async def arefresh(
    fc: FunctionCache, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if fc.policy is not None and switch.is_enabled():
        await fc.policy.aresolve(args)
    plan = fc.keys_for_call(instance, args, kwargs) if switch.is_enabled() else None
    if plan is None:
        return await wrapped(*args, **kwargs)
    return await adrive(refresh_steps(fc, plan, fc.full_args(instance, args), kwargs), wrapped, args, kwargs)


def refresh_steps(
    fc: FunctionCache, plan: tuple[str, list[str]], full: tuple[Any, ...], kwargs: dict[str, Any]
) -> Steps:
    """``f.refresh()``: read the counters, compute, store; no entry is read."""
    key, counter_keys = plan
    started = time.perf_counter()
    found = yield (STORE, fc.counters, "read", counter_keys, fc.sign)
    versions = None if found is None else tuple(map(found.get, counter_keys))
    miss = Miss(key, counter_keys, versions, FAILED if found is None else MISS, started, full, kwargs)
    return (yield from compute(fc, miss))


# --- everything after a miss, once ----------------------------------------------------------


def after_miss(fc: FunctionCache, miss: Miss, stored: Entry | None, slot: tuple[Any, Any]) -> Steps:
    """The steps of a call that did not hit.

    :param stored: the entry of a ``STALE`` or ``EARLY`` read.
    :param slot: ``(where this key's flight is kept, who this caller is)``: the key and the
        thread for threads, the loop and key and the task for asyncio tasks.
    """
    if miss.state is STALE or miss.state is EARLY:
        assert stored is not None
        return (yield from revalidate(fc, miss, stored, slot))
    if fc.flights is not None:
        flight, leads = fc.flights.join(miss.key, slot[0], slot[1])
        if not leads and (yield (WAIT, flight)):
            shared = flight.value(miss.key, miss.versions)
            if shared is not MISSING:
                return values.shared(fc, shared, flight, miss.key, miss.started, miss.full)
        if leads:
            miss.flight = (slot[0], flight)
    if fc.lock and miss.state is not FAILED:
        value, found = yield from acquire(fc, miss)
        if value is not MISSING:
            fc.finish(miss.flight, miss.key, found)
            if events.active:
                events.emit(
                    fc, miss.key, events.HIT, time.perf_counter() - miss.started, depends=miss.counter_keys
                )
            return value
    return (yield from compute(fc, miss))


def revalidate(fc: FunctionCache, miss: Miss, stored: Entry, slot: tuple[Any, Any]) -> Steps:
    """A stale or early entry: one caller recomputes, the others get the old value now."""
    # Claim the refresh in this process (always ours without flights), then, for a stale
    # entry, across processes through the entry's lock.
    claimed = True
    miss.lock = locks.key(miss.key) if miss.state is STALE else None
    if fc.flights is not None:
        flight = fc.flights.claim(slot[0], slot[1])
        claimed = flight is not None
        if flight is not None:
            miss.flight = (slot[0], flight)
    if not claimed:
        old = values.old(fc, stored, miss.key, miss.started, miss.full)
        if old is not MISSING:
            return old
        miss.lock = None
    elif miss.lock is not None:
        got = yield (STORE, fc.store, "add", miss.lock, locks.token(), fc.lock_ttl)
        if got is False:  # another process is at it
            old = values.old(fc, stored, miss.key, miss.started, miss.full)
            if old is not MISSING:
                fc.finish(miss.flight)
                return old
        if not got:
            miss.lock = None
    return (yield from compute(fc, miss))


def acquire(fc: FunctionCache, miss: Miss) -> Steps:
    """Take the entry's cross-process lock, or wait for its holder to store the value.

    Returns ``(value, entry)`` when the entry appeared while waiting, else
    ``(MISSING, None)`` with ``miss.lock`` set when this caller holds the lock (it does not
    after an outage or a spent wait budget: then it computes unlocked).
    """
    lock = locks.key(miss.key)
    add = (STORE, fc.store, "add", lock, locks.token(), fc.lock_ttl)
    got = yield add
    if got is not False:
        miss.lock = lock if got else None
        return MISSING, None
    for pause in locks.pauses(fc.lock_wait):
        yield (SLEEP, pause)
        found = yield (READ, fc, miss.key, miss.counter_keys)
        if found is None:
            return MISSING, None
        value, stored, miss.versions = values.current_value(fc, found, miss.key, miss.counter_keys, miss.full)
        if value is not MISSING:
            return value, stored
        got = yield add
        if got is not False:
            miss.lock = lock if got else None
            if got:
                # The holder may have stored and released between our read and our add.
                found = yield (READ, fc, miss.key, miss.counter_keys)
                if found is not None:
                    value, stored, miss.versions = values.current_value(
                        fc, found, miss.key, miss.counter_keys, miss.full
                    )
                    if value is not MISSING:
                        yield (STORE, fc.store, "delete", [lock])
                        miss.lock = None
                        return value, stored
            return MISSING, None
    return MISSING, None


def compute(fc: FunctionCache, miss: Miss) -> Steps:
    """Prepare the counters, run the function, release followers, store, unlock."""
    try:
        if miss.state is CORRUPT or unusable(miss.versions):
            miss.versions = yield from prepare(fc, miss)
        began = time.perf_counter()
        result = yield _COMPUTE
        duration = time.perf_counter() - began
        key, packed = values.pack(fc, miss.versions, duration, result, miss.full, miss.kwargs, miss.key)
    except BaseException as exc:
        # Also a cancelled leader: its followers are released (and compute themselves).
        fc.finish(miss.flight, error=None if isinstance(exc, asyncio.CancelledError) else exc)
        if miss.lock is not None:
            yield (RELEASE, fc.store, [miss.lock])
        raise
    fc.finish(miss.flight, key, packed)
    wired = None if packed is MISSING else wire(packed, key, fc.sign)
    mark = near.epoch()
    stored = wired is not None and (yield (STORE, fc.store, "write", key, wired, fc.store_timeout, fc.sign))
    if stored is backend.TOO_LARGE:
        values.refused_size(fc, len(packed.payload))
        stored = False
    elif stored:
        fc.stored += 1
        if fc.near is not None:
            near.written(fc, key, wired, mark)
    if miss.lock is not None:
        yield (STORE, fc.store, "delete", [miss.lock])
    if events.active:
        fc.report(key, miss.state is FAILED, bool(stored), miss.started, miss.counter_keys)
    return result


def prepare(fc: FunctionCache, miss: Miss) -> Steps:
    """The I/O a miss may need first: drop a corrupt entry, create missing counters.

    Returns the versions to stamp; ``None`` when a counter could not be created (then
    nothing is stored, since the entry could not be stamped).
    """
    versions = miss.versions
    if miss.state is CORRUPT:
        yield (STORE, fc.store, "delete", [miss.key])
    if versions is None or not unusable(versions):
        return versions
    # A counter that is not an int was not written by us (a signed cache refuses to decode
    # it): drop it and re-seed it like a lost one.
    pairs = list(zip(miss.counter_keys, versions, strict=True))
    foreign = [k for k, v in pairs if v is not None and type(v) is not int]
    if foreign:
        yield (STORE, fc.counters, "delete", foreign)
        pairs = [(k, v if type(v) is int else None) for k, v in pairs]
    created = yield (STORE, fc.counters, "seed", [k for k, v in pairs if v is None], fc.sign)
    if created is None:
        return None
    return tuple(created[k] if v is None else v for k, v in pairs)


def unusable(versions: tuple[Any, ...] | None) -> bool:
    """Whether some counter must be (re)created before an entry can be stamped."""
    if versions is None:
        return False
    return any(type(value) is not int for value in versions)
