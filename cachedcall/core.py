"""The engine of a decorated call: everything one function needs, computed once.

A call flows one way: switch -> key -> counter keys -> one backend read -> hit, or
compute -> one backend write -> return.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache.backends.base import DEFAULT_TIMEOUT

from cachedcall import backend
from cachedcall import bumps
from cachedcall import conf
from cachedcall import events
from cachedcall import flights
from cachedcall import switch
from cachedcall.backend import MISSING
from cachedcall.exceptions import InvalidOption
from cachedcall.keys import Binder
from cachedcall.keys import digest
from cachedcall.keys import encode_call
from cachedcall.keys import encode_material
from cachedcall.keys import safe_name
from cachedcall.versions import dependency_keys

__all__: list[str] = []

logger = logging.getLogger("cachedcall")
registry: list[Core] = []
KEY_MEMO_SIZE = 4096


class Core:
    """Everything one decorated function needs per call, computed once."""

    def __init__(self, wrapped: Any, options: dict[str, Any], binding: str) -> None:
        func = getattr(wrapped, "__func__", wrapped)
        self.name = f"{func.__module__}.{func.__qualname__}"
        owner = f"cached(...) on {self.name}"
        self.owner = owner
        self.binds_instance = binding in ("function", "classmethod", "instancemethod")
        self.is_async = inspect.iscoroutinefunction(func)
        self.timeout_given = "timeout" in options
        self.timeout = (
            conf.check_timeout(
                options["timeout"], f"cached(timeout={options['timeout']!r}) on {self.name}", InvalidOption
            )
            if self.timeout_given
            else None
        )
        self.cache_option = _alias_option(options.get("cache"), owner)
        key = options.get("key")
        self.key_fn: Callable[..., Any] | None = None
        selected = None
        if callable(key):
            self.key_fn = key
        elif key is not None:
            if (
                isinstance(key, (str, bytes))
                or not isinstance(key, Sequence)
                or not all(isinstance(k, str) for k in key)
            ):
                raise InvalidOption(
                    f"{owner}: key must be a callable receiving the call's arguments or a list of "
                    f"parameter names, not {key!r}."
                )
            selected = tuple(key)
        self.binder = Binder(func, selected, self.name)
        self.names = self.binder.parameter_names()
        prefix = options.get("prefix", self.name)
        if not isinstance(prefix, str) or not prefix:
            raise InvalidOption(f"{owner}: prefix must be a non-empty string, not {prefix!r}.")
        version = options.get("version", 1)
        if isinstance(version, bool) or not isinstance(version, (int, str)):
            raise InvalidOption(f"{owner}: version must be an int or a string, not {version!r}.")
        self.fn_id = digest(f"{prefix}\x00{version}")[:12]
        self.readable = safe_name(func.__name__)
        self.unless = options.get("unless")
        if self.unless is not None and not callable(self.unless):
            raise InvalidOption(
                f"{owner}: unless must be a callable receiving the result, not {self.unless!r}."
            )
        depends = options.get("depends_on")
        self.depends_fn: Callable[..., Any] | None = None
        self.depends_static: list[Any] = []
        if callable(depends) and not isinstance(depends, type):
            self.depends_fn = depends
        elif depends is not None:
            if isinstance(depends, (str, bytes)) or not isinstance(depends, (list, tuple, set, frozenset)):
                raise InvalidOption(
                    f"{owner}: depends_on must be a list of models, instances and where(...) scopes, "
                    f"or a callable receiving the call's arguments and returning one; not {depends!r}."
                )
            self.depends_static = list(depends)
            _check_static(self.depends_static, owner)
        # Hooks a subclass sets (cached_view); None keeps the plain path free of calls.
        self.bypass: Callable[[tuple[Any, ...], dict[str, Any]], str | None] | None = None
        self.prepare: Callable[[Any, tuple[Any, ...], dict[str, Any], str], tuple[str, Any] | str] | None = (
            None
        )
        self.serve: Callable[[Any, Any], Any] | None = None
        single_flight = options.get("single_flight", True)
        if not isinstance(single_flight, bool):
            raise InvalidOption(f"{owner}: single_flight must be True or False, not {single_flight!r}.")
        self.flights = flights.Flights() if single_flight else None
        self.hits = self.misses = self.errors = 0
        self._conf: conf.Settings | None = None
        self._logged_pickle_error = False
        registry.append(self)

    # -- per-settings state -------------------------------------------------------------------

    def setup(self) -> conf.Settings:
        settings = conf.get()
        if settings is self._conf:
            return settings
        self.alias = self.cache_option or settings.cache
        self.counters_alias = settings.versions_cache or settings.cache
        self.split = self.counters_alias != self.alias
        prefix = settings.key_prefix
        self.entry_prefix = f"{prefix}:{self.readable}:"
        self.gen_keys = [f"{prefix}:G", f"{prefix}:g:{self.fn_id}"]
        if self.timeout_given:
            self.store_timeout = self.timeout
        elif settings.timeout_set:
            self.store_timeout = settings.timeout
        else:
            self.store_timeout = DEFAULT_TIMEOUT
        self.static_keys = self.gen_keys + dependency_keys(self.depends_static, prefix, self.owner)
        self.key_memo: dict[tuple[Any, ...], str] = {}
        self._conf = settings
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
        else:
            if values is None:
                values = self.binder.bind(full, kwargs)
            # Calls whose arguments are all exact ints and strs (which never compare equal
            # to each other, unlike 1, 1.0 and True) reuse their key from a bounded memo.
            simple = True
            for value in values:
                kind = type(value)
                if kind is not int and kind is not str:
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
        return self.entry_prefix + digest(f"{self.fn_id}|{material}")

    def counter_keys(self, full: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
        if self.depends_fn is None:
            return self.static_keys
        items = self.depends_fn(*full, **kwargs)
        return self.static_keys + dependency_keys(items, self._conf.key_prefix, self.owner)  # type: ignore[union-attr]

    def key_for(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        self.setup()
        return self.entry_key(self.full_args(instance, args), kwargs)

    def plan(
        self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str, list[str]] | None:
        """Return ``(entry key, counter keys)``, or ``None`` when this call must bypass."""
        self.setup()
        full = self.full_args(instance, args)
        values = None
        if self.key_fn is None:
            try:
                values = self.binder.bind(full, kwargs)
            except TypeError:
                return None  # a wrong call: let the function raise its own TypeError
        if self.bypass is not None:
            reason = self.bypass(full, kwargs)
            if reason is not None:
                events.emit(self, None, events.REFUSED, 0.0, reason)
                return None
        ekey = self.entry_key(full, kwargs, values)
        ckeys = self.counter_keys(full, kwargs)
        if bumps.dirty and not bumps.retry_dirty(ckeys):
            events.emit(self, ekey, events.ERROR, 0.0)
            return None
        if getattr(bumps._local, "pending", None) and any(bumps.is_pending(k) for k in ckeys):
            events.emit(self, ekey, events.PENDING, 0.0)
            return None
        return ekey, ckeys

    # -- the read ---------------------------------------------------------------------------

    def decide(
        self, found: dict[str, Any] | None, ekey: str, ckeys: list[str]
    ) -> tuple[Any, tuple[Any, ...] | None, bool]:
        """Return ``(value or MISSING, stamps or None, entry is corrupt)``."""
        if found is None:
            self.errors += 1
            return MISSING, None, False
        stamps = tuple(map(found.get, ckeys))
        envelope = found.get(ekey)
        if envelope is not None:
            try:
                value = backend.unpack(envelope, stamps)
            except ValueError as exc:
                logger.warning("cachedcall: %s: deleting unreadable entry %r (%s)", self.name, ekey, exc)
                backend.errors[self.alias] += 1
                self.errors += 1
                return MISSING, stamps, True
            if value is not MISSING:
                self.hits += 1
                if self.serve is not None:
                    value = self.serve(value, envelope)
                return value, stamps, False
        self.misses += 1
        return MISSING, stamps, False

    def envelope(
        self, stamps: tuple[Any, ...] | None, duration: float, result: Any, call: tuple[Any, ...]
    ) -> tuple[str, Any]:
        """Return ``(key, envelope)`` to store for ``result``; envelope ``MISSING`` for none.

        :param call: ``(full args, kwargs, entry key)`` of the call.
        """
        full, kwargs, ekey = call
        if stamps is None or self.store_timeout == 0:
            return ekey, MISSING
        if self.unless is not None and self.unless(result):
            return ekey, MISSING
        if self.prepare is not None:
            prepared = self.prepare(result, full, kwargs, ekey)
            if isinstance(prepared, str):
                events.emit(self, ekey, events.REFUSED, 0.0, prepared)
                return ekey, MISSING
            ekey, result = prepared
        try:
            return ekey, backend.pack(stamps, duration, result)
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
            return ekey, MISSING

    # -- sync --------------------------------------------------------------------------------

    def call(self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        forced = switch._forced
        if forced is False or (forced is None and not conf.get().enabled):
            if events.active:
                events.emit(self, None, events.DISABLED, 0.0)
            return wrapped(*args, **kwargs)
        plan = self.plan(instance, args, kwargs)
        if plan is None:
            return wrapped(*args, **kwargs)
        ekey, ckeys = plan
        started = time.perf_counter()
        found = self.read(ekey, ckeys)
        value, stamps, corrupt = self.decide(found, ekey, ckeys)
        if value is not MISSING:
            if events.active:
                events.emit(self, ekey, events.HIT, time.perf_counter() - started)
            return value
        if self.flights is None:
            return self.compute(wrapped, args, kwargs, ekey, ckeys, stamps, corrupt, started, found is None)
        flight, leads = self.flights.join(ekey, ekey, threading.get_ident())
        if not leads and flight.event is not None and flight.event.wait(flights.WAIT):
            shared = flight.value(ekey)
            if shared is not MISSING:
                return self.shared(shared, flight, ekey, started)
        return self.compute(
            wrapped,
            args,
            kwargs,
            ekey,
            ckeys,
            stamps,
            corrupt,
            started,
            found is None,
            (ekey, flight) if leads else None,
        )

    def shared(self, value: Any, flight: flights.Flight, ekey: str, started: float) -> Any:
        """A follower's value: the leader's, as if read from the cache."""
        if self.serve is not None:
            value = self.serve(value, flight.envelope)
        if events.active:
            events.emit(self, ekey, events.HIT, time.perf_counter() - started)
        return value

    def read(self, ekey: str, ckeys: list[str]) -> dict[str, Any] | None:
        if not self.split:
            return backend.read(backend.cache_for(self.alias), self.alias, [ekey, *ckeys])
        counters = backend.read(backend.cache_for(self.counters_alias), self.counters_alias, ckeys)
        if counters is None:
            return None
        entry = backend.read(backend.cache_for(self.alias), self.alias, [ekey])
        return None if entry is None else {**counters, **entry}

    def compute(
        self,
        wrapped: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ekey: str,
        ckeys: list[str],
        stamps: tuple[Any, ...] | None,
        corrupt: bool,
        started: float,
        failed: bool,
        flight: tuple[Any, flights.Flight] | None = None,
    ) -> Any:
        try:
            if corrupt or (stamps is not None and None in stamps):
                stamps = self.before_compute(ekey, ckeys, stamps, corrupt)
            began = time.perf_counter()
            result = wrapped(*args, **kwargs)
            duration = time.perf_counter() - began
            skey, envelope = self.envelope(stamps, duration, result, (args, kwargs, ekey))
        except BaseException as exc:
            self.land(flight, error=exc)
            raise
        self.land(flight, skey, envelope)
        stored = envelope is not MISSING and backend.write(
            backend.cache_for(self.alias), self.alias, skey, envelope, self.store_timeout
        )
        if events.active:
            self.report(skey, failed, stored, envelope, started)
        return result

    def land(
        self,
        flight: tuple[Any, flights.Flight] | None,
        key: str | None = None,
        envelope: Any = MISSING,
        error: BaseException | None = None,
    ) -> None:
        """Release a leader's followers with its outcome; nothing to do without a flight."""
        if flight is not None and self.flights is not None:
            stored = None if envelope is MISSING else envelope
            self.flights.land(flight[0], flight[1], key, stored, error)

    def before_compute(
        self, ekey: str, ckeys: list[str], stamps: tuple[Any, ...] | None, corrupt: bool
    ) -> tuple[Any, ...] | None:
        """The I/O a miss may need first: drop a corrupt entry, create missing counters.

        Returns the stamps to record; ``None`` when a counter could not be created (then
        nothing is stored, since the entry could not be stamped).
        """
        if corrupt:
            backend.delete(backend.cache_for(self.alias), self.alias, [ekey])
        if stamps is not None and None in stamps:
            stamps = self.seed(ckeys, stamps)
        return stamps

    def seed(self, ckeys: list[str], stamps: tuple[Any, ...]) -> tuple[Any, ...] | None:
        missing = [k for k, v in zip(ckeys, stamps, strict=True) if v is None]
        created = backend.seed(backend.cache_for(self.counters_alias), self.counters_alias, missing)
        if created is None:
            return None
        return tuple(created[k] if v is None else v for k, v in zip(ckeys, stamps, strict=True))

    def report(self, ekey: str, failed: bool, stored: bool, envelope: Any, started: float) -> None:
        elapsed = time.perf_counter() - started
        events.emit(self, ekey, events.ERROR if failed else events.MISS, elapsed)
        if stored:
            events.emit(self, ekey, events.STORED, elapsed)

    def refresh(self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not switch.is_enabled():
            return wrapped(*args, **kwargs)
        plan = self.plan(instance, args, kwargs)
        if plan is None:
            return wrapped(*args, **kwargs)
        ekey, ckeys = plan
        started = time.perf_counter()
        counters = backend.read(backend.cache_for(self.counters_alias), self.counters_alias, ckeys)
        stamps = None if counters is None else tuple(map(counters.get, ckeys))
        return self.compute(wrapped, args, kwargs, ekey, ckeys, stamps, False, started, counters is None)

    # -- async -------------------------------------------------------------------------------

    async def acall(self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not switch.is_enabled():
            if events.active:
                events.emit(self, None, events.DISABLED, 0.0)
            return await wrapped(*args, **kwargs)
        plan = self.plan(instance, args, kwargs)
        if plan is None:
            return await wrapped(*args, **kwargs)
        ekey, ckeys = plan
        started = time.perf_counter()
        if self.split:
            found = await sync_to_async(self.read)(ekey, ckeys)
        else:
            found = await backend.aread(backend.lookup(self.alias), self.alias, [ekey, *ckeys])
        value, stamps, corrupt = self.decide(found, ekey, ckeys)
        if value is not MISSING:
            if events.active:
                events.emit(self, ekey, events.HIT, time.perf_counter() - started)
            return value
        if self.flights is None:
            return await self.acompute(
                wrapped, args, kwargs, ekey, ckeys, stamps, corrupt, started, found is None
            )
        slot = (id(asyncio.get_running_loop()), ekey)
        flight, leads = self.flights.join(ekey, slot, asyncio.current_task())
        if not leads and await flights.wait_async(flight):
            shared = flight.value(ekey)
            if shared is not MISSING:
                return self.shared(shared, flight, ekey, started)
        return await self.acompute(
            wrapped,
            args,
            kwargs,
            ekey,
            ckeys,
            stamps,
            corrupt,
            started,
            found is None,
            (slot, flight) if leads else None,
        )

    async def acompute(
        self,
        wrapped: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ekey: str,
        ckeys: list[str],
        stamps: tuple[Any, ...] | None,
        corrupt: bool,
        started: float,
        failed: bool,
        flight: tuple[Any, flights.Flight] | None = None,
    ) -> Any:
        try:
            if corrupt or (stamps is not None and None in stamps):
                stamps = await sync_to_async(self.before_compute)(ekey, ckeys, stamps, corrupt)
            began = time.perf_counter()
            result = await wrapped(*args, **kwargs)
            duration = time.perf_counter() - began
            skey, envelope = self.envelope(stamps, duration, result, (args, kwargs, ekey))
        except BaseException as exc:
            # Also a cancelled leader: its followers are released (and compute themselves).
            self.land(flight, error=None if isinstance(exc, asyncio.CancelledError) else exc)
            raise
        self.land(flight, skey, envelope)
        stored = envelope is not MISSING and await backend.awrite(
            backend.lookup(self.alias), self.alias, skey, envelope, self.store_timeout
        )
        if events.active:
            self.report(skey, failed, stored, envelope, started)
        return result

    async def arefresh(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if not switch.is_enabled():
            return await wrapped(*args, **kwargs)
        plan = self.plan(instance, args, kwargs)
        if plan is None:
            return await wrapped(*args, **kwargs)
        ekey, ckeys = plan
        started = time.perf_counter()
        counters = await backend.aread(backend.lookup(self.counters_alias), self.counters_alias, ckeys)
        stamps = None if counters is None else tuple(map(counters.get, ckeys))
        return await self.acompute(
            wrapped, args, kwargs, ekey, ckeys, stamps, False, started, counters is None
        )

    # -- explicit invalidation ---------------------------------------------------------------

    def invalidate(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ekey = self.key_for(instance, args, kwargs)
        backend.delete(backend.cache_for(self.alias), self.alias, [ekey])
        if events.active:
            events.emit(self, ekey, events.INVALIDATED, 0.0)

    def invalidate_all(self) -> None:
        self.setup()
        bumps.bump_now(self.gen_keys[1:])
        if events.active:
            events.emit(self, None, events.INVALIDATED, 0.0)


def _alias_option(value: Any, owner: str) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidOption(f"{owner}: cache must name an alias of settings.CACHES, not {value!r}.")
    return value


def _check_static(items: list[Any], owner: str) -> None:
    # Labels and models can only be checked once the app registry is ready; before that
    # (a decorator at the top of models.py) the first call checks them.
    from django.apps import apps

    if apps.ready:
        from cachedcall import conf as _conf

        dependency_keys(items, _conf.get().key_prefix, owner)
