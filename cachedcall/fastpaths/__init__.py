"""Faster ``get_many``/``set`` for Django's LocMemCache, PyMemcacheCache, PyLibMCCache and
RedisCache, same results, behind gates on the private members they use; the raw reads of
signed caches on those and on django-redis.

Django validates every key character by character in Python, pymemcache's ``HashClient``
hashes every key with a pure-Python murmur3 even when there is one server, and Django's
RedisCache builds a new ``redis.Redis`` for every operation; for the several keys of one
cachedcall read (entry, generations, versions) that is most of a hit. Our keys are valid by
construction, so the fast paths skip that work: :mod:`.locmem`, :mod:`.pymemcache`,
:mod:`.pylibmc` and :mod:`.redis` hold them. django-redis's own ``get_many`` is one ``MGET``
on a client it keeps, with nothing to skip: it has no fast reader, only the raw paths of
:mod:`.django_redis`.

They use private members of Django, pymemcache and Django's Redis client. Each module lists
the members of each of its fast paths in a ``REQUIRES`` table, and the gates here check them
once, when :func:`reader_for` / :func:`writer_for` selects a fast path for a backend class
(``backend`` memoizes that choice per class, so the readers pay nothing per call). A fast
path whose members are missing is off, with one INFO line on logger ``cachedcall`` naming
the members and the installed versions, and the public API runs instead:

- plain reads and writes fall back to Django's own ``get_many`` / ``set`` (``None``);
- raw reads (signed caches, which must never unpickle what they read) cannot fall back to
  Django's ``get_many`` on memcached or Redis: it unpickles. For memcached they fall back
  to Django's ``get_many`` *under the guarded serde* when only the members of the fast read
  are gone; for Redis to ``mget`` through the client Django's own ``get_client`` returns
  when only the per-pool client members are gone (raw writes likewise to ``set`` through
  it: Django's ``set`` would pickle the signed bytes). When even that is out of reach
  (the guard's members, or ``RedisCache._cache`` / ``RedisCacheClient.get_client``), the
  raw reader and writer raise :class:`~django.core.exceptions.ImproperlyConfigured` at
  every use, saying why: ``backend`` counts that as a failing alias, logs it once, and
  calls run uncached. Nothing read is unpickled, and nothing is served unverified.
  PyLibMCCache is guarded like memcached (a client whose ``deserialize`` refuses pickles);
  django-redis is read and written raw through its ``get_client``; without their members
  the raw paths raise likewise.
- LocMemCache lives in this process, out of reach of whoever could plant an entry, so its
  raw reads are its plain reads; DummyCache stores nothing.
- Any other backend (the database, files, a class of a third party) unpickles in its
  ``get_many`` and has no raw read: its raw reader raises likewise (system check
  ``cachedcall.E003`` says so before that).

Verified against Django 5.2.19, pymemcache 4.0.0, pylibmc 1.6.3, redis 8.1.0 and
django-redis 7.0.0; ``tests/test_contracts.py`` fails on the upgrade that removes a gated
member.

Process state: ``_verdicts`` (the missing members found per fast path, memoized) and
``_specimens`` (one throwaway instance per class whose members exist only on instances);
:func:`forget` drops both. The modules list their own.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from cachedcall.fastpaths import locmem

__all__: list[str] = []

logger = logging.getLogger("cachedcall")

Reader = Callable[[Any, Sequence[str]], dict[str, Any]]
Writer = Callable[[Any, str, Any, Any], None]
#: One private member a fast path uses: the class that has it (or whose instances do), and its name.
Member = tuple[type, str]

#: What a raw read returns for a stored value it refused to decode (a pickle, under a key
#: of ours, in a signed cache): never unpickled, so never executed.
REFUSED: Any = type("Refused", (), {"__repr__": lambda self: "REFUSED", "__slots__": ()})()


def raw_value(value: bytes) -> Any:
    """A value as a raw Redis read returns it: an int where the bytes are one (a counter,
    stored as a Redis integer), else the bytes as stored."""
    try:
        return int(value)
    except ValueError:
        return value


_verdicts: dict[str, tuple[str, ...]] = {}
_specimens: dict[type, object] = {}
# Held while a verdict is reached, so that two threads selecting at once log it once.
_lock = threading.RLock()


def reader_for(cls: type, raw: bool = False) -> Reader | None:
    """A faster ``get_many`` for ``cls``, or ``None`` for Django's own.

    :param cls: the backend class.
    :param raw: the reader of a signed cache, which never unpickles: memcached and Redis
        values come back as stored bytes or ints (LocMemCache lives in this process, out of
        reach of whoever could plant an entry).
    """
    from django.core.cache.backends.dummy import DummyCache
    from django.core.cache.backends.locmem import LocMemCache
    from django.core.cache.backends.memcached import PyLibMCCache
    from django.core.cache.backends.memcached import PyMemcacheCache
    from django.core.cache.backends.redis import RedisCache

    if issubclass(cls, LocMemCache):
        stock = cls.get_many is LocMemCache.get_many and cls.get is LocMemCache.get
        if stock and _open(locmem, "locmem.read", "Django's own LocMemCache.get_many runs instead"):
            return locmem.read
        return None
    if issubclass(cls, PyMemcacheCache):
        from cachedcall.fastpaths import pymemcache

        if raw and not _open(pymemcache, "pymemcache.raw_guard", "signed reads fail (calls run uncached)"):
            return _Unavailable(pymemcache, "pymemcache.raw_guard", "read memcached's stored bytes")
        stock = cls.get_many is PyMemcacheCache.get_many
        instead = "Django's own PyMemcacheCache.get_many runs instead (guarded in signed reads)"
        fast = stock and _open(pymemcache, "pymemcache.read", instead)
        if raw:
            # A subclass that overrides get_many keeps it, under the guard.
            return pymemcache.raw_read if fast else pymemcache.guarded_read
        return pymemcache.read if fast else None
    if issubclass(cls, RedisCache):
        from cachedcall.fastpaths import redis

        if raw:
            path = _redis_raw(redis)
            if path == "redis.raw":
                return redis.raw_read
            if path == "redis.raw_via_get_client":
                return redis.raw_read_via_get_client
            return _Unavailable(redis, "redis.raw_via_get_client", "read Redis's stored bytes")
        stock = cls.get_many is RedisCache.get_many
        if stock and _open(redis, "redis.read", "Django's own RedisCache.get_many runs instead"):
            return redis.read
        return None
    if issubclass(cls, PyLibMCCache):
        from cachedcall.fastpaths import pylibmc

        if raw and not _open(pylibmc, "pylibmc.raw_guard", "signed reads fail (calls run uncached)"):
            return _Unavailable(pylibmc, "pylibmc.raw_guard", "read memcached's stored bytes")
        stock = cls.get_many is PyLibMCCache.get_many
        fast = stock and _open(pylibmc, "pylibmc.read", "Django's own PyLibMCCache.get_many runs instead")
        if raw:
            return pylibmc.raw_read if fast else pylibmc.guarded_read
        return pylibmc.read if fast else None
    if _is_django_redis(cls):
        if not raw:
            return None  # its get_many is one MGET on a kept client already
        from cachedcall.fastpaths import django_redis

        if _open(django_redis, "django_redis.raw", "signed reads and writes fail (calls run uncached)"):
            return django_redis.raw_read
        return _Unavailable(django_redis, "django_redis.raw", "read Redis's stored bytes")
    if raw and not issubclass(cls, DummyCache):
        return _Unsigned(cls)
    return None


def writer_for(cls: type, raw: bool = False) -> Writer | None:
    """A faster ``set`` for the stock LocMemCache and PyMemcacheCache, or ``None``.

    :param cls: the backend class.
    :param raw: the writer of signed bytes; Redis (Django's and django-redis) must store
        them unpickled (memcached stores bytes as they are anyway).
    """
    from django.core.cache.backends.locmem import LocMemCache
    from django.core.cache.backends.memcached import PyMemcacheCache
    from django.core.cache.backends.redis import RedisCache

    if issubclass(cls, LocMemCache):
        if cls.set is LocMemCache.set and _open(locmem, "locmem.write", "Django's own set runs instead"):
            return locmem.write
        return None
    if issubclass(cls, PyMemcacheCache):
        from cachedcall.fastpaths import pymemcache

        stock = cls.set is PyMemcacheCache.set
        if stock and _open(pymemcache, "pymemcache.write", "Django's own set runs instead"):
            return pymemcache.write
        return None
    if raw and issubclass(cls, RedisCache):
        from cachedcall.fastpaths import redis

        path = _redis_raw(redis)
        if path == "redis.raw":
            return redis.raw_write
        if path == "redis.raw_via_get_client":
            return redis.raw_write_via_get_client
        return _Unavailable(redis, "redis.raw_via_get_client", "store signed bytes in Redis")
    if raw and _is_django_redis(cls):
        from cachedcall.fastpaths import django_redis

        if _open(django_redis, "django_redis.raw", "signed reads and writes fail (calls run uncached)"):
            return django_redis.raw_write
        return _Unavailable(django_redis, "django_redis.raw", "store signed bytes in Redis")
    return None


def incrementer_for(cls: type) -> Callable[..., Any] | None:
    """An ``incr`` for ``cls`` that never unpickles, where Django's own would, or ``None``.

    Only django-redis needs one: its ``incr`` unpickles a value that ``INCRBY`` refuses.
    Without the members its raw path uses, its own ``incr`` runs (one INFO line).
    """
    if (
        not _is_django_redis(cls)
        or getattr(cls, "incr", None) is not sys.modules["django_redis.cache"].RedisCache.incr
    ):
        return None  # a subclass that overrides incr keeps it
    from cachedcall.fastpaths import django_redis

    if _open(django_redis, "django_redis.raw", "its own incr runs, which unpickles a foreign value"):
        return _django_redis_incr
    return None


def _django_redis_incr(cache: Any, key: str, delta: int = 1) -> Any:
    from cachedcall.fastpaths import django_redis

    if not django_redis.stores_like_default_client(type(cache.client)):
        return cache.incr(key, delta)  # a client class of its own: its own incr knows its layout
    return django_redis.raw_incr(cache, key, delta)


def _is_django_redis(cls: type) -> bool:
    # Without importing django-redis (an optional dependency): a backend class of it has
    # been imported, and its module with it.
    module = sys.modules.get("django_redis.cache")
    return module is not None and issubclass(cls, module.RedisCache)


def is_redis(cls: type) -> bool:
    """Whether ``cls`` is Django's RedisCache or django-redis's (or a subclass)."""
    from django.core.cache.backends.redis import RedisCache

    return issubclass(cls, RedisCache) or _is_django_redis(cls)


def in_process(cls: type) -> bool:
    """Whether ``cls`` keeps its values in this process (LocMemCache) or keeps none
    (DummyCache): nothing to gain from keeping them nearer."""
    from django.core.cache.backends.dummy import DummyCache
    from django.core.cache.backends.locmem import LocMemCache

    return issubclass(cls, (LocMemCache, DummyCache))


def in_memory(reader: Reader | None) -> bool:
    """Whether a reader never blocks on I/O (so async code may call it on the event loop)."""
    return reader is locmem.read


def _redis_raw(redis: ModuleType) -> str | None:
    # The first open one of the two raw Redis paths; reads and writes take the same one.
    if _open(redis, "redis.raw", "raw reads and writes go through RedisCacheClient.get_client"):
        return "redis.raw"
    if _open(redis, "redis.raw_via_get_client", "signed reads and writes fail (calls run uncached)"):
        return "redis.raw_via_get_client"
    return None


class _Unavailable:
    """The raw reader or writer of a signed cache whose bytes cannot be had unpickled: it
    raises at every use, rather than hand back what Django's public API unpickled."""

    def __init__(self, module: ModuleType, path: str, doing: str) -> None:
        # The gate's verdict, not a new look: the members may have come back since (a test).
        members = module.REQUIRES[path]
        lacking = _verdicts.get(path) or tuple(missing(members, module.SPECIMENS))
        self.message = (
            f"cachedcall: CACHEDCALL['SIGN'] needs {', '.join(lacking)} to {doing} without "
            f"unpickling them, and the installed {_versions(members, lacking)} has no such "
            "member; calls run uncached. Install the versions that cachedcall.fastpaths names "
            "as verified, or a cachedcall release that supports these."
        )

    def __call__(self, cache: Any, *args: Any) -> Any:
        raise ImproperlyConfigured(self.message)


class _Unsigned:
    """The raw reader of a backend that has none (its ``get_many`` unpickles): it raises at
    every use, rather than let a signed cache unpickle what it read."""

    def __init__(self, cls: type) -> None:
        self.message = (
            f"cachedcall: CACHEDCALL['SIGN'] is on, but {cls.__module__}.{cls.__qualname__} "
            "unpickles what it reads before cachedcall can check a signature; calls run "
            "uncached (system check cachedcall.E003)."
        )

    def __call__(self, cache: Any, *args: Any) -> Any:
        raise ImproperlyConfigured(self.message)


# --- the gates ------------------------------------------------------------------------------


def _open(module: ModuleType, path: str, instead: str) -> bool:
    """Whether every member the fast path ``path`` of ``module`` uses exists (memoized).

    The first time a path is found closed, one INFO line says what is missing and what runs
    instead.
    """
    with _lock:
        lacking = _verdicts.get(path)
        if lacking is None:
            members = module.REQUIRES[path]
            lacking = _verdicts[path] = tuple(missing(members, module.SPECIMENS))
            if lacking:
                logger.info(
                    "cachedcall: the %s fast path is off: the installed %s has no %s; %s.",
                    path,
                    _versions(members, lacking),
                    ", ".join(lacking),
                    instead,
                )
    return not lacking


def missing(members: Sequence[Member], specimens: Mapping[type, Callable[[], object]]) -> list[str]:
    """The dotted names of the ``members`` that do not exist, in table order.

    :param members: the table of one fast path.
    :param specimens: how to build a throwaway instance of a class whose member exists only
        on instances.
    """
    return [_name(member) for member in members if not present(*member, specimens)]


def present(owner: type, name: str, specimens: Mapping[type, Callable[[], object]]) -> bool:
    """Whether ``owner`` or its instances have the member ``name``.

    A class attribute (a method, a property, a slot) is found on the class; an attribute
    that ``__init__`` sets is looked for on one throwaway instance per class, built by
    ``specimens[owner]`` without I/O and kept.
    """
    if hasattr(owner, name):
        return True
    with _lock:
        specimen = _specimens.get(owner)
        if specimen is None and owner in specimens:
            try:
                specimen = _specimens[owner] = specimens[owner]()
            except Exception:
                # A constructor that changed so much that it cannot be called as before is
                # an upgrade the fast paths were not verified against either.
                logger.debug("cachedcall: could not build a %s to look for %s", owner, name, exc_info=True)
                return False
    return specimen is not None and hasattr(specimen, name)


def forget() -> None:
    """Drop the memoized gate verdicts and specimens (for tests that change a library), and
    the values the LocMemCache reader decoded."""
    with _lock:
        _verdicts.clear()
        _specimens.clear()
    locmem.forget()


def _name(member: Member) -> str:
    owner, name = member
    return f"{owner.__module__}.{owner.__qualname__}.{name}"


def _versions(members: Sequence[Member], lacking: Sequence[str]) -> str:
    # The libraries the lacking members belong to, each with its installed version.
    names = dict.fromkeys(m[0].__module__.partition(".")[0] for m in members if _name(m) in lacking)
    shown = []
    for name in names:
        version = getattr(sys.modules.get(name), "__version__", "(version unknown)")
        shown.append(f"{'Django' if name == 'django' else name} {version}")
    return ", ".join(shown)
