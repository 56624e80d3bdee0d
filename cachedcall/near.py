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

Process state: the kept records (``_held``, by alias and key, with their byte total), the
decoded values of ``copy=False`` functions in them, the trackers (``_trackers``), the
invalidation clock (``_epoch``, ``_floor``, ``_recent``: a read whose keys were invalidated
while it was in flight keeps nothing) and the counts (``_counts``); all under ``_lock``.
:func:`forget` drops them and closes the trackers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections import OrderedDict
from collections.abc import Awaitable
from collections.abc import Sequence
from typing import Any

from django.core.signals import setting_changed

from cachedcall import aliases
from cachedcall import backend
from cachedcall import entry
from cachedcall import fastpaths
from cachedcall import tracking
from cachedcall.entry import MISSING

__all__: list[str] = []

logger = logging.getLogger("cachedcall")

#: Bytes counted per record beyond its payload: the key, the tuple, the dict slot.
OVERHEAD = 200
#: Invalidated keys remembered for reads in flight; past this, all reads in flight keep
#: nothing (and the memory is freed).
RECENT_LIMIT = 50_000

_lock = threading.Lock()


class Held:
    """One kept value: an entry as the backend read returns it, or (Redis) a counter."""

    __slots__ = ("expires", "raw", "size", "stamped", "value")

    def __init__(self, raw: Any, size: int, stamped: tuple[Any, ...] | None, expires: float | None) -> None:
        self.raw = raw
        self.size = size
        self.stamped = stamped
        self.expires = expires
        #: The decoded value, for a function with ``copy=False`` (shared by its callers).
        self.value: Any = MISSING


class Found(dict[str, Any]):
    """What a near hit read: the entry and counters, as :func:`backend.read` returns them,
    and the decoded value to share (``copy=False``), or ``MISSING``."""

    __slots__ = ("held", "value")

    held: Held
    value: Any


class Plan:
    """How one function's reads use the tier, resolved with its settings."""

    __slots__ = ("alias", "copy", "max_size", "timeout", "tracker")

    def __init__(
        self, alias: str, tracker: tracking.Tracker | None, timeout: float | None, copy: bool
    ) -> None:
        self.alias = alias
        self.tracker = tracker
        self.timeout = timeout
        self.copy = copy
        self.max_size = 0


_held: OrderedDict[tuple[str, str], Held] = OrderedDict()
_bytes = [0]
_trackers: dict[tuple[str, str, str, tuple[str, ...]], tracking.Tracker | None] = {}
_epoch = [0]
_floor = [0]
_recent: dict[tuple[str, str], int] = {}
_counts: dict[str, Counter[str]] = {"hits": Counter(), "evictions": Counter(), "invalidations": Counter()}


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
    with _lock:
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
                tracking.address(servers[0], options),
                f"{head}{key_prefix}:",
                _lock,
                lambda keys: _invalidated(alias, [k.decode(errors="replace")[skip:] for k in keys]),
                lambda: _flushed(alias),
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
        with _lock:
            tracker.drain()
            found = _kept(fc, plan, key, counter_keys) if tracker.fresh else None
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
        tracker.connect_if_due()  # outside _lock: a slow server stalls no other hit
    with _lock:
        if tracker.pid != os.getpid():
            tracker.lost()  # a forked child: the parent's socket is not ours to read
        tracker.drain()
        live = tracker.fresh
        if live:
            found = _kept(fc, plan, key, counter_keys)
            if found is not None:
                return found
        started = _epoch[0]
    read: dict[str, Any] | None = backend.read(
        aliases.cache_for(fc.alias), fc.alias, [key, *counter_keys], fc.sign
    )
    if read is not None and live:
        with _lock:
            tracker.drain()  # pushes of writes before our read must win over what it read
            if tracker.fresh:
                for name, raw in read.items():
                    if _may_keep(plan.alias, name, started):
                        _keep(fc, plan, name, raw, name == key)
    return read


def _may_keep(alias: str, key: str, started: int) -> bool:
    # Under _lock: whether what a read that began at epoch ``started`` found under ``key``
    # may be kept: nothing invalidated it (or everything) since the read began.
    return started >= _floor[0] and _recent.get((alias, key), -1) <= started


def epoch() -> int:
    """The invalidation clock now: what a write about to be made passes to :func:`written`."""
    return _epoch[0]


def _kept(fc: Any, plan: Plan, key: str, counter_keys: list[str]) -> Found | None:
    # Under _lock: the entry and every counter, all kept and current, or None.
    alias = plan.alias
    record = _held.get((alias, key))
    if record is None or (record.expires is not None and record.expires <= time.time()):
        return None
    found = Found()
    found[key] = record.raw
    versions = []
    for name in counter_keys:
        counter = _held.get((alias, name))
        if counter is None:
            return None
        found[name] = counter.raw
        versions.append(counter.raw)
    # Used: the entry and its counters go to the recent end, so a hot entry's counters are
    # not evicted before it.
    _held.move_to_end((alias, key))
    for name in counter_keys:
        _held.move_to_end((alias, name))
    found.held = record
    found.value = MISSING
    if record.stamped == tuple(versions):
        # Current: a near hit (unless its freshness ran out, which the caller decides).
        _counts["hits"][alias] += 1
        found.value = record.value
    return found


def _read_validated(fc: Any, plan: Plan, key: str, counter_keys: list[str]) -> dict[str, Any] | None:
    alias = plan.alias
    with _lock:
        started = _epoch[0]
        record = _held.get((alias, key))
        if record is not None:
            if record.expires is not None and record.expires <= time.time():
                _drop((alias, key))
                record = None
            else:
                _held.move_to_end((alias, key))
    if record is None:
        through: dict[str, Any] | None = fc.read_through(key, counter_keys)
        if through is not None and key in through:
            with _lock:
                if _may_keep(alias, key, started):  # not invalidated here while we read
                    _keep(fc, plan, key, through[key], True)
        return through
    counters = fc.counters.read(counter_keys, fc.sign)
    if counters is None:
        return None
    if tuple(map(counters.get, counter_keys)) != record.stamped:
        # Outdated here: the cache may hold a newer entry (another process's), so read it
        # rather than recompute what is there.
        with _lock:
            _drop((alias, key))
        stored = fc.store.read([key], fc.sign)
        if stored is None:
            return None
        if key in stored:
            with _lock:
                if _may_keep(alias, key, started):
                    _keep(fc, plan, key, stored[key], True)
        return {**counters, **stored}
    found = Found(counters)
    found[key] = record.raw
    found.held = record
    found.value = record.value
    with _lock:
        _counts["hits"][alias] += 1
    return found


def decoded(fc: Any, found: Found, value: Any) -> None:
    """A near hit of a ``copy=False`` function decoded ``value``: share it from now on."""
    if not fc.near.copy:
        found.held.value = value


# --- what is kept ----------------------------------------------------------------------------


def _keep(fc: Any, plan: Plan, name: str, raw: Any, is_entry: bool) -> None:
    # Under _lock.
    if raw is None or raw is MISSING:
        return
    alias = plan.alias
    if is_entry:
        stamp = entry.stamp(raw, name, fc.sign)
        if stamp is None:
            return
        stamped, created = stamp
        size = OVERHEAD + (len(raw) if type(raw) is bytes else _payload_size(raw))
        if size > plan.max_size:
            return
        expires = None if plan.timeout is None else created + plan.timeout
        record = Held(raw, size, stamped, expires)
    elif type(raw) is int:
        record = Held(raw, OVERHEAD, None, None)
    else:
        return  # a counter that is not one of ours: never served from here
    old = _held.pop((alias, name), None)
    if old is not None:
        _bytes[0] -= old.size
    _held[alias, name] = record
    _bytes[0] += record.size
    limit = plan.max_size * 4
    while _bytes[0] > limit and _held:
        (evicted_alias, _), gone = _held.popitem(last=False)
        _bytes[0] -= gone.size
        _counts["evictions"][evicted_alias] += 1


def _payload_size(raw: Any) -> int:
    # An unsigned entry is a tuple whose payload is bytes; anything else counts as small.
    for part in raw if type(raw) is tuple else ():
        if type(part) is bytes:
            return len(part)
    return 0


def _drop(where: tuple[str, str]) -> None:
    record = _held.pop(where, None)
    if record is not None:
        _bytes[0] -= record.size


def written(fc: Any, key: str, wired: Any, started: int) -> None:
    """This process stored ``wired`` under ``key``: keep it (no tracker) or drop what was
    kept (Redis: the next read takes it from the cache, under the tracker's watch).

    :param started: :func:`epoch` before the write: an invalidation of ``key`` in this
        process since (``f.invalidate()`` in another thread) keeps it from being kept.
    """
    plan: Plan | None = fc.near
    if plan is None:
        return
    with _lock:
        if plan.tracker is None and _may_keep(plan.alias, key, started):
            _keep(fc, plan, key, wired, True)
        else:
            _drop((plan.alias, key))


def dropped(fc: Any, keys: Sequence[str]) -> None:
    """This process deleted ``keys`` of ``fc`` (call it after the delete): forget them here
    too, and keep nothing that a read or write in flight since had found for them."""
    plan: Plan | None = fc.near
    if plan is None:
        return
    with _lock:
        _invalidated(plan.alias, list(keys))


def changed(alias: str, key: str) -> None:
    """This process changed ``key`` of ``alias`` (a bump): what is kept of it goes, as the
    tracker's push would make it go, but before this process reads it again."""
    if _held or _trackers:
        with _lock:
            _invalidated(alias, [key])


def _invalidated(alias: str, keys: list[str]) -> None:
    # Under _lock (a tracker's callback): Redis says these changed.
    _epoch[0] += 1
    if len(_recent) > RECENT_LIMIT:
        _recent.clear()
        _floor[0] = _epoch[0]
    for key in keys:
        _recent[alias, key] = _epoch[0]
        if (alias, key) in _held:
            _drop((alias, key))
            _counts["invalidations"][alias] += 1


def _flushed(alias: str) -> None:
    # Under _lock: the tracker lost its connection, or Redis flushed a database.
    _epoch[0] += 1
    _floor[0] = _epoch[0]  # reads in flight started before: they keep nothing
    for where in [w for w in _held if w[0] == alias]:
        _drop(where)


# --- reporting and resetting -------------------------------------------------------------------


def stats() -> dict[str, Any]:
    """Near hits, evictions and invalidations per alias, and what is kept now."""
    with _lock:
        return {
            "hits": dict(_counts["hits"]),
            "evictions": dict(_counts["evictions"]),
            "invalidations": dict(_counts["invalidations"]),
            "entries": len(_held),
            "bytes": _bytes[0],
        }


def forget() -> None:
    """Drop everything kept and counted, and close the trackers."""
    _drop_all()
    with _lock:
        _recent.clear()
        _floor[0] = _epoch[0] = 0
        for counter in _counts.values():
            counter.clear()


def _drop_all() -> None:
    # Everything kept goes, every tracker is closed, and no read in flight keeps anything.
    with _lock:
        for tracker in _trackers.values():
            if tracker is not None:
                tracker.close()
        _trackers.clear()
        _held.clear()
        _bytes[0] = 0
        _epoch[0] += 1
        _floor[0] = _epoch[0]


def _caches_changed(*, setting: str, **kwargs: object) -> None:
    # Another server, KEY_PREFIX or VERSION: what was kept and watched is another cache's.
    if setting == "CACHES":
        _drop_all()


setting_changed.connect(_caches_changed, dispatch_uid="cachedcall.near.caches_changed")


def _after_fork_in_child() -> None:
    # The child holds _lock (taken by the forking thread before the fork): it forgets the
    # parent's connections (closing only its own copies of their sockets) and what was kept
    # under their watch, then lets go.
    try:
        for tracker in _trackers.values():
            if tracker is not None:
                tracker.forked()
    finally:
        _lock.release()


# A fork while another thread holds _lock (a drainer, a hit) would leave the child's copy of
# it held forever: the fork waits for it instead.
os.register_at_fork(before=_lock.acquire, after_in_parent=_lock.release, after_in_child=_after_fork_in_child)
