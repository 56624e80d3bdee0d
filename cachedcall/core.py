"""The engine of a decorated call: everything one function needs, computed once.

A call flows one way: switch -> key -> counter keys -> one backend read -> hit, or
compute -> one backend write -> return.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import logging
import math
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
from cachedcall import locks
from cachedcall import refresh
from cachedcall import signing
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

# What a read found (decide): HIT and MISS as said; FAILED, the backend did not answer;
# CORRUPT, an entry that must be deleted; STALE, an old value that may be served while one
# caller recomputes; EARLY, a fresh value that this caller was drawn to refresh (XFetch).
HIT, MISS, FAILED, CORRUPT, STALE, EARLY = range(6)


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
        self.lock_option = options.get("lock")
        if self.lock_option is not None and not isinstance(self.lock_option, bool):
            raise InvalidOption(
                f"{owner}: lock must be True or False (default CACHEDCALL['LOCK']), not {self.lock_option!r}."
            )
        # memcached counts TTLs in whole seconds and reads anything below 1 as "expire now".
        self.lock_ttl = math.ceil(_seconds(options, "lock_ttl", 30, owner, minimum=1))
        self.lock_wait = _seconds(options, "lock_wait", 10, owner)
        self.stale = _seconds(options, "stale", 0, owner)
        self.soft = options.get("soft", False)
        if not isinstance(self.soft, bool):
            raise InvalidOption(f"{owner}: soft must be True or False, not {self.soft!r}.")
        self.early = options.get("early")
        if self.early is not None:
            if isinstance(self.early, bool) or not isinstance(self.early, (int, float)) or not self.early > 0:
                raise InvalidOption(
                    f"{owner}: early must be XFetch's beta, a number > 0 (1 is the usual choice; "
                    f"larger refreshes earlier), not {self.early!r}."
                )
            self.early = float(self.early)
        if self.timeout_given and self.timeout is None and (self.stale or self.early):
            raise InvalidOption(
                f"{owner}: stale= and early= need entries that expire; timeout=None never does. "
                "Give a timeout in seconds."
            )
        self.stales = 0
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
    ) -> tuple[Any, tuple[Any, ...] | None, int]:
        """Return ``(value, stamps or None, state)``.

        The value is the served value for ``HIT``, the envelope for ``STALE`` and ``EARLY``,
        otherwise ``MISSING``.
        """
        if found is None:
            self.errors += 1
            return MISSING, None, FAILED
        stamps = tuple(map(found.get, ckeys))
        stored = found.get(ekey)
        if stored is not None:
            try:
                envelope = signing.unseal(ekey, stored) if self.sign else stored
                if backend.current(envelope, stamps):
                    expires = envelope[5]
                    if expires is None:
                        return self.hit(envelope), stamps, HIT
                    now = refresh.clock()
                    if now < expires:
                        if self.early is None or not refresh.early(expires, envelope[3], self.early):
                            return self.hit(envelope), stamps, HIT
                        return envelope, stamps, EARLY
                    if now < expires + self.stale:
                        return envelope, stamps, STALE
                elif self.soft and None not in stamps and envelope[1][:2] == stamps[:2]:
                    # Only model versions moved (not reset() or invalidate_all(), and no
                    # counter was lost and re-seeded): the caller asked for soft invalidation.
                    return envelope, stamps, STALE
            except signing.BadSignature as exc:
                logger.error(
                    "cachedcall: %s: entry %r failed its signature check and was not unpickled "
                    "(%s); deleting it. Is something else writing to this cache?",
                    self.name,
                    ekey,
                    exc,
                )
                backend.bad_signatures[self.alias] += 1
                self.errors += 1
                return MISSING, stamps, CORRUPT
            except ValueError as exc:
                logger.warning("cachedcall: %s: deleting unreadable entry %r (%s)", self.name, ekey, exc)
                backend.errors[self.alias] += 1
                self.errors += 1
                return MISSING, stamps, CORRUPT
        self.misses += 1
        return MISSING, stamps, MISS

    def hit(self, envelope: tuple[Any, ...]) -> Any:
        value = backend.payload(envelope)
        self.hits += 1
        if self.serve is not None:
            value = self.serve(value, envelope)
        return value

    def peek(self, found: dict[str, Any], ekey: str, ckeys: list[str]) -> tuple[Any, Any, tuple[Any, ...]]:
        """What a lock waiter polls for: ``(value, envelope, stamps)`` of a current entry, or
        ``(MISSING, None, stamps)``; nothing counted, nothing deleted."""
        stamps = tuple(map(found.get, ckeys))
        stored = found.get(ekey)
        if stored is not None:
            try:
                envelope = signing.unseal(ekey, stored) if self.sign else stored
                if backend.current(envelope, stamps):
                    return self.hit(envelope), envelope, stamps
            except ValueError:
                pass  # left for decide() on the next call to report and delete
        return MISSING, None, stamps

    def old(self, envelope: tuple[Any, ...], ekey: str, started: float) -> Any:
        """An old value served while another caller refreshes it; ``MISSING`` if unreadable."""
        try:
            value = backend.payload(envelope)
        except ValueError:
            return MISSING
        self.stales += 1
        if self.serve is not None:
            value = self.serve(value, envelope)
        if events.active:
            events.emit(self, ekey, events.STALE, time.perf_counter() - started)
        return value

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
            return ekey, backend.pack(stamps, duration, result, self.fresh_for)
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
        value, stamps, state = self.decide(found, ekey, ckeys)
        if state == HIT:
            if events.active:
                events.emit(self, ekey, events.HIT, time.perf_counter() - started)
            return value
        miss = Miss(ekey, ckeys, stamps, state, started)
        if state >= STALE:
            return self.revalidate(wrapped, args, kwargs, miss, value)
        if self.flights is not None:
            flight, leads = self.flights.join(ekey, ekey, threading.get_ident())
            if not leads and flight.event is not None and flight.event.wait(flights.WAIT):
                shared = flight.value(ekey)
                if shared is not MISSING:
                    return self.shared(shared, flight, ekey, started)
            if leads:
                miss.flight = (ekey, flight)
        if self.lock and state != FAILED:
            value, envelope = self.acquire(miss)
            if value is not MISSING:
                self.land(miss.flight, ekey, envelope)
                if events.active:
                    events.emit(self, ekey, events.HIT, time.perf_counter() - started)
                return value
        return self.compute(wrapped, args, kwargs, miss)

    def shared(self, value: Any, flight: flights.Flight, ekey: str, started: float) -> Any:
        """A follower's value: the leader's, as if read from the cache."""
        if self.serve is not None:
            value = self.serve(value, flight.envelope)
        if events.active:
            events.emit(self, ekey, events.HIT, time.perf_counter() - started)
        return value

    def read(self, ekey: str, ckeys: list[str]) -> dict[str, Any] | None:
        if not self.split:
            return backend.read(backend.cache_for(self.alias), self.alias, [ekey, *ckeys], self.sign)
        counters = backend.read(backend.cache_for(self.counters_alias), self.counters_alias, ckeys, self.sign)
        if counters is None:
            return None
        entry = backend.read(backend.cache_for(self.alias), self.alias, [ekey], self.sign)
        return None if entry is None else {**counters, **entry}

    def revalidate(
        self, wrapped: Any, args: tuple[Any, ...], kwargs: dict[str, Any], miss: Miss, envelope: Any
    ) -> Any:
        """A stale or early entry: one caller recomputes, the others get the old value now."""
        if not self.claim(miss):
            old = self.old(envelope, miss.ekey, miss.started)
            if old is not MISSING:
                return old
            miss.lock = None
        elif miss.lock is not None:
            got = backend.add(
                backend.cache_for(self.alias), self.alias, miss.lock, locks.token(), self.lock_ttl
            )
            if got is False:  # another process is at it
                old = self.old(envelope, miss.ekey, miss.started)
                if old is not MISSING:
                    self.land(miss.flight)
                    return old
            if not got:
                miss.lock = None
        return self.compute(wrapped, args, kwargs, miss)

    def claim(self, miss: Miss) -> bool:
        """Take the in-process refresh of a stale or early entry (always, without flights)."""
        miss.lock = locks.key(miss.ekey) if miss.state == STALE else None
        if self.flights is None:
            return True
        flight = self.flights.claim(miss.ekey, threading.get_ident())
        if flight is None:
            return False
        miss.flight = (miss.ekey, flight)
        return True

    def acquire(self, miss: Miss) -> tuple[Any, Any]:
        """Take the entry's cross-process lock, or wait for its holder to store the value.

        Returns ``(value, envelope)`` when the entry appeared while waiting, else
        ``(MISSING, None)`` with ``miss.lock`` set when this caller holds the lock (it does
        not after an outage or a spent wait budget: then it computes unlocked).
        """
        cache, lkey = backend.cache_for(self.alias), locks.key(miss.ekey)
        got = backend.add(cache, self.alias, lkey, locks.token(), self.lock_ttl)
        if got is not False:
            miss.lock = lkey if got else None
            return MISSING, None
        for pause in locks.pauses(self.lock_wait):
            time.sleep(pause)
            found = self.read(miss.ekey, miss.ckeys)
            if found is None:
                return MISSING, None
            value, envelope, miss.stamps = self.peek(found, miss.ekey, miss.ckeys)
            if value is not MISSING:
                return value, envelope
            got = backend.add(cache, self.alias, lkey, locks.token(), self.lock_ttl)
            if got is not False:
                miss.lock = lkey if got else None
                if got:
                    # The holder may have stored and released between our read and our add.
                    found = self.read(miss.ekey, miss.ckeys)
                    if found is not None:
                        value, envelope, miss.stamps = self.peek(found, miss.ekey, miss.ckeys)
                        if value is not MISSING:
                            self.release(lkey)
                            miss.lock = None
                            return value, envelope
                return MISSING, None
        return MISSING, None

    def compute(self, wrapped: Any, args: tuple[Any, ...], kwargs: dict[str, Any], miss: Miss) -> Any:
        try:
            if miss.state == CORRUPT or _unusable(miss.stamps):
                miss.stamps = self.before_compute(
                    miss, backend.cache_for(self.alias), backend.cache_for(self.counters_alias)
                )
            began = time.perf_counter()
            result = wrapped(*args, **kwargs)
            duration = time.perf_counter() - began
            skey, envelope = self.envelope(miss.stamps, duration, result, (args, kwargs, miss.ekey))
        except BaseException as exc:
            self.land(miss.flight, error=exc)
            if miss.lock is not None:
                backend.delete(backend.cache_for(self.alias), self.alias, [miss.lock])
            raise
        self.land(miss.flight, skey, envelope)
        stored = envelope is not MISSING and backend.write(
            backend.cache_for(self.alias),
            self.alias,
            skey,
            self.sealed(skey, envelope),
            self.store_timeout,
            self.sign,
        )
        if miss.lock is not None:
            backend.delete(backend.cache_for(self.alias), self.alias, [miss.lock])
        if events.active:
            self.report(skey, miss.state == FAILED, stored, envelope, miss.started)
        return result

    def sealed(self, key: str, envelope: Any) -> Any:
        return signing.seal(key, envelope) if self.sign and envelope is not MISSING else envelope

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

    def before_compute(self, miss: Miss, cache: Any, counters: Any) -> tuple[Any, ...] | None:
        """The I/O a miss may need first: drop a corrupt entry, create missing counters.

        Returns the stamps to record; ``None`` when a counter could not be created (then
        nothing is stored, since the entry could not be stamped). The backends are passed
        in by the caller: async code looks them up on its own thread, since the connection
        of a worker thread would never be closed.
        """
        stamps = miss.stamps
        if miss.state == CORRUPT:
            backend.delete(cache, self.alias, [miss.ekey])
        if stamps is not None and _unusable(stamps):
            # A counter that is not an int was not written by us (a signed cache refuses to
            # decode it): drop it and re-seed it like a lost one.
            foreign = [
                k for k, v in zip(miss.ckeys, stamps, strict=True) if v is not None and type(v) is not int
            ]
            if foreign:
                backend.delete(counters, self.counters_alias, foreign)
                stamps = tuple(None if type(v) is not int else v for v in stamps)
            stamps = self.seed(miss.ckeys, stamps, counters)
        return stamps

    def seed(self, ckeys: list[str], stamps: tuple[Any, ...], counters: Any) -> tuple[Any, ...] | None:
        missing = [k for k, v in zip(ckeys, stamps, strict=True) if v is None]
        created = backend.seed(counters, self.counters_alias, missing, self.sign)
        if created is None:
            return None
        return tuple(created[k] if v is None else v for k, v in zip(ckeys, stamps, strict=True))

    def report(self, ekey: str, failed: bool, stored: bool, envelope: Any, started: float) -> None:
        elapsed = time.perf_counter() - started
        events.emit(self, ekey, events.ERROR if failed else events.MISS, elapsed)
        if stored:
            events.emit(self, ekey, events.STORED, elapsed)

    def counters(self, ckeys: list[str], cache: Any) -> tuple[tuple[Any, ...] | None, int]:
        found = backend.read(cache, self.counters_alias, ckeys, self.sign)
        return (None, FAILED) if found is None else (tuple(map(found.get, ckeys)), MISS)

    def refresh(self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not switch.is_enabled():
            return wrapped(*args, **kwargs)
        plan = self.plan(instance, args, kwargs)
        if plan is None:
            return wrapped(*args, **kwargs)
        ekey, ckeys = plan
        started = time.perf_counter()
        stamps, state = self.counters(ckeys, backend.cache_for(self.counters_alias))
        return self.compute(wrapped, args, kwargs, Miss(ekey, ckeys, stamps, state, started))

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
        found = await self.aread(ekey, ckeys)
        value, stamps, state = self.decide(found, ekey, ckeys)
        if state == HIT:
            if events.active:
                events.emit(self, ekey, events.HIT, time.perf_counter() - started)
            return value
        miss = Miss(ekey, ckeys, stamps, state, started)
        if state >= STALE:
            return await self.arevalidate(wrapped, args, kwargs, miss, value)
        if self.flights is not None:
            slot = (id(asyncio.get_running_loop()), ekey)
            flight, leads = self.flights.join(ekey, slot, asyncio.current_task())
            if not leads and await flights.wait_async(flight):
                shared = flight.value(ekey)
                if shared is not MISSING:
                    return self.shared(shared, flight, ekey, started)
            if leads:
                miss.flight = (slot, flight)
        if self.lock and state != FAILED:
            value, envelope = await self.aacquire(miss)
            if value is not MISSING:
                self.land(miss.flight, ekey, envelope)
                if events.active:
                    events.emit(self, ekey, events.HIT, time.perf_counter() - started)
                return value
        return await self.acompute(wrapped, args, kwargs, miss)

    async def aread(self, ekey: str, ckeys: list[str]) -> dict[str, Any] | None:
        if self.split:
            return await sync_to_async(self.read)(ekey, ckeys)
        return await backend.aread(backend.lookup(self.alias), self.alias, [ekey, *ckeys], self.sign)

    async def arevalidate(
        self, wrapped: Any, args: tuple[Any, ...], kwargs: dict[str, Any], miss: Miss, envelope: Any
    ) -> Any:
        """The async form of :meth:`revalidate` (in-process claims are per thread there, and
        per event loop here: the flight slot is the loop and key)."""
        claimed = True
        miss.lock = locks.key(miss.ekey) if miss.state == STALE else None
        if self.flights is not None:
            slot = (id(asyncio.get_running_loop()), miss.ekey)
            flight = self.flights.claim(slot, asyncio.current_task())
            claimed = flight is not None
            if flight is not None:
                miss.flight = (slot, flight)
        if not claimed:
            old = self.old(envelope, miss.ekey, miss.started)
            if old is not MISSING:
                return old
            miss.lock = None
        elif miss.lock is not None:
            got = await sync_to_async(backend.add)(
                backend.lookup(self.alias), self.alias, miss.lock, locks.token(), self.lock_ttl
            )
            if got is False:
                old = self.old(envelope, miss.ekey, miss.started)
                if old is not MISSING:
                    self.land(miss.flight)
                    return old
            if not got:
                miss.lock = None
        return await self.acompute(wrapped, args, kwargs, miss)

    async def aacquire(self, miss: Miss) -> tuple[Any, Any]:
        """The async form of :meth:`acquire`: the pauses do not block the event loop."""
        lkey = locks.key(miss.ekey)
        add = sync_to_async(backend.add)
        got = await add(backend.lookup(self.alias), self.alias, lkey, locks.token(), self.lock_ttl)
        if got is not False:
            miss.lock = lkey if got else None
            return MISSING, None
        for pause in locks.pauses(self.lock_wait):
            await asyncio.sleep(pause)
            found = await self.aread(miss.ekey, miss.ckeys)
            if found is None:
                return MISSING, None
            value, envelope, miss.stamps = self.peek(found, miss.ekey, miss.ckeys)
            if value is not MISSING:
                return value, envelope
            got = await add(backend.lookup(self.alias), self.alias, lkey, locks.token(), self.lock_ttl)
            if got is not False:
                miss.lock = lkey if got else None
                if got:
                    found = await self.aread(miss.ekey, miss.ckeys)
                    if found is not None:
                        value, envelope, miss.stamps = self.peek(found, miss.ekey, miss.ckeys)
                        if value is not MISSING:
                            await sync_to_async(backend.delete)(
                                backend.lookup(self.alias), self.alias, [lkey]
                            )
                            miss.lock = None
                            return value, envelope
                return MISSING, None
        return MISSING, None

    async def acompute(self, wrapped: Any, args: tuple[Any, ...], kwargs: dict[str, Any], miss: Miss) -> Any:
        try:
            if miss.state == CORRUPT or _unusable(miss.stamps):
                miss.stamps = await sync_to_async(self.before_compute)(
                    miss, backend.lookup(self.alias), backend.lookup(self.counters_alias)
                )
            began = time.perf_counter()
            result = await wrapped(*args, **kwargs)
            duration = time.perf_counter() - began
            skey, envelope = self.envelope(miss.stamps, duration, result, (args, kwargs, miss.ekey))
        except BaseException as exc:
            # Also a cancelled leader: its followers are released (and compute themselves),
            # and its lock is deleted in a worker thread, since a cancelled task cannot
            # safely await anything more.
            self.land(miss.flight, error=None if isinstance(exc, asyncio.CancelledError) else exc)
            if miss.lock is not None:
                asyncio.get_running_loop().run_in_executor(None, self.release, miss.lock, True)
            raise
        self.land(miss.flight, skey, envelope)
        stored = envelope is not MISSING and await backend.awrite(
            backend.lookup(self.alias),
            self.alias,
            skey,
            self.sealed(skey, envelope),
            self.store_timeout,
            self.sign,
        )
        if miss.lock is not None:
            await sync_to_async(backend.delete)(backend.lookup(self.alias), self.alias, [miss.lock])
        if events.active:
            self.report(skey, miss.state == FAILED, stored, envelope, miss.started)
        return result

    def release(self, lock: str, detached: bool = False) -> None:
        cache = backend.cache_for(self.alias)
        backend.delete(cache, self.alias, [lock])
        if detached:
            cache.close()  # an executor thread no request_finished will ever clean up

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
        stamps, state = await sync_to_async(self.counters)(ckeys, backend.lookup(self.counters_alias))
        return await self.acompute(wrapped, args, kwargs, Miss(ekey, ckeys, stamps, state, started))

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


def _unusable(stamps: tuple[Any, ...] | None) -> bool:
    """Whether some counter must be (re)created before an entry can be stamped."""
    if stamps is None:
        return False
    return any(type(value) is not int for value in stamps)


class Miss:
    """What a call that did not hit carries from its read to its computation."""

    __slots__ = ("ckeys", "ekey", "flight", "lock", "stamps", "started", "state")

    def __init__(
        self, ekey: str, ckeys: list[str], stamps: tuple[Any, ...] | None, state: int, started: float
    ) -> None:
        self.ekey = ekey
        self.ckeys = ckeys
        self.stamps = stamps
        self.state = state
        self.started = started
        #: ``(slot, flight)`` when this caller leads an in-process flight.
        self.flight: tuple[Any, flights.Flight] | None = None
        #: The lock key this caller holds (and deletes when done), if any.
        self.lock: str | None = None


def _seconds(options: dict[str, Any], name: str, default: float, owner: str, minimum: float = 0) -> float:
    value = options.get(name, default)
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
        raise InvalidOption(f"{owner}: {name} must be a number of seconds >= {minimum}, not {value!r}.")
    return value


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
