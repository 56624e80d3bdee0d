"""The only module that talks to ``django.core.cache``: one :class:`Store` per alias.

Every operation here fails open: a backend error is counted and logged once per outage
window of an alias (:mod:`cachedcall.health`), and reported to the caller as "nothing
found" / "not done", never raised.

A :class:`Store` is one alias's operations. Sync code uses the backend of its own thread
(looked up once per thread, not through asgiref's slower ``caches[alias]`` every call);
async code looks the backend up in its own context and hands it to a worker thread for
the blocking call (Django's ``a*`` methods are that same hop, one key at a time), except
for backends that never block (LocMemCache), which run on the event loop.

Which backend object a thread uses for an alias is :mod:`cachedcall.aliases`'.

Process state: ``_readers``/``_writers``/``_incrementers`` (the fast path chosen per
backend class), ``_FOREIGN`` (the exception classes of a refused increment) and
``_stores`` (one Store per alias, dropped when ``CACHES`` changes); :func:`forget` resets
them and the health counts.
"""

from __future__ import annotations

import importlib
import logging
import pickle
import secrets
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any

from django.core.cache.backends.base import BaseCache
from django.core.signals import setting_changed

from cachedcall import aliases
from cachedcall import fastpaths
from cachedcall import health
from cachedcall.aliases import cache_for
from cachedcall.aliases import lookup
from cachedcall.entry import MISSING

__all__: list[str] = []

logger = logging.getLogger("cachedcall")

# A version counter starts at a random value below 2**62: an evicted counter is re-created
# with a value never used before, so it cannot make an old entry valid again, and there is
# room for 2**62 increments before memcached's 64-bit or Redis's signed counters wrap.
_SEED_BITS = 62

# Raised by pickle (and by Django backends unpickling) on bytes that are not a valid pickle
# of something importable: a corrupt or foreign entry, not an outage.
_DECODE_ERRORS = (
    pickle.UnpicklingError,
    AttributeError,
    ImportError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    ValueError,
    UnicodeDecodeError,
)

#: What :func:`write` returns for a value refused for its size.
TOO_LARGE: Any = type("TooLarge", (), {"__repr__": lambda self: "TOO_LARGE", "__slots__": ()})()
_readers: dict[tuple[type, bool], Any] = {}
_writers: dict[tuple[type, bool], Any] = {}
_incrementers: dict[type, Any] = {}
_FOREIGN: tuple[type[BaseException], ...] | None = None


def _caches_changed(*, setting: str, **kwargs: object) -> None:
    if setting == "CACHES":
        _stores.clear()


setting_changed.connect(_caches_changed, dispatch_uid="cachedcall.backend.caches_changed")


# --- operations ---------------------------------------------------------------------------------


def _reader(cache: BaseCache, raw: bool = False) -> Any:
    reader = _readers.get((type(cache), raw), MISSING)
    if reader is MISSING:
        reader = _readers[type(cache), raw] = fastpaths.reader_for(type(cache), raw)
    return reader


def read(cache: BaseCache, alias: str, keys: Sequence[str], raw: bool = False) -> dict[str, Any] | None:
    """Read ``keys`` in one round trip; ``None`` when the backend is failing.

    :param raw: never let the backend unpickle what it read (signed entries): values come
        back as the stored bytes or ints, anything else as :data:`fastpaths.REFUSED`.
    """
    try:
        reader = _readers.get((type(cache), raw), MISSING)  # _reader(), inline: the hit path
        if reader is MISSING:
            reader = _reader(cache, raw)
        found = cache.get_many(keys) if reader is None else reader(cache, keys)
    except _DECODE_ERRORS as exc:
        if raw:
            # Never fall back to Django's get() for a signed cache: it unpickles. What the
            # raw reader could not decode is not read at all (a miss, and re-seeded).
            health.failed(alias, "get_many (raw)", exc)
            return None
        return _read_one_by_one(cache, alias, keys, exc)
    except Exception as exc:
        health.failed(alias, "get_many", exc)
        return None
    if health.anything_down():
        health.succeeded(alias)
    return found


def _read_one_by_one(
    cache: BaseCache, alias: str, keys: Sequence[str], first: BaseException
) -> dict[str, Any] | None:
    # Something in the batch did not unpickle. Find it and hand it back as REFUSED, as a
    # raw read does: an entry is then reported by the function that read it (counted, logged
    # once per function, deleted and recomputed), a counter dropped and re-seeded.
    found: dict[str, Any] = {}
    for key in keys:
        try:
            value = cache.get(key, MISSING)
        except _DECODE_ERRORS:
            found[key] = fastpaths.REFUSED
            continue
        except Exception as exc:
            health.failed(alias, "get", exc)
            return None
        if value is not MISSING:
            found[key] = value
    return found


async def aread(
    cache: BaseCache, alias: str, keys: Sequence[str], raw: bool = False
) -> dict[str, Any] | None:
    """The async form of :func:`read`, still one round trip.

    Django's ``aget_many`` awaits ``aget`` once per key, which is a round trip per key on
    every backend Django ships; the one ``get_many`` of :func:`read` runs in a thread instead.
    """
    if fastpaths.in_memory(_reader(cache)):
        return read(cache, alias, keys, raw)  # locmem never blocks: no thread hop
    from asgiref.sync import sync_to_async

    return await sync_to_async(read)(cache, alias, keys, raw)


def write(cache: BaseCache, alias: str, key: str, envelope: Any, timeout: Any, raw: bool = False) -> Any:
    """Store one entry; return True when stored, False when the backend failed, and
    :data:`TOO_LARGE` when it refused the value for its size (memcached's item size).

    A refused size is not an outage: the alias answers, so it is counted apart
    (:data:`too_large`) and never opens an outage window.

    :param raw: ``envelope`` is signed bytes, to be stored as they are (not pickled).
    """
    try:
        writer = _writers.get((type(cache), raw), MISSING)
        if writer is MISSING:
            writer = _writers[type(cache), raw] = fastpaths.writer_for(type(cache), raw)
        if writer is None:
            cache.set(key, envelope, timeout)
        else:
            writer(cache, key, envelope, timeout)
    except Exception as exc:
        # memcached says "SERVER_ERROR object too large for cache" (pymemcache raises it);
        # pylibmc raises its TooBig, with no message (named, so as not to import pylibmc).
        if "too large" in str(exc).lower() or type(exc).__name__ == "TooBig":
            health.count(health.too_large, alias)
            return TOO_LARGE
        health.failed(alias, "set", exc)
        return False
    return True


async def awrite(
    cache: BaseCache, alias: str, key: str, envelope: Any, timeout: Any, raw: bool = False
) -> Any:
    """The async form of :func:`write` (Django's ``aset`` is this same thread hop)."""
    if fastpaths.in_memory(_reader(cache)):
        return write(cache, alias, key, envelope, timeout, raw)
    from asgiref.sync import sync_to_async

    return await sync_to_async(write)(cache, alias, key, envelope, timeout, raw)


def delete(cache: BaseCache, alias: str, keys: Iterable[str]) -> bool:
    """Delete ``keys``; return whether the backend answered."""
    try:
        cache.delete_many(list(keys))
    except Exception as exc:
        health.failed(alias, "delete_many", exc)
        return False
    return True


def add(cache: BaseCache, alias: str, key: str, value: Any, timeout: Any) -> bool | None:
    """``add``: True when stored, False when the key exists, None when the backend failed."""
    try:
        return bool(cache.add(key, value, timeout))
    except Exception as exc:
        health.failed(alias, "add", exc)
        return None


def seed(cache: BaseCache, alias: str, keys: Sequence[str], raw: bool = False) -> dict[str, int] | None:
    """Create missing counters with fresh random values and return the values now current.

    Returns ``None`` when a counter could not be created or read back (outage, or evicted
    at once): the caller must then not store, since it cannot stamp its entry.
    """
    values: dict[str, int] = {}
    raced: list[str] = []
    try:
        for key in keys:
            value = secrets.randbits(_SEED_BITS) + 1
            if cache.add(key, value, None):
                values[key] = value
            else:
                raced.append(key)
        if raced:
            reader = _reader(cache, raw)
            got = cache.get_many(raced) if reader is None else reader(cache, raced)
            if len(got) != len(raced):
                # add() said the counter exists, get() says it does not: the client is
                # answering defaults instead of raising (a node in pymemcache's retry window).
                raise ConnectionError("counter neither added nor readable")
            if any(type(value) is not int for value in got.values()):
                # Created meanwhile, and not a counter of ours (planted, or foreign: a raw read
                # hands it back undecoded): nothing can be stamped with it, and a signed entry
                # stamped with REFUSED would not even pickle. The next read drops and re-seeds it.
                return None
            values.update(got)
    except Exception as exc:
        health.failed(alias, "add", exc)
        return None
    return values


def _incrementer(cache: BaseCache) -> Any:
    incrementer = _incrementers.get(type(cache), MISSING)
    if incrementer is MISSING:
        incrementer = _incrementers[type(cache)] = fastpaths.incrementer_for(type(cache))
    return incrementer


def _foreign_value_errors() -> tuple[type[BaseException], ...]:
    """What a backend's ``incr`` raises when the server answered that the stored value is
    no integer (planted, or written by someone else): public exception classes of each
    client library that is installed; never what a lost connection raises."""
    global _FOREIGN
    if _FOREIGN is None:
        found: list[type[BaseException]] = [TypeError]  # LocMemCache: bytes + 1
        for module, name in (
            ("pymemcache.exceptions", "MemcacheClientError"),  # "non-numeric value"
            ("redis.exceptions", "ResponseError"),  # "value is not an integer"
            ("pylibmc", "ClientError"),
        ):
            try:
                found.append(getattr(importlib.import_module(module), name))
            except (ImportError, AttributeError):
                pass
        _FOREIGN = tuple(found)
    return _FOREIGN


def incr(cache: BaseCache, alias: str, key: str) -> bool:
    """Advance a version counter atomically, creating it if it is missing; return success.

    ``incr`` is atomic on every backend; a missing counter is created with ``add`` and a
    fresh random value, and if another process created it first we ``incr`` that one. A
    value there that is no integer (planted, or someone else's) cannot be advanced: it is
    deleted and re-seeded like a missing one, which is a bump too (a new random value).
    """
    return _advance(cache, alias, key, 1, lambda: secrets.randbits(_SEED_BITS) + 1, "incr")


def add_to(cache: BaseCache, alias: str, key: str, amount: int, operation: str = "incr") -> bool:
    """Add ``amount`` to the counter ``key``, creating it at ``amount`` (a total, not a
    version: no random seed); return success. A value there that is no integer is replaced.
    A failure is counted against ``alias`` as ``operation``."""
    return _advance(cache, alias, key, amount, lambda: amount, operation)


def _advance(
    cache: BaseCache, alias: str, key: str, amount: int, created: Callable[[], int], operation: str
) -> bool:
    try:
        incrementer = _incrementer(cache)
        for _ in range(3):
            try:
                value = cache.incr(key, amount) if incrementer is None else incrementer(cache, key, amount)
            except ValueError:
                pass  # missing (every Django backend says so this way)
            except _foreign_value_errors():
                cache.delete(key)
            else:
                # pymemcache's HashClient answers False instead of raising while it retries
                # a failing node, django-redis ignoring errors None: that is not an increment.
                if type(value) is not int:
                    raise ConnectionError(f"incr answered {value!r}")
                return True
            if cache.add(key, created(), None):
                return True
        raise ConnectionError(f"counter {key!r} kept disappearing")
    except Exception as exc:
        health.failed(alias, operation, exc)
        return False


# --- one alias --------------------------------------------------------------------------------

_OPERATIONS: dict[str, Any] = {"read": read, "write": write, "delete": delete, "add": add, "seed": seed}
_stores: dict[str, Store] = {}


class Store:
    """One cache alias's operations: fail open, count, and hop off the event loop.

    ``run("read", keys)`` and ``await arun("read", keys)`` run the module's operation of
    that name against this alias's backend, as the call protocol's drivers do.
    """

    __slots__ = ("alias",)

    def __init__(self, alias: str) -> None:
        self.alias = alias

    def __repr__(self) -> str:
        return f"<Store {self.alias!r}>"

    def cache(self) -> BaseCache:
        """This thread's backend."""
        return cache_for(self.alias)

    def read(self, keys: Sequence[str], raw: bool = False) -> dict[str, Any] | None:
        return read(cache_for(self.alias), self.alias, keys, raw)

    def aread(self, keys: Sequence[str], raw: bool = False) -> Awaitable[dict[str, Any] | None]:
        # Not a coroutine function itself: the caller awaits aread()'s own coroutine, one
        # frame less on the async hit path.
        return aread(lookup(self.alias), self.alias, keys, raw)

    def write(self, key: str, value: Any, timeout: Any, raw: bool = False) -> Any:
        return write(cache_for(self.alias), self.alias, key, value, timeout, raw)

    def delete(self, keys: Iterable[str]) -> bool:
        return delete(cache_for(self.alias), self.alias, keys)

    def incr(self, key: str) -> bool:
        return incr(cache_for(self.alias), self.alias, key)

    def run(self, operation: str, *args: Any) -> Any:
        return _OPERATIONS[operation](cache_for(self.alias), self.alias, *args)

    async def arun(self, operation: str, *args: Any) -> Any:
        # The backend is looked up here, in the caller's context, and handed to the worker
        # thread: a backend looked up inside a worker thread would never be closed.
        cache = lookup(self.alias)
        if fastpaths.in_memory(_reader(cache)):
            return _OPERATIONS[operation](cache, self.alias, *args)  # never blocks: no hop
        from asgiref.sync import sync_to_async

        return await sync_to_async(_OPERATIONS[operation])(cache, self.alias, *args)

    def release_detached(self, keys: Iterable[str]) -> None:
        """Delete ``keys`` from a thread that no ``request_finished`` will clean up (an
        executor thread finishing a cancelled task's work), closing its connection after."""
        cache = cache_for(self.alias)
        delete(cache, self.alias, keys)
        cache.close()


def store(alias: str) -> Store:
    """The :class:`Store` of ``alias``."""
    found = _stores.get(alias)
    if found is None:
        found = _stores[alias] = Store(alias)
    return found


def forget() -> None:
    """Reset this module's process state and the threads' backends (:mod:`cachedcall.aliases`):
    counts, outage windows, chosen fast paths."""
    health.forget()
    _readers.clear()
    _writers.clear()
    _incrementers.clear()
    _stores.clear()
    aliases.forget()
