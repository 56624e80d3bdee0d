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

Counters (version counters, totals) have their own operations: :mod:`cachedcall.counters`.

Process state: ``_readers``/``_writers`` (the fast path chosen per backend class) and
``_stores`` (one Store per alias, dropped when ``CACHES`` changes); :func:`forget` resets
them and the health counts.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Awaitable
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any

from django.core.cache.backends.base import BaseCache
from django.core.signals import setting_changed

from cachedcall import aliases
from cachedcall import counters
from cachedcall import fastpaths
from cachedcall import health
from cachedcall.aliases import cache_for
from cachedcall.aliases import lookup
from cachedcall.entry import MISSING

__all__: list[str] = []

logger = logging.getLogger("cachedcall")

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


def _caches_changed(*, setting: str, **kwargs: object) -> None:
    if setting == "CACHES":
        _stores.clear()


setting_changed.connect(_caches_changed, dispatch_uid="cachedcall.backend.caches_changed")


# --- operations ---------------------------------------------------------------------------------


def reader(cache: BaseCache, raw: bool = False) -> Any:
    """The fast reader chosen for ``cache``'s class (memoized), or ``None`` for Django's."""
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
        fast = _readers.get((type(cache), raw), MISSING)  # reader(), inline: the hit path
        if fast is MISSING:
            fast = reader(cache, raw)
        found = cache.get_many(keys) if fast is None else fast(cache, keys)
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
    if fastpaths.in_memory(reader(cache)):
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


def write_many(cache: BaseCache, alias: str, items: list[tuple[str, Any]], timeout: Any) -> dict[str, Any]:
    """Store several entries in one ``set_many``; return what :func:`write` would per key.

    A key the backend reports as not stored, or a batch it refused whole (memcached raises
    for one value over its item size), is written again on its own, which tells a size
    refusal from an outage per key.
    """
    try:
        failed = cache.set_many(dict(items), timeout)
    except Exception:
        return {key: write(cache, alias, key, value, timeout) for key, value in items}
    result: dict[str, Any] = dict.fromkeys((key for key, _ in items), True)
    if failed:
        values = dict(items)
        for key in failed:
            result[key] = write(cache, alias, key, values[key], timeout)
    if health.anything_down():
        health.succeeded(alias)
    return result


async def awrite(
    cache: BaseCache, alias: str, key: str, envelope: Any, timeout: Any, raw: bool = False
) -> Any:
    """The async form of :func:`write` (Django's ``aset`` is this same thread hop)."""
    if fastpaths.in_memory(reader(cache)):
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


# --- one alias --------------------------------------------------------------------------------

_OPERATIONS: dict[str, Any] = {
    "read": read,
    "write": write,
    "write_many": write_many,
    "delete": delete,
    "add": add,
    "seed": counters.seed,
}
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
        return counters.incr(cache_for(self.alias), self.alias, key)

    def run(self, operation: str, *args: Any) -> Any:
        return _OPERATIONS[operation](cache_for(self.alias), self.alias, *args)

    async def arun(self, operation: str, *args: Any) -> Any:
        # The backend is looked up here, in the caller's context, and handed to the worker
        # thread: a backend looked up inside a worker thread would never be closed.
        cache = lookup(self.alias)
        if fastpaths.in_memory(reader(cache)):
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
    counters.forget()
    _stores.clear()
    aliases.forget()
