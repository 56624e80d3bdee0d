"""The near tier for ``f.map()``: a batch's reads served from process memory where they can be.

The same rules as one call's read (:mod:`cachedcall.near`), for many calls at once, as steps
for the drivers of :mod:`cachedcall.steps`:

- **Redis, tracked**: every call whose entry and counters are kept is served from memory;
  the others are read in one ``get_many`` (their entries and counters), and what it brings
  is kept under the tracker's watch. A batch that is all near hits makes no round trip.
- **memcached** and other shared backends, **validated**: one ``get_many`` of every counter
  of the batch and of the entries not kept; a kept entry whose counters still match is a
  near hit, and the kept entries they outdate are read again, in one more ``get_many``
  (another process may have stored a newer one).

:func:`read` returns what the batch read (``None`` if the cache failed) and the near tier's
answer per entry key; a call's answer is looked up there first.

Process state: none (what is kept is :mod:`cachedcall.nearrecords`').
"""

from __future__ import annotations

import time
from typing import Any

from cachedcall import near
from cachedcall import nearrecords
from cachedcall.nearrecords import Found
from cachedcall.nearrecords import Plan
from cachedcall.steps import RUN
from cachedcall.steps import STORE
from cachedcall.steps import Steps
from cachedcall.tracking import Tracker

__all__: list[str] = []

Batch = list[tuple[int, str, list[str]]]


def read(fc: Any, batch: Batch) -> Steps:
    """The steps of a batch's read through the near tier; returns ``(found, served)``: what
    was read from the cache (``None`` when that failed) and the answers of the calls the
    tier answered, by entry key."""
    plan: Plan = fc.near
    if not batch:
        return {}, {}
    if plan.tracker is not None:
        return (yield from _tracked(fc, plan, plan.tracker, batch))
    return (yield from _validated(fc, plan, batch))


def _tracked(fc: Any, plan: Plan, tracker: Tracker, batch: Batch) -> Steps:
    if tracker.due:
        # Outside the lock, and a step of its own: async, it runs in a worker thread.
        yield (RUN, tracker.connect_if_due)
    served: dict[str, Found] = {}
    with nearrecords.lock:
        live = near.listening(tracker)
        if live:
            for _, key, counter_keys in batch:
                found = near.kept(fc, plan, key, counter_keys)
                if found is not None:
                    served[key] = found
        started = nearrecords.clock[0]
    rest = [(key, counter_keys) for _, key, counter_keys in batch if key not in served]
    if not rest:
        return {}, served
    entries = {key for key, _ in rest}
    keys = [*entries, *dict.fromkeys(name for _, names in rest for name in names)]
    found = yield (STORE, fc.store, "read", keys, fc.sign)
    if found is not None and live:
        near.keep_read(fc, plan, tracker, found, entries, started)
    return found, served


def _validated(fc: Any, plan: Plan, batch: Batch) -> Steps:
    alias = plan.alias
    held: dict[str, nearrecords.Held] = {}
    with nearrecords.lock:
        started = nearrecords.clock[0]
        now = time.time()
        for _, key, _ in batch:
            record = nearrecords.held.get((alias, key))
            if record is None:
                continue
            if record.expires is not None and record.expires <= now:
                nearrecords.drop((alias, key))
            else:
                nearrecords.held.move_to_end((alias, key))
                held[key] = record
    counter_keys = list(dict.fromkeys(name for _, _, names in batch for name in names))
    missing = [key for _, key, _ in batch if key not in held]
    if fc.split:
        found = yield (STORE, fc.counters, "read", counter_keys, fc.sign)
        if found is not None and missing:
            entries = yield (STORE, fc.store, "read", missing, fc.sign)
            found = None if entries is None else {**found, **entries}
    else:
        found = yield (STORE, fc.store, "read", [*missing, *counter_keys], fc.sign)
    if found is None:
        return None, {}
    served: dict[str, Found] = {}
    outdated: list[str] = []
    for _, key, names in batch:
        record = held.get(key)
        if record is None:
            continue
        if tuple(map(found.get, names)) == record.stamped:
            answer = Found({name: found.get(name) for name in names})
            answer[key] = record.raw
            answer.held = record
            answer.value = record.value
            served[key] = answer
        else:
            outdated.append(key)
    if served:
        with nearrecords.lock:  # served whatever the read of the outdated ones does
            nearrecords.counts["hits"][alias] += len(served)
    if outdated:
        # Outdated here: the cache may hold a newer entry (another process's), so read it
        # rather than recompute what is there.
        with nearrecords.lock:
            for key in outdated:
                nearrecords.drop((alias, key))
        stored = yield (STORE, fc.store, "read", outdated, fc.sign)
        if stored is None:
            return None, served
        found = {**found, **stored}
        missing.extend(key for key in outdated if key in stored)
    with nearrecords.lock:
        for key in missing:
            if key in found and nearrecords.may_keep(alias, key, started):
                nearrecords.keep(fc, plan, key, found[key], True)
    return found, served
