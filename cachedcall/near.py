"""The near tier: hot entries kept in this process's memory, still as fresh as the cache.

Opt in per function (``@cached(near=True)``) or for all (``CACHEDCALL["NEAR"] = True``).
What a near hit skips depends on the alias:

- **Redis** (Django's ``RedisCache``, django-redis): the entry *and its counters* are kept,
  and :mod:`cachedcall.tracking` hears of every write to them from the server itself
  (client tracking), so a hit makes no round trip at all. It can lag a write by the push's
  one-way delay (see :mod:`cachedcall.tracking`).
- **memcached** and any other shared backend, which has no such push: the entry is kept
  and each hit reads its counters only, so the value is neither transferred nor
  (with ``copy=False``) unpickled again; a bump is seen exactly as without the tier.
  What the counters cannot tell: ``f.invalidate(...)`` run in *another* process (it deletes
  the entry, it bumps nothing) is seen there only when the kept copy expires; use
  ``invalidate_all()`` or model versions across processes.
- LocMemCache is in this process already: the tier is off for it.

Everything kept is bounded by ``CACHEDCALL["NEAR_BYTES"]`` per process (least recently
used first out), expires when the entry would in the cache, and is dropped when this
process writes or invalidates the entry. Each caller gets its own copy (the value is
unpickled per hit, as from the cache) unless the function says ``copy=False``.

Process state: the trackers (``_trackers``); the kept records, the invalidation clock and
the counts are :mod:`cachedcall.nearrecords`'. :func:`forget` drops them all and closes
the trackers.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable
from collections.abc import Container
from collections.abc import Sequence
from typing import Any

from django.core.signals import setting_changed

from cachedcall import aliases
from cachedcall import backend
from cachedcall import fastpaths
from cachedcall import nearrecords
from cachedcall import resp3
from cachedcall import tracking
from cachedcall.entry import MISSING
from cachedcall.nearrecords import Found
from cachedcall.nearrecords import Plan

__all__: list[str] = []

logger = logging.getLogger("cachedcall")

_trackers: dict[tuple[str, str, str, tuple[str, ...]], tracking.Tracker | None] = {}


# --- set-up ----------------------------------------------------------------------------------


def plan_for(fc: Any, settings: Any) -> Plan | None:
    """The tier for ``fc`` (a FunctionCache being set up), or ``None`` when it is off."""
    wanted = settings.near if fc.near_option is None else fc.near_option
    if not wanted or settings.near_bytes == 0:
        return None
    cache = aliases.lookup(fc.alias)
    if fastpaths.in_process(type(cache)):
        return None  # LocMemCache, DummyCache: in this process already, or nothing to keep
    timeout = fc.store_timeout
    if timeout is not None and not isinstance(timeout, (int, float)):
        timeout = cache.default_timeout  # DEFAULT_TIMEOUT: the alias's own
    tracker = None if fc.split else tracker_for(fc.alias, cache, settings.key_prefix)
    plan = Plan(fc.alias, tracker, timeout, fc.copy)
    plan.max_size = settings.near_bytes // 4
    return plan


def tracker_for(alias: str, cache: Any, key_prefix: str) -> tracking.Tracker | None:
    """The tracker of a Redis alias for our keys under ``key_prefix``; ``None`` for a
    backend that is not Redis, or whose keys Redis cannot be asked to watch: then entries
    are kept and checked against their counters on every hit, as on memcached."""
    if not fastpaths.is_redis(type(cache)):
        return None
    head = cache.make_key("")
    servers, options = _location(alias)
    with nearrecords.lock:
        # By what the watch depends on, so that a changed KEY_PREFIX, VERSION or LOCATION
        # never reuses a tracker that watches other keys or another server.
        found = (alias, key_prefix, head, tuple(servers))
        if found in _trackers:
            return _trackers[found]
        tracker = None
        if cache.make_key(f"{key_prefix}:x") != f"{head}{key_prefix}:x":
            logger.info(
                "cachedcall: cache alias %r has a KEY_FUNCTION whose keys do not start with a "
                "fixed prefix, so Redis cannot be asked to watch them: near entries on it are "
                "checked against their counters on every hit instead.",
                alias,
            )
        elif len(servers) > 1:
            # Reads go to a replica, which can lag the primary whose pushes we would hear:
            # a value read from it after the push would be kept past its write.
            logger.info(
                "cachedcall: cache alias %r lists %d servers (reads may go to a replica), so "
                "near entries on it are checked against their counters on every hit instead "
                "of being watched.",
                alias,
                len(servers),
            )
        else:
            skip = len(head)
            tracker = tracking.Tracker(
                resp3.address(servers[0], options),
                f"{head}{key_prefix}:",
                nearrecords.lock,
                lambda keys: nearrecords.invalidated(
                    alias, [k.decode(errors="replace")[skip:] for k in keys]
                ),
                lambda: nearrecords.flushed(alias),
            )
        _trackers[found] = tracker
        return tracker


def _location(alias: str) -> tuple[list[str], dict[str, Any]]:
    # The alias's servers (the first is the primary: Django's RedisCache and django-redis
    # write to it), and the OPTIONS that may carry credentials.
    from django.conf import settings

    config: dict[str, Any] = settings.CACHES[alias]
    location = config.get("LOCATION") or "redis://localhost:6379"
    servers = location.replace(";", ",").split(",") if isinstance(location, str) else list(location)
    options = {str(k).lower(): v for k, v in dict(config.get("OPTIONS") or {}).items()}
    return [str(server).strip() for server in servers if str(server).strip()], options


# --- reads -----------------------------------------------------------------------------------


def read(fc: Any, key: str, counter_keys: list[str]) -> dict[str, Any] | None:
    """What ``fc.read`` returns, served from the tier where it can be."""
    plan: Plan = fc.near
    if plan.tracker is not None:
        return _read_tracked(fc, plan, plan.tracker, key, counter_keys)
    return _read_validated(fc, plan, key, counter_keys)


def aread(fc: Any, key: str, counter_keys: list[str]) -> Awaitable[dict[str, Any] | None]:
    """The async :func:`read`: a Redis near hit is served on the event loop (it never
    blocks); anything that needs I/O runs in a worker thread."""
    plan: Plan = fc.near
    tracker = plan.tracker
    if tracker is not None and tracker.connected and tracker.pid == os.getpid():
        with nearrecords.lock:
            tracker.drain()
            found = kept(fc, plan, key, counter_keys) if tracker.fresh else None
        if found is not None:
            return _ready(found)
    from asgiref.sync import sync_to_async

    return sync_to_async(read)(fc, key, counter_keys)


async def _ready(found: dict[str, Any]) -> dict[str, Any]:
    return found


def _read_tracked(
    fc: Any, plan: Plan, tracker: tracking.Tracker, key: str, counter_keys: list[str]
) -> dict[str, Any] | None:
    if tracker.sock is None:
        tracker.connect_if_due()  # outside nearrecords.lock: a slow server stalls no other hit
    with nearrecords.lock:
        live = listening(tracker)
        if live:
            found = kept(fc, plan, key, counter_keys)
            if found is not None:
                return found
        started = nearrecords.clock[0]
    read: dict[str, Any] | None = backend.read(
        aliases.cache_for(fc.alias), fc.alias, [key, *counter_keys], fc.sign
    )
    if read is not None and live:
        keep_read(fc, plan, tracker, read, (key,), started)
    return read


def listening(tracker: tracking.Tracker) -> bool:
    """Under nearrecords.lock: whether what ``tracker`` watches may be served, after taking
    in every push that has arrived. Also nearbatch's."""
    if tracker.pid != os.getpid():
        tracker.lost()  # a forked child: the parent's socket is not ours to read
    tracker.drain()
    return tracker.fresh


def keep_read(
    fc: Any,
    plan: Plan,
    tracker: tracking.Tracker,
    read: dict[str, Any],
    entries: Container[str],
    started: int,
) -> None:
    """Keep what a read under ``tracker``'s watch brought (``entries`` name its entries,
    the rest are counters), except what was invalidated since ``started``. Also nearbatch's."""
    with nearrecords.lock:
        tracker.drain()  # pushes of writes before our read must win over what it read
        if tracker.fresh:
            for name, raw in read.items():
                if nearrecords.may_keep(plan.alias, name, started):
                    nearrecords.keep(fc, plan, name, raw, name in entries)


def epoch() -> int:
    """The invalidation clock now: what a write about to be made passes to :func:`written`."""
    return nearrecords.clock[0]


def kept(fc: Any, plan: Plan, key: str, counter_keys: list[str]) -> Found | None:
    # Under nearrecords.lock: the entry and every counter, all kept, or None (a Found whose
    # value is MISSING when the entry's counters have moved on). Also nearbatch's.
    alias = plan.alias
    record = nearrecords.held.get((alias, key))
    if record is None or (record.expires is not None and record.expires <= time.time()):
        return None
    found = Found()
    found[key] = record.raw
    versions = []
    for name in counter_keys:
        counter = nearrecords.held.get((alias, name))
        if counter is None:
            return None
        found[name] = counter.raw
        versions.append(counter.raw)
    # Used: the entry and its counters go to the recent end, so a hot entry's counters are
    # not evicted before it.
    nearrecords.held.move_to_end((alias, key))
    for name in counter_keys:
        nearrecords.held.move_to_end((alias, name))
    found.held = record
    found.value = MISSING
    if record.stamped == tuple(versions):
        # Current: a near hit (unless its freshness ran out, which the caller decides).
        nearrecords.counts["hits"][alias] += 1
        found.value = record.value
    return found


def _read_validated(fc: Any, plan: Plan, key: str, counter_keys: list[str]) -> dict[str, Any] | None:
    alias = plan.alias
    with nearrecords.lock:
        started = nearrecords.clock[0]
        record = nearrecords.held.get((alias, key))
        if record is not None:
            if record.expires is not None and record.expires <= time.time():
                nearrecords.drop((alias, key))
                record = None
            else:
                nearrecords.held.move_to_end((alias, key))
    if record is None:
        through: dict[str, Any] | None = fc.read_through(key, counter_keys)
        if through is not None and key in through:
            with nearrecords.lock:
                if nearrecords.may_keep(alias, key, started):  # not invalidated here while we read
                    nearrecords.keep(fc, plan, key, through[key], True)
        return through
    counters = fc.counters.read(counter_keys, fc.sign)
    if counters is None:
        return None
    if tuple(map(counters.get, counter_keys)) != record.stamped:
        # Outdated here: the cache may hold a newer entry (another process's), so read it
        # rather than recompute what is there.
        with nearrecords.lock:
            nearrecords.drop((alias, key))
        stored = fc.store.read([key], fc.sign)
        if stored is None:
            return None
        if key in stored:
            with nearrecords.lock:
                if nearrecords.may_keep(alias, key, started):
                    nearrecords.keep(fc, plan, key, stored[key], True)
        return {**counters, **stored}
    found = Found(counters)
    found[key] = record.raw
    found.held = record
    found.value = record.value
    with nearrecords.lock:
        nearrecords.counts["hits"][alias] += 1
    return found


def decoded(fc: Any, found: Found, value: Any) -> None:
    """A near hit of a ``copy=False`` function decoded ``value``: share it from now on."""
    if not fc.near.copy:
        found.held.value = value


# --- what is kept ----------------------------------------------------------------------------


def written(fc: Any, key: str, wired: Any, started: int) -> None:
    """This process stored ``wired`` under ``key``: keep it (no tracker) or drop what was
    kept (Redis: the next read takes it from the cache, under the tracker's watch).

    :param started: :func:`epoch` before the write: an invalidation of ``key`` in this
        process since (``f.invalidate()`` in another thread) keeps it from being kept.
    """
    plan: Plan | None = fc.near
    if plan is None:
        return
    with nearrecords.lock:
        if plan.tracker is None and nearrecords.may_keep(plan.alias, key, started):
            nearrecords.keep(fc, plan, key, wired, True)
        else:
            nearrecords.drop((plan.alias, key))


def dropped(fc: Any, keys: Sequence[str]) -> None:
    """This process deleted ``keys`` of ``fc`` (call it after the delete): forget them here
    too, and keep nothing that a read or write in flight since had found for them."""
    plan: Plan | None = fc.near
    if plan is None:
        return
    with nearrecords.lock:
        nearrecords.invalidated(plan.alias, list(keys))


def changed(alias: str, key: str) -> None:
    """This process changed ``key`` of ``alias`` (a bump): what is kept of it goes, as the
    tracker's push would make it go, but before this process reads it again."""
    if nearrecords.held or _trackers:
        with nearrecords.lock:
            nearrecords.invalidated(alias, [key])


# --- reporting and resetting -------------------------------------------------------------------


def stats() -> dict[str, Any]:
    """Near hits, evictions and invalidations per alias, and what is kept now."""
    return nearrecords.stats()


def forget() -> None:
    """Drop everything kept and counted, and close the trackers."""
    _drop_all()
    with nearrecords.lock:
        nearrecords.recent.clear()
        nearrecords.floor[0] = nearrecords.clock[0] = 0
        for counter in nearrecords.counts.values():
            counter.clear()


def _drop_all() -> None:
    # Everything kept goes, every tracker is closed, and no read in flight keeps anything.
    with nearrecords.lock:
        for tracker in _trackers.values():
            if tracker is not None:
                tracker.close()
        _trackers.clear()
        nearrecords.held.clear()
        nearrecords.total[0] = 0
        nearrecords.clock[0] += 1
        nearrecords.floor[0] = nearrecords.clock[0]


def _caches_changed(*, setting: str, **kwargs: object) -> None:
    # Another server, KEY_PREFIX or VERSION: what was kept and watched is another cache's.
    if setting == "CACHES":
        _drop_all()


setting_changed.connect(_caches_changed, dispatch_uid="cachedcall.near.caches_changed")


def _after_fork_in_child() -> None:
    # The child holds nearrecords.lock (taken by the forking thread before the fork): it forgets the
    # parent's connections (closing only its own copies of their sockets) and what was kept
    # under their watch, then lets go.
    try:
        for tracker in _trackers.values():
            if tracker is not None:
                tracker.forked()
    finally:
        nearrecords.lock.release()


# A fork while another thread holds the tier's lock (a drainer, a hit) would leave the
# child's copy of it held forever: the fork waits for it instead.
os.register_at_fork(
    before=nearrecords.lock.acquire,
    after_in_parent=nearrecords.lock.release,
    after_in_child=_after_fork_in_child,
)
