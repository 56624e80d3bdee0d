"""One decorated function's resolved state: its options, its keys, its counts, invalidation.

A :class:`FunctionCache` is made once, at decoration; what depends on the settings (the
aliases, the key prefix, the timeout) is resolved on the first call and again whenever
``override_settings`` changes ``CACHEDCALL``. The call protocol itself is in
:mod:`cachedcall.call`.

Process state: :data:`registry` (every live FunctionCache, held weakly, for the system
checks and the management command); in each FunctionCache, its per-settings state, its key
memo (bounded), its hit/miss/stored/error/refused/stale counts and whether it logged an
unpicklable result.
"""

from __future__ import annotations

import inspect
import logging
import time
import weakref
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Any
from typing import Protocol

from django.core.cache.backends.base import DEFAULT_TIMEOUT

from cachedcall import aliases
from cachedcall import backend
from cachedcall import bumps
from cachedcall import conf
from cachedcall import entry
from cachedcall import events
from cachedcall import flights
from cachedcall import inspection
from cachedcall import near
from cachedcall import nearrecords
from cachedcall import options
from cachedcall.entry import MISSING
from cachedcall.entry import Entry
from cachedcall.exceptions import InvalidOption
from cachedcall.keys import Binder
from cachedcall.keys import digest
from cachedcall.keys import encode_call
from cachedcall.keys import encode_material
from cachedcall.keys import safe_name
from cachedcall.versions import dependency_keys

__all__: list[str] = []

logger = logging.getLogger("cachedcall")
registry: weakref.WeakSet[FunctionCache] = weakref.WeakSet()
KEY_MEMO_SIZE = 4096
#: The longest str argument whose call's key is memoized (so the memo holds < 4096 x a few
#: hundred bytes per function, whatever the arguments).
MEMO_ARGUMENT_SIZE = 64

Plan = tuple[str, list[str]]


class Policy(Protocol):
    """What ``cached_view`` plugs into a function's call: its key, what it refuses to read
    or store, and how a stored value is served."""

    #: Whether :meth:`serve` needs the entry (for its age) on a hit.
    want_entry: bool

    def key(self, *args: Any, **kwargs: Any) -> Any: ...

    def bypass(self, full: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None: ...

    def store(
        self, fc: FunctionCache, result: Any, full: tuple[Any, ...], kwargs: dict[str, Any], key: str
    ) -> tuple[str, Any] | str: ...

    def serve(self, value: Any, stored: Entry | None, args: tuple[Any, ...]) -> Any: ...

    async def aresolve(self, args: tuple[Any, ...]) -> None:
        """On the async path, before the sync rules run: load what they need off the loop."""


class FunctionCache:
    """Everything one decorated function needs per call, resolved once."""

    def __init__(
        self,
        wrapped: Any,
        given: dict[str, Any],
        binding: str,
        decorator: str = "cached",
        policy: Policy | None = None,
    ) -> None:
        func = getattr(wrapped, "__func__", wrapped)
        self.name = f"{func.__module__}.{func.__qualname__}"
        self.owner = f"{decorator}(...) on {self.name}"
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise InvalidOption(
                f"{self.owner}: a generator function returns an iterator that is consumed as it "
                "is read, so there is no value to store. Return a list instead, or cache a "
                "helper that builds the list."
            )
        resolved = options.resolve(decorator, self.name, given, options.VIEW if policy else options.FUNCTION)
        self.options = resolved
        self.policy = policy
        self.want_entry = policy is not None and policy.want_entry
        # A view's instance (a method decorated directly) lives for one request: not keyed.
        self.binds_instance = policy is None and binding in ("function", "classmethod", "instancemethod")
        self.is_async = inspection.is_async(func)
        self.timeout_given = resolved["timeout"] is not MISSING
        self.timeout = resolved["timeout"] if self.timeout_given else None
        self.cache_option: str | None = resolved["cache"]
        key = policy.key if policy is not None else resolved.get("key")
        self.key_fn: Callable[..., Any] | None = key if callable(key) else None
        self.binder = Binder(func, None if callable(key) else key, self.name)
        self.names = self.binder.parameter_names()
        prefix = (
            inspection.default_prefix(func, self.name)
            if resolved["prefix"] is MISSING
            else resolved["prefix"]
        )
        self.fn_id = digest(f"{prefix}\x00{resolved['version']}")[:12]
        self.readable = safe_name(func.__name__)
        self.unless: Callable[[Any], object] | None = resolved.get("unless")
        depends = resolved["depends_on"]
        self.depends_fn: Callable[..., Any] | None = depends if callable(depends) else None
        self.depends_static: list[Any] = [] if depends is None or callable(depends) else depends
        inspection.check_static(self.depends_static, self.owner)
        self.flights = flights.Flights() if resolved["single_flight"] else None
        self.lock_option: bool | None = resolved["lock"]
        self.lock_ttl: int = resolved["lock_ttl"]
        self.lock_wait: float = resolved["lock_wait"]
        self.stale: float = resolved["stale"]
        self.soft: bool = resolved["soft"]
        self.early: float | None = resolved["early"]
        self.near_option: bool | None = resolved["near"]
        self.copy: bool = resolved.get("copy", True)
        self.hits = self.misses = self.errors = self.stales = 0
        # Values written to the cache, and values not stored because refused (a view's
        # policy, a snapshot, the backend's item size): plain ints, like the counts above,
        # which cachedcall.metrics flushes into the cache off the call path.
        self.stored = self.refused = 0
        self.near: nearrecords.Plan | None = None
        self._settings: conf.Settings | None = None
        self._logged_pickle_error = False
        self._logged_too_large = False
        self._logged_unreadable = False
        registry.add(self)

    def __repr__(self) -> str:
        return f"<FunctionCache {self.name}>"

    # -- per-settings state -------------------------------------------------------------------

    def setup(self) -> conf.Settings:
        settings = conf.get()
        if settings is self._settings:
            return settings
        inspection.check_installed(self.owner)
        self.alias = self.cache_option or settings.cache
        self.counters_alias = settings.counters_for(self.alias)
        self.store = backend.store(self.alias)
        self.counters = backend.store(self.counters_alias)
        self.split = self.counters_alias != self.alias
        prefix = settings.key_prefix
        self.entry_prefix = f"{prefix}:{self.readable}:"
        # The generations come first, in this order (entry.GENERATIONS): soft= compares them.
        self.generation_keys = [f"{prefix}:G", f"{prefix}:g:{self.fn_id}"]
        assert len(self.generation_keys) == entry.GENERATIONS
        if self.timeout_given:
            self.store_timeout = inspection.backend_seconds(self.timeout, self.alias)
        elif settings.timeout_set:
            self.store_timeout = inspection.backend_seconds(settings.timeout, self.alias)
        else:
            self.store_timeout = DEFAULT_TIMEOUT
        self.sign = settings.sign
        self.lock = settings.lock if self.lock_option is None else self.lock_option
        # Freshness is carried in the entry only when something reads it: a stale window
        # (the entry outlives its timeout by `stale`) or early refresh.
        self.fresh_for = None
        if self.stale or self.early:
            fresh = self.store_timeout
            if fresh is DEFAULT_TIMEOUT:
                fresh = aliases.lookup(self.alias).default_timeout
            if fresh:
                self.fresh_for = fresh
                self.store_timeout = fresh + self.stale
        self.static_keys = self.generation_keys + dependency_keys(self.depends_static, prefix, self.owner)
        self.key_memo: dict[tuple[Any, ...], str] = {}
        self.near = near.plan_for(self, settings)
        self._settings = settings
        return settings

    # -- keys ---------------------------------------------------------------------------------

    def full_args(self, instance: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        if instance is not None and self.binds_instance:
            return (instance, *args)
        return args

    def entry_key(
        self, full: tuple[Any, ...], kwargs: dict[str, Any], values: tuple[Any, ...] | None = None
    ) -> str:
        if self.key_fn is not None:
            material = encode_material(self.key_fn(*full, **kwargs), self.owner)
            return self.entry_prefix + digest(f"{self.fn_id}|{material}")
        if values is None:
            values = self.binder.bind(full, kwargs)
        # Calls whose arguments are all short exact strs and machine-sized ints (which never
        # compare equal to each other, unlike 1, 1.0 and True) reuse their key from a memo
        # bounded in entries and so in bytes: a long argument is never kept alive by it.
        simple = True
        for value in values:
            kind = type(value)
            if kind is str:
                if len(value) > MEMO_ARGUMENT_SIZE:
                    simple = False
                    break
            elif kind is not int or not -(2**63) <= value < 2**63:
                simple = False
                break
        if simple:
            key = self.key_memo.get(values)
            if key is not None:
                return key
        material = encode_call(values, self.names, self.name)
        key = self.entry_prefix + digest(f"{self.fn_id}|{material}")
        if simple:
            if len(self.key_memo) >= KEY_MEMO_SIZE:
                self.key_memo.clear()
            self.key_memo[values] = key
        return key

    def counter_keys(self, full: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
        if self.depends_fn is None:
            return self.static_keys
        items = self.depends_fn(*full, **kwargs)
        return self.static_keys + dependency_keys(items, conf.get().key_prefix, self.owner)

    def key_for(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        self.setup()
        return self.entry_key(self.full_args(instance, args), kwargs)

    def keys_for_call(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Plan | None:
        """Return ``(entry key, counter keys)``, or ``None`` when this call must bypass."""
        self.setup()
        # full_args() and counter_keys(), inline: this is the hit path.
        full = (instance, *args) if instance is not None and self.binds_instance else args
        values = None
        if self.key_fn is None:
            try:
                values = self.binder.bind(full, kwargs)
            except TypeError:
                return None  # a wrong call: let the function raise its own TypeError
        if self.policy is not None:
            reason = self.policy.bypass(full, kwargs)
            if reason is not None:
                self.refused += 1
                events.emit(self, None, events.REFUSED, 0.0, reason)
                return None
        key = self.entry_key(full, kwargs, values)
        counter_keys = self.static_keys if self.depends_fn is None else self.counter_keys(full, kwargs)
        if bumps.unsettled():
            outcome = bumps.bypass(counter_keys)
            if outcome is not None:
                events.emit(self, key, outcome, 0.0, depends=counter_keys)
                return None
        return key, counter_keys

    # -- reading ------------------------------------------------------------------------------

    def read(self, key: str, counter_keys: list[str]) -> dict[str, Any] | None:
        """The entry and its counters, in one round trip (two with ``VERSIONS_CACHE``), or
        fewer from the near tier."""
        if self.near is not None:
            return near.read(self, key, counter_keys)
        return self.read_through(key, counter_keys)

    def read_through(self, key: str, counter_keys: list[str]) -> dict[str, Any] | None:
        """:meth:`read` from the cache itself."""
        if not self.split:
            # The hit path: backend.read itself rather than through Store.read, one frame
            # (~70 ns, 1 % of a locmem hit) less.
            return backend.read(aliases.cache_for(self.alias), self.alias, [key, *counter_keys], self.sign)
        counters = self.counters.read(counter_keys, self.sign)
        if counters is None:
            return None
        found = self.store.read([key], self.sign)
        return None if found is None else {**counters, **found}

    def aread(self, key: str, counter_keys: list[str]) -> Awaitable[dict[str, Any] | None]:
        """The async :meth:`read` (an awaitable, not a coroutine function: one frame less)."""
        if self.near is not None:
            return near.aread(self, key, counter_keys)
        if not self.split:
            return self.store.aread([key, *counter_keys], self.sign)
        from asgiref.sync import sync_to_async

        return sync_to_async(self.read_through)(key, counter_keys)

    def finish(
        self,
        flight: tuple[Any, flights.Flight] | None,
        key: str | None = None,
        stored: Any = MISSING,
        error: BaseException | None = None,
    ) -> None:
        """Release a leader's followers with its outcome; nothing to do without a flight."""
        if flight is not None and self.flights is not None:
            self.flights.land(flight[0], flight[1], key, None if stored is MISSING else stored, error)

    def report(self, key: str, failed: bool, stored: bool, started: float, counter_keys: list[str]) -> None:
        elapsed = time.perf_counter() - started
        events.emit(self, key, events.ERROR if failed else events.MISS, elapsed, depends=counter_keys)
        if stored:
            events.emit(self, key, events.STORED, elapsed, depends=counter_keys)

    # -- explicit invalidation ----------------------------------------------------------------

    def invalidate(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        key = self.key_for(instance, args, kwargs)
        self.store.delete([key])
        near.dropped(self, [key])
        if events.active:
            events.emit(self, key, events.INVALIDATED, 0.0)

    def invalidate_all(self) -> None:
        self.setup()
        bumps.bump_now(self.generation_keys[1:])
        if events.active:
            events.emit(self, None, events.INVALIDATED, 0.0)


def forget() -> None:
    """Reset every live function's counts, key memo and settings-derived state."""
    for fc in list(registry):
        fc.hits = fc.misses = fc.errors = fc.stales = 0
        fc.stored = fc.refused = 0
        fc._settings = None
        fc._logged_pickle_error = False
        fc._logged_too_large = False
        fc._logged_unreadable = False
