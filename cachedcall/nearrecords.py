"""What the near tier (:mod:`cachedcall.near`) keeps: its table of records, bounded in bytes
and least recently used out first, the invalidation clock that keeps a read in flight across
an invalidation from keeping what it read, the read it serves, and one function's plan.

Process state: the records (``held``, by alias and key, and their byte total ``total``),
the invalidation clock (``clock``, ``floor``, ``recent``) and the counts (``counts``), all
under ``lock``; :func:`cachedcall.near.forget` clears them.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections import OrderedDict
from typing import Any

from cachedcall import entry
from cachedcall import tracking
from cachedcall.entry import MISSING

__all__: list[str] = []

#: Bytes counted per record beyond its payload: the key, the tuple, the dict slot.
OVERHEAD = 200


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


def payload_size(raw: Any) -> int:
    # An unsigned entry is a tuple whose payload is bytes; anything else counts as small.
    for part in raw if type(raw) is tuple else ():
        if type(part) is bytes:
            return len(part)
    return 0


#: The near tier's lock: the table, the clock and the trackers' sockets.
lock = threading.Lock()
#: Invalidated keys remembered for reads in flight; past this, all reads in flight keep
#: nothing (and the memory is freed).
RECENT_LIMIT = 50_000


held: OrderedDict[tuple[str, str], Held] = OrderedDict()
total = [0]
clock = [0]
floor = [0]
recent: dict[tuple[str, str], int] = {}
counts: dict[str, Counter[str]] = {"hits": Counter(), "evictions": Counter(), "invalidations": Counter()}


def may_keep(alias: str, key: str, started: int) -> bool:
    # Under lock: whether what a read that began at epoch ``started`` found under ``key``
    # may be kept: nothing invalidated it (or everything) since the read began.
    return started >= floor[0] and recent.get((alias, key), -1) <= started


def keep(fc: Any, plan: Plan, name: str, raw: Any, is_entry: bool) -> None:
    # Under lock.
    if raw is None or raw is MISSING:
        return
    alias = plan.alias
    if is_entry:
        stamp = entry.stamp(raw, name, fc.sign)
        if stamp is None:
            return
        stamped, created = stamp
        size = OVERHEAD + (len(raw) if type(raw) is bytes else payload_size(raw))
        if size > plan.max_size:
            return
        expires = None if plan.timeout is None else created + plan.timeout
        record = Held(raw, size, stamped, expires)
    elif type(raw) is int:
        record = Held(raw, OVERHEAD, None, None)
    else:
        return  # a counter that is not one of ours: never served from here
    old = held.pop((alias, name), None)
    if old is not None:
        total[0] -= old.size
    held[alias, name] = record
    total[0] += record.size
    limit = plan.max_size * 4
    while total[0] > limit and held:
        (evicted_alias, _), gone = held.popitem(last=False)
        total[0] -= gone.size
        counts["evictions"][evicted_alias] += 1


def drop(where: tuple[str, str]) -> None:
    record = held.pop(where, None)
    if record is not None:
        total[0] -= record.size


def invalidated(alias: str, keys: list[str]) -> None:
    # Under lock (a tracker's callback): Redis says these changed.
    clock[0] += 1
    if len(recent) > RECENT_LIMIT:
        recent.clear()
        floor[0] = clock[0]
    for key in keys:
        recent[alias, key] = clock[0]
        if (alias, key) in held:
            drop((alias, key))
            counts["invalidations"][alias] += 1


def flushed(alias: str) -> None:
    # Under lock: the tracker lost its connection, or Redis flushed a database.
    clock[0] += 1
    floor[0] = clock[0]  # reads in flight started before: they keep nothing
    for where in [w for w in held if w[0] == alias]:
        drop(where)


def stats() -> dict[str, Any]:
    """Near hits, evictions and invalidations per alias, and what is kept now."""
    with lock:
        return {
            "hits": dict(counts["hits"]),
            "evictions": dict(counts["evictions"]),
            "invalidations": dict(counts["invalidations"]),
            "entries": len(held),
            "bytes": total[0],
        }
