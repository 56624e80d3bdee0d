"""``f.map()`` and ``f.starmap()``: many calls, one read and one write.

``f.map(clubs)`` returns what ``[f(c) for c in clubs]`` would, in order, and
``f.starmap(pairs)`` what ``[f(*p) for p in pairs]`` would; but the entries of all the calls
and every counter they depend on are read in one ``get_many`` (two with
``VERSIONS_CACHE``), and the values of all the misses are written in one ``set_many``. Each
call keeps its own semantics: bypasses, hits and their copies, single flight, locks, stale
and early entries, events.

It is one more sequence of steps for the drivers of :mod:`cachedcall.steps`: :func:`map_steps`
reads everything, then advances the misses' own :func:`cachedcall.call.after_miss` steps
in lockstep, one step each per round, and merges what they yield that can be merged (the
writes, the lock deletes and the counters to create of a round, per alias) into one
operation; a counter several misses lack is created once. Everything else a
miss yields (its computation, a lock's ``add``, a waiter's pause) is performed for it alone,
in the order of the calls. A call repeated in one batch is made after it (a hit by then),
so the function never runs twice for one key. With ``CACHEDCALL["SIGN"]`` the writes stay
one per miss (the signed bytes are written raw, which ``set_many`` cannot do).

When a computation raises, the calls not computed yet are abandoned (their flights and
locks released) and the exception propagates, as it would from the list comprehension.

Process state: none.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from cachedcall import events
from cachedcall import nearbatch
from cachedcall import switch
from cachedcall import values
from cachedcall.call import Miss
from cachedcall.call import after_miss
from cachedcall.entry import HIT
from cachedcall.entry import MISSING
from cachedcall.function import FunctionCache
from cachedcall.steps import CALL
from cachedcall.steps import COMPUTE
from cachedcall.steps import DONE
from cachedcall.steps import STORE
from cachedcall.steps import Steps
from cachedcall.steps import adrive
from cachedcall.steps import advance
from cachedcall.steps import drive

__all__: list[str] = []

Calls = list[tuple[tuple[Any, ...], dict[str, Any]]]
Slot = Callable[[str], tuple[Any, Any]]


class _Abandoned(Exception):
    """Thrown into the misses not computed yet when a computation of the batch raised."""


def map_calls(fc: FunctionCache, wrapped: Any, instance: Any, calls: Calls) -> list[Any]:
    """Make ``calls`` in this thread; their results, in order."""
    if fc.policy is not None:
        raise TypeError(f"{fc.name}: map() and starmap() are for @cached functions, not views.")
    thread = threading.get_ident()
    return drive(map_steps(fc, instance, calls, lambda key: (key, thread)), wrapped, (), {})  # type: ignore[no-any-return]


async def amap(fc: FunctionCache, wrapped: Any, instance: Any, calls: Calls) -> list[Any]:
    """Make ``calls`` on the event loop, one after the other; their results, in order."""
    if fc.policy is not None:
        raise TypeError(f"{fc.name}: map() and starmap() are for @cached functions, not views.")
    loop, task = id(asyncio.get_running_loop()), asyncio.current_task()
    steps = map_steps(fc, instance, calls, lambda key: ((loop, key), task))
    return await adrive(steps, wrapped, (), {})  # type: ignore[no-any-return]


def map_steps(fc: FunctionCache, instance: Any, calls: Calls, slot: Slot) -> Steps:
    """The steps of a batch of calls; returns their results, in order.

    :param slot: the single-flight slot of a key for this caller (see ``call.after_miss``).
    """
    results: list[Any] = [MISSING] * len(calls)
    if not switch.is_enabled():
        for i, (args, kwargs) in enumerate(calls):
            if events.active:
                events.emit(fc, None, events.DISABLED, 0.0)
            results[i] = yield (CALL, args, kwargs)
        return results
    batch: list[tuple[int, str, list[str]]] = []
    again: list[int] = []
    keys: set[str] = set()
    for i, (args, kwargs) in enumerate(calls):
        plan = fc.keys_for_call(instance, args, kwargs)
        if plan is None:  # bypassed, as f(...) would be
            results[i] = yield (CALL, args, kwargs)
        elif plan[0] in keys:
            again.append(i)
        else:
            keys.add(plan[0])
            batch.append((i, *plan))
    started = time.perf_counter()
    served: dict[str, Any] = {}
    if fc.near is not None:
        found, served = yield from nearbatch.read(fc, batch)
    else:
        found = yield from _read(fc, batch)
    misses: dict[int, Steps] = {}
    for i, key, counter_keys in batch:
        args, kwargs = calls[i]
        answer = served.get(key, found)
        state, value, versions, stored = values.classify(fc, answer, key, counter_keys, args)
        if state is HIT:
            if events.active:
                values.hit_event(fc, key, answer, started, counter_keys)
            results[i] = value
            continue
        miss = Miss(key, counter_keys, versions, state, started, fc.full_args(instance, args), kwargs)
        misses[i] = after_miss(fc, miss, stored, slot(key))
    yield from _lockstep(misses, calls, results)
    if again:
        repeated = yield from map_steps(fc, instance, [calls[i] for i in again], slot)
        for i, result in zip(again, repeated, strict=True):
            results[i] = result
    return results


def _read(fc: FunctionCache, batch: list[tuple[int, str, list[str]]]) -> Steps:
    entry_keys = [key for _, key, _ in batch]
    counter_keys = list(dict.fromkeys(k for _, _, counters in batch for k in counters))
    if not batch:
        return {}
    if not fc.split:
        return (yield (STORE, fc.store, "read", [*entry_keys, *counter_keys], fc.sign))
    counters = yield (STORE, fc.counters, "read", counter_keys, fc.sign)
    if counters is None:
        return None
    entries = yield (STORE, fc.store, "read", entry_keys, fc.sign)
    return None if entries is None else {**counters, **entries}


def _lockstep(misses: dict[int, Steps], calls: Calls, results: list[Any]) -> Steps:
    """Advance every miss one step per round; merge the round's writes, deletes and the
    counters they create."""
    replies: dict[int, tuple[Any, BaseException | None]] = {}
    while misses:
        writes: dict[tuple[Any, Any], list[tuple[int, str, Any]]] = {}
        deletes: dict[Any, list[tuple[int, list[str]]]] = {}
        seeds: dict[tuple[Any, Any], list[tuple[int, list[str]]]] = {}
        failing: int | None = None
        computed: list[int] = []
        for i, steps in list(misses.items()):
            if failing is not None:
                break  # a computation raised: no other one starts, as in the comprehension
            reply, error = replies.pop(i, (None, None))
            try:
                op = advance(steps, reply, error)
            except BaseException:
                del misses[i]
                yield from _abandon(misses)
                raise
            kind = op[0]
            if kind is DONE:
                results[i] = op[1]
                del misses[i]
            elif kind is STORE and op[2] == "write" and not op[6]:
                writes.setdefault((op[1], op[5]), []).append((i, op[3], op[4]))
            elif kind is STORE and op[2] == "delete":
                deletes.setdefault(op[1], []).append((i, op[3]))
            elif kind is STORE and op[2] == "seed":
                seeds.setdefault((op[1], op[4]), []).append((i, op[3]))
            else:
                if kind is COMPUTE:
                    op = (CALL, *calls[i])
                try:
                    replies[i] = ((yield op), None)
                    if kind is COMPUTE:
                        computed.append(i)
                except BaseException as exc:
                    replies[i] = (None, exc)
                    if kind is COMPUTE:
                        failing = i
        # What the calls computed before the failing one is stored, as it would have been.
        for (store, timeout), items in writes.items():
            written = yield (STORE, store, "write_many", [(key, data) for _, key, data in items], timeout)
            for i, key, _ in items:
                replies[i] = (written[key], None)
        for store, asked in deletes.items():
            deleted = yield (STORE, store, "delete", [key for _, keys in asked for key in keys])
            for i, _ in asked:
                replies[i] = (deleted, None)
        # The misses of a batch mostly lack the same counters (the generations, a model's
        # version): each is created once, and every miss is handed the values it asked for.
        for (store, raw), asked in seeds.items():
            wanted = list(dict.fromkeys(key for _, keys in asked for key in keys))
            created = yield (STORE, store, "seed", wanted, raw)
            for i, keys in asked:
                replies[i] = (None if created is None else {key: created[key] for key in keys}, None)
        if failing is not None:
            # The calls computed before it are stored, as the comprehension would have
            # stored them; the ones not started are abandoned.
            for i in computed:
                results[i] = yield from _finish(misses.pop(i), *replies.pop(i))
            yield from _raise(misses.pop(failing), *replies.pop(failing), misses)


def _finish(steps: Steps, reply: Any, error: BaseException | None) -> Steps:
    """Drive one miss to its end on its own; return its result."""
    while True:
        op = advance(steps, reply, error)
        if op[0] is DONE:
            return op[1]
        try:
            reply, error = (yield op), None
        except BaseException as exc:
            reply, error = None, exc


def _raise(steps: Steps, reply: Any, error: BaseException | None, others: dict[int, Steps]) -> Steps:
    """Throw a computation's exception into its miss, perform its way out (releasing its
    flight, deleting its lock), abandon the others, and let the exception propagate."""
    try:
        yield from _finish(steps, reply, error)
    except BaseException:
        yield from _abandon(others)
        raise


def _abandon(misses: dict[int, Steps]) -> Steps:
    """Throw :class:`_Abandoned` into each miss left and perform what it does on the way
    out (releasing its flight, deleting its lock)."""
    for steps in misses.values():
        reply: Any = None
        error: BaseException | None = _Abandoned()
        while True:
            try:
                op = advance(steps, reply, error)
            except _Abandoned:
                break
            except BaseException:  # what it did on the way out failed: it is out all the same
                break
            if op[0] is DONE:  # it finished without computing (it was a waiter)
                break
            try:
                reply, error = (yield op), None
            except BaseException as exc:
                reply, error = None, exc
    misses.clear()
