"""One decorated function's resolved state: its options, its keys, its counts, invalidation.

A :class:`FunctionCache` is made once, at decoration; what depends on the settings (the
aliases, the key prefix, the timeout) is resolved on the first call and again whenever
``override_settings`` changes ``CACHEDCALL``. The call protocol itself is in
:mod:`cachedcall.call`.

Process state: :data:`registry` (every live FunctionCache, held weakly, for the system
checks and the management command); in each FunctionCache, its per-settings state, its key
memo (bounded), its hit/miss/error/stale counts and whether it logged an unpicklable result.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import time
import weakref
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Any
from typing import Protocol

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.exceptions import ImproperlyConfigured

from cachedcall import backend
from cachedcall import bumps
from cachedcall import conf
from cachedcall import entry
from cachedcall import events
from cachedcall import flights
from cachedcall import options
from cachedcall import signing
from cachedcall.entry import CORRUPT
from cachedcall.entry import FAILED
from cachedcall.entry import HIT
from cachedcall.entry import MISS
from cachedcall.entry import MISSING
from cachedcall.entry import Entry
from cachedcall.entry import ReadState
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
        self.is_async = is_async(func)
        self.timeout_given = resolved["timeout"] is not MISSING
        self.timeout = resolved["timeout"] if self.timeout_given else None
        self.cache_option: str | None = resolved["cache"]
        key = policy.key if policy is not None else resolved.get("key")
        self.key_fn: Callable[..., Any] | None = key if callable(key) else None
        self.binder = Binder(func, None if callable(key) else key, self.name)
        self.names = self.binder.parameter_names()
        prefix = _default_prefix(func, self.name) if resolved["prefix"] is MISSING else resolved["prefix"]
        self.fn_id = digest(f"{prefix}\x00{resolved['version']}")[:12]
        self.readable = safe_name(func.__name__)
        self.unless: Callable[[Any], object] | None = resolved.get("unless")
        depends = resolved["depends_on"]
        self.depends_fn: Callable[..., Any] | None = depends if callable(depends) else None
        self.depends_static: list[Any] = [] if depends is None or callable(depends) else depends
        _check_static(self.depends_static, self.owner)
        self.flights = flights.Flights() if resolved["single_flight"] else None
        self.lock_option: bool | None = resolved["lock"]
        self.lock_ttl: int = resolved["lock_ttl"]
        self.lock_wait: float = resolved["lock_wait"]
        self.stale: float = resolved["stale"]
        self.soft: bool = resolved["soft"]
        self.early: float | None = resolved["early"]
        self.hits = self.misses = self.errors = self.stales = 0
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
        _check_installed(self.owner)
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
            self.store_timeout = _backend_seconds(self.timeout, self.alias)
        elif settings.timeout_set:
            self.store_timeout = _backend_seconds(settings.timeout, self.alias)
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
                fresh = backend.lookup(self.alias).default_timeout
            if fresh:
                self.fresh_for = fresh
                self.store_timeout = fresh + self.stale
        self.static_keys = self.generation_keys + dependency_keys(self.depends_static, prefix, self.owner)
        self.key_memo: dict[tuple[Any, ...], str] = {}
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
        full = self.full_args(instance, args)
        values = None
        if self.key_fn is None:
            try:
                values = self.binder.bind(full, kwargs)
            except TypeError:
                return None  # a wrong call: let the function raise its own TypeError
        if self.policy is not None:
            reason = self.policy.bypass(full, kwargs)
            if reason is not None:
                events.emit(self, None, events.REFUSED, 0.0, reason)
                return None
        key = self.entry_key(full, kwargs, values)
        counter_keys = self.counter_keys(full, kwargs)
        if bumps.unsettled():
            outcome = bumps.bypass(counter_keys)
            if outcome is not None:
                events.emit(self, key, outcome, 0.0)
                return None
        return key, counter_keys

    # -- reading ------------------------------------------------------------------------------

    def read(self, key: str, counter_keys: list[str]) -> dict[str, Any] | None:
        """The entry and its counters, in one round trip (two with ``VERSIONS_CACHE``)."""
        if not self.split:
            return self.store.read([key, *counter_keys], self.sign)
        counters = self.counters.read(counter_keys, self.sign)
        if counters is None:
            return None
        found = self.store.read([key], self.sign)
        return None if found is None else {**counters, **found}

    def aread(self, key: str, counter_keys: list[str]) -> Awaitable[dict[str, Any] | None]:
        """The async :meth:`read` (an awaitable, not a coroutine function: one frame less)."""
        if not self.split:
            return self.store.aread([key, *counter_keys], self.sign)
        from asgiref.sync import sync_to_async

        return sync_to_async(self.read)(key, counter_keys)

    def classify(
        self, found: dict[str, Any] | None, key: str, counter_keys: list[str], args: tuple[Any, ...]
    ) -> tuple[ReadState, Any, tuple[Any, ...] | None, Entry | None]:
        """``(state, value, versions, entry)`` of a read (see :func:`entry.classify`); counts it."""
        if found is None:
            self.errors += 1
            return FAILED, MISSING, None, None
        versions = tuple(map(found.get, counter_keys))
        raw = found.get(key)
        if raw is None and key in found:
            # pymemcache's serde swallows an unpickling error and hands back None; we never
            # store None as an entry, so it is one that did not decode.
            return self.unreadable(key, "the client could not decode it"), MISSING, versions, None
        try:
            state, value, stored = entry.classify(
                raw, key, versions, self.sign, self.stale, self.early, self.soft, self.want_entry
            )
        except signing.BadSignature as exc:
            logger.error(
                "cachedcall: %s: entry %r failed its signature check and was not unpickled "
                "(%s); deleting it. Is something else writing to this cache?",
                self.name,
                key,
                exc,
            )
            backend.bad_signatures[self.alias] += 1
            self.errors += 1
            return CORRUPT, MISSING, versions, None
        except ValueError as exc:
            return self.unreadable(key, str(exc)), MISSING, versions, None
        if state is HIT:
            self.hits += 1
            if self.policy is not None:
                value = self.policy.serve(value, stored, args)
        elif state is MISS:
            self.misses += 1
        return state, value, versions, stored

    def unreadable(self, key: str, why: str) -> ReadState:
        """A corrupt or undecodable entry: counted, logged once per function, deleted."""
        backend.errors[self.alias] += 1
        backend.corrupt[self.alias] += 1
        self.errors += 1
        if not self._logged_unreadable:
            self._logged_unreadable = True
            logger.warning(
                "cachedcall: %s: deleting unreadable entry %r (%s). Further ones are counted "
                "(stats()['corrupt']), not logged.",
                self.name,
                key,
                why,
            )
        return CORRUPT

    def current_value(
        self, found: dict[str, Any], key: str, counter_keys: list[str], args: tuple[Any, ...]
    ) -> tuple[Any, Entry | None, tuple[Any, ...]]:
        """What a lock waiter polls for: ``(value, entry, versions)`` of a current entry, or
        ``(MISSING, None, versions)``; nothing counted, nothing deleted."""
        versions = tuple(map(found.get, counter_keys))
        value, stored = entry.current_value(found.get(key), key, versions, self.sign)
        if value is not MISSING:
            self.hits += 1
            if self.policy is not None:
                value = self.policy.serve(value, stored, args)
        return value, stored, versions

    def old(self, stored: Entry, key: str, started: float, args: tuple[Any, ...]) -> Any:
        """An old value served while another caller refreshes it; ``MISSING`` if unreadable."""
        try:
            value = entry.value(stored.payload)
        except ValueError:
            return MISSING
        self.stales += 1
        if self.policy is not None:
            value = self.policy.serve(value, stored, args)
        if events.active:
            events.emit(self, key, events.STALE, time.perf_counter() - started)
        return value

    def shared(
        self, value: Any, flight: flights.Flight, key: str, started: float, args: tuple[Any, ...]
    ) -> Any:
        """A follower's value: the leader's, as if read from the cache."""
        if self.policy is not None:
            value = self.policy.serve(value, flight.entry, args)
        if events.active:
            events.emit(self, key, events.HIT, time.perf_counter() - started)
        return value

    # -- writing ------------------------------------------------------------------------------

    def pack(
        self,
        versions: tuple[Any, ...] | None,
        duration: float,
        result: Any,
        full: tuple[Any, ...],
        kwargs: dict[str, Any],
        key: str,
    ) -> tuple[str, Entry | Any]:
        """Return ``(key, entry)`` to store for ``result``; entry ``MISSING`` for none."""
        if versions is None or self.store_timeout == 0:
            return key, MISSING
        if self.unless is not None and self.unless(result):
            return key, MISSING
        if self.policy is not None:
            prepared = self.policy.store(self, result, full, kwargs, key)
            if isinstance(prepared, str):
                events.emit(self, key, events.REFUSED, 0.0, prepared)
                return key, MISSING
            key, result = prepared
        try:
            return key, entry.pack(versions, duration, result, self.fresh_for)
        except Exception as exc:
            backend.errors[self.alias] += 1
            self.errors += 1
            if not self._logged_pickle_error:
                self._logged_pickle_error = True
                logger.warning(
                    "cachedcall: %s returned a value that cannot be pickled (%s: %s); it is "
                    "returned uncached. Further failures are counted, not logged.",
                    self.name,
                    type(exc).__name__,
                    exc,
                )
            return key, MISSING

    def refused_size(self, size: int) -> None:
        """The backend refused a value of this function for its size: say so once."""
        if not self._logged_too_large:
            self._logged_too_large = True
            logger.warning(
                "cachedcall: %s returned a value of %d bytes that the cache alias %r refused "
                "for its size; it is returned uncached. Further refusals are counted "
                "(stats()['too_large']), not logged.",
                self.name,
                size,
                self.alias,
            )

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

    def report(self, key: str, failed: bool, stored: bool, started: float) -> None:
        elapsed = time.perf_counter() - started
        events.emit(self, key, events.ERROR if failed else events.MISS, elapsed)
        if stored:
            events.emit(self, key, events.STORED, elapsed)

    # -- explicit invalidation ----------------------------------------------------------------

    def invalidate(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        key = self.key_for(instance, args, kwargs)
        self.store.delete([key])
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
        fc._settings = None
        fc._logged_pickle_error = False
        fc._logged_too_large = False
        fc._logged_unreadable = False


#: memcached reads an expiry above 30 days as a Unix time; Django adds the clock to such a
#: timeout, and 10**10 + now overflows memcached's 32-bit expiry field (never stored).
MEMCACHED_MAX_TIMEOUT = 30 * 24 * 3600


def _backend_seconds(timeout: Any, alias: str) -> Any:
    """A timeout that means the same on every backend: whole seconds, rounded up (memcached
    and Redis count whole seconds, and Django truncates 0.5 to 0, "do not store"), and at
    most 30 days on memcached (longer is capped to what it can hold, relative)."""
    if timeout is None or timeout == 0:
        return timeout
    seconds = math.ceil(timeout)
    from django.core.cache.backends.memcached import BaseMemcachedCache

    if seconds > MEMCACHED_MAX_TIMEOUT and isinstance(backend.lookup(alias), BaseMemcachedCache):
        return MEMCACHED_MAX_TIMEOUT
    return seconds


def _default_prefix(func: Any, name: str) -> str:
    """``module.qualname``, made unique where that name is not: two lambdas of one module
    share ``<lambda>``, and the closures one factory makes share their qualname.

    A lambda adds where it is and what it does (line and a digest of its code); a closure
    adds the values it closes over, encoded like arguments, so ``power(2)`` and ``power(3)``
    get entries of their own. Stable across processes, unlike anything based on ``id()``.
    Values that cannot be encoded (a Counter, a lock) are left out.
    """
    code = getattr(func, "__code__", None)
    if code is None:
        return name
    parts = [name]
    if "<lambda>" in name:
        parts.append(f"{code.co_firstlineno}:{digest(code.co_code.hex() + repr(code.co_consts))}")
    cells = getattr(func, "__closure__", None) or ()
    if cells and "<locals>" in name:
        from cachedcall.keys import encode

        for cell in cells:
            try:
                parts.append(encode(cell.cell_contents))
            except Exception:  # an empty cell, or a value with no stable key
                parts.append("?")
    return "\x00".join(parts)


def is_async(func: Any) -> bool:
    """Whether calling ``func`` returns an awaitable: also through ``functools.partial`` and
    bound methods (``method_decorator`` hands a decorator a partial of a bound method, which
    ``inspect.iscoroutinefunction`` does not see through before Python 3.13), and for
    callables marked with asgiref's ``markcoroutinefunction``."""
    from asgiref.sync import iscoroutinefunction

    while True:
        if iscoroutinefunction(func):
            return True
        if isinstance(func, functools.partial):
            func = func.func
        elif inspect.ismethod(func):
            func = func.__func__
        else:
            return False


def _check_installed(owner: str) -> None:
    # Without the app no signal receiver is connected: writes bump nothing, and entries
    # would be served stale until they expire. Fail loudly instead.
    from django.apps import apps

    if apps.ready and not apps.is_installed("cachedcall"):
        raise ImproperlyConfigured(
            f"{owner}: 'cachedcall' is not in INSTALLED_APPS, so no write would make an entry "
            "stale. Add it to INSTALLED_APPS (of every process that writes to your models)."
        )


def _check_static(items: list[Any], owner: str) -> None:
    # Labels and models can only be checked once the app registry is ready; before that
    # (a decorator at the top of models.py) the first call checks them.
    from django.apps import apps

    if items and apps.ready:
        dependency_keys(items, conf.get().key_prefix, owner)
