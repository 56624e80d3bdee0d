"""System checks: ``cachedcall.E001`` (unknown alias), ``E002`` (bad setting),
``E003`` (signing asked of a backend that unpickles before we can check),
``E004`` (process-local counters for entries in a shared backend), ``E005`` (version
counters in a backend whose ``incr`` is a read then a write, which loses bumps),
``W001`` (a memcached alias, pymemcache or pylibmc, without client timeouts), ``W002`` (a
client that answers "not found" for an error: pymemcache's retries, django-redis's
IGNORE_EXCEPTIONS), ``W003`` (version counters in a memcached pool, where a returning node
brings old ones back), ``W004`` (a Redis alias, Django's or django-redis, without socket
timeouts)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

__all__: list[str] = []

_MEMCACHED = "django.core.cache.backends.memcached.PyMemcacheCache"
_REDIS = "django.core.cache.backends.redis.RedisCache"
_DJANGO_REDIS = "django_redis.cache.RedisCache"
_PYLIBMC = "django.core.cache.backends.memcached.PyLibMCCache"
_PYLIBMC_TIMEOUTS = ("connect_timeout", "send_timeout", "receive_timeout")
# Backends whose data lives in one process: counters there are never seen by another.
_PROCESS_LOCAL = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)
# The backends whose stored bytes cachedcall reads itself (or that live in this process),
# subclasses included; django-redis only with a client class that stores as DefaultClient.
_SIGNABLE = (
    _MEMCACHED,
    _PYLIBMC,
    _REDIS,
    _DJANGO_REDIS,
    "django.core.cache.backends.locmem.LocMemCache",
)
# Backends whose incr is BaseCache's get() then set(): two processes bumping at once both
# read n and both write n + 1, and one bump is lost (subclasses included).
_NON_ATOMIC_INCR = (
    "django.core.cache.backends.db.DatabaseCache",
    "django.core.cache.backends.filebased.FileBasedCache",
)


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from cachedcall import conf
    from cachedcall.function import registry

    try:
        current = conf.get()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="cachedcall.E002")]
    caches = getattr(settings, "CACHES", {}) or {}
    used: dict[str, str] = {current.cache: "CACHEDCALL['CACHE']"}
    if current.versions_cache:
        used[current.versions_cache] = "CACHEDCALL['VERSIONS_CACHE']"
    for fc in list(registry):
        if fc.cache_option:
            used.setdefault(fc.cache_option, f"cached(cache=...) on {fc.name}")
    messages: list[checks.CheckMessage] = []
    pools = sorted(
        {current.counters_for(alias) for alias in used}
        & {
            a
            for a, c in caches.items()
            if c.get("BACKEND") == _MEMCACHED and len(_locations(c.get("LOCATION"))) > 1
        }
    )
    for pool in pools:
        messages.append(
            checks.Warning(
                f"cachedcall's version counters live in the memcached pool {pool!r}: "
                "a node that is frozen or cut off while a write bumps a counter comes back with "
                "the old counter, and entries made before the write become valid again.",
                hint="Put the counters in an alias whose keys do not move between servers: "
                "CACHEDCALL['VERSIONS_CACHE'] = '<a Redis alias>' (see 'Running in production').",
                id="cachedcall.W003",
            )
        )
    for alias in sorted({current.counters_for(alias) for alias in used}):
        backend = (caches.get(alias) or {}).get("BACKEND")
        if _is_a(backend, _NON_ATOMIC_INCR):
            messages.append(
                checks.Error(
                    f"cachedcall's version counters live in the alias {alias!r} ({backend}), whose "
                    "incr() is a get() then a set(), not atomic: two writes bumping a counter at "
                    "once advance it once, and entries that the lost bump should have made stale "
                    "are served.",
                    hint="Set CACHEDCALL['VERSIONS_CACHE'] to an alias of memcached or Redis (its "
                    "incr is atomic); entries may stay in this alias.",
                    id="cachedcall.E005",
                )
            )
    versions = caches.get(current.versions_cache or "") or {}
    if versions.get("BACKEND") in _PROCESS_LOCAL:
        shared = sorted(
            a for a in used if (caches.get(a) or {}).get("BACKEND") not in (*_PROCESS_LOCAL, None)
        )
        if shared:
            messages.append(
                checks.Error(
                    f"CACHEDCALL['VERSIONS_CACHE'] = {current.versions_cache!r} keeps the version "
                    f"counters in this process's memory, but entries live in the shared "
                    f"alias(es) {', '.join(map(repr, shared))}: a write in one process would never "
                    "make another process's entries stale.",
                    hint="Remove VERSIONS_CACHE (counters then live beside the entries of each alias) "
                    "or point it at a shared alias that keeps its keys, e.g. a Redis.",
                    id="cachedcall.E004",
                )
            )
    for alias, source in sorted(used.items()):
        config = caches.get(alias)
        if config is None:
            messages.append(
                checks.Error(
                    f"{source} names the cache alias {alias!r}, which is not in settings.CACHES.",
                    hint=f"Add {alias!r} to CACHES or name one of: {', '.join(sorted(caches)) or '(none)'}.",
                    id="cachedcall.E001",
                )
            )
            continue
        if current.sign:
            messages.extend(_unsignable(alias, config))
        messages.extend(_timeouts(alias, config))
    return messages


def _timeouts(alias: str, config: dict[str, Any]) -> list[checks.CheckMessage]:
    """W001 / W004: a client without timeouts blocks on a frozen server; W002: a client that
    answers "not found" for an error hides an outage. Each backend spells them its own way."""
    backend = config.get("BACKEND")
    options = config.get("OPTIONS") or {}
    messages: list[checks.CheckMessage] = []
    if _is_a(backend, (_REDIS,)):
        if not _set(options, "socket_timeout", "socket_connect_timeout"):
            messages.append(
                _no_redis_timeouts(alias, "{'socket_connect_timeout': 0.5, 'socket_timeout': 0.5}")
            )
    elif _is_a(backend, (_DJANGO_REDIS,)):
        # django-redis reads its own spelling, and ignores a 0 there; the connection pool's
        # own keyword arguments work too.
        pool = options.get("CONNECTION_POOL_KWARGS") or {}
        if not (
            (options.get("SOCKET_TIMEOUT") or pool.get("socket_timeout"))
            and (options.get("SOCKET_CONNECT_TIMEOUT") or pool.get("socket_connect_timeout"))
        ):
            messages.append(
                _no_redis_timeouts(alias, "{'SOCKET_CONNECT_TIMEOUT': 0.5, 'SOCKET_TIMEOUT': 0.5}")
            )
        if options.get("IGNORE_EXCEPTIONS", getattr(settings, "DJANGO_REDIS_IGNORE_EXCEPTIONS", False)):
            messages.append(
                checks.Warning(
                    f"The django-redis alias {alias!r} ignores exceptions (IGNORE_EXCEPTIONS): a "
                    "failing Redis answers every read with 'not found' instead of an error, so "
                    "outages go unseen and unlogged by cachedcall.",
                    hint="Set OPTIONS['IGNORE_EXCEPTIONS'] = False (and leave "
                    "DJANGO_REDIS_IGNORE_EXCEPTIONS unset) for the aliases cachedcall uses; "
                    "cachedcall already fails open.",
                    id="cachedcall.W002",
                )
            )
    elif _is_a(backend, (_MEMCACHED,)):
        if not _set(options, "timeout", "connect_timeout"):
            messages.append(
                checks.Warning(
                    f"The memcached alias {alias!r} used by cachedcall sets no client timeouts: "
                    "a frozen server would block every request.",
                    hint="Set OPTIONS = {'timeout': 0.5, 'connect_timeout': 0.5, ...}; see the "
                    "README's recommended options.",
                    id="cachedcall.W001",
                )
            )
        if options.get("retry_attempts", 2) != 0:
            messages.append(
                checks.Warning(
                    f"The memcached alias {alias!r} lets pymemcache retry a failing server "
                    "(retry_attempts > 0): meanwhile it answers every request with 'not found' "
                    "instead of an error, so outages go unseen and unlogged.",
                    hint="Set OPTIONS['retry_attempts'] = 0 and a short OPTIONS['dead_timeout'].",
                    id="cachedcall.W002",
                )
            )
    elif _is_a(backend, (_PYLIBMC,)):
        # libmemcached behaviors, in OPTIONS['behaviors']: pylibmc.Client refuses them as
        # OPTIONS keys of their own. (pylibmc raises for a failing server: no W002.)
        behaviors = options.get("behaviors") or {}
        if not _set(behaviors, *_PYLIBMC_TIMEOUTS):
            misplaced = sorted(set(_PYLIBMC_TIMEOUTS) & set(options))
            where = (
                f" ({', '.join(misplaced)} must be in OPTIONS['behaviors'], not in OPTIONS)"
                if misplaced
                else ""
            )
            messages.append(
                checks.Warning(
                    f"The pylibmc alias {alias!r} used by cachedcall sets no client timeouts"
                    f"{where}: a frozen server would block every request.",
                    hint="Set OPTIONS = {'behaviors': {'connect_timeout': 500, 'send_timeout': "
                    "500_000, 'receive_timeout': 500_000}} (milliseconds to connect, microseconds "
                    "to send and receive); see the README's recommended options.",
                    id="cachedcall.W001",
                )
            )
    return messages


def _set(options: dict[str, Any], *names: str) -> bool:
    """Whether every option of ``names`` is given a value (``None`` sets no timeout)."""
    return all(options.get(name) is not None for name in names)


def _no_redis_timeouts(alias: str, example: str) -> checks.CheckMessage:
    return checks.Warning(
        f"The Redis alias {alias!r} used by cachedcall sets no socket timeouts: a frozen or "
        "unreachable Redis would block every request.",
        hint=f"Set OPTIONS = {example}; see the README's recommended options.",
        id="cachedcall.W004",
    )


def _locations(location: Any) -> list[str]:
    # As Django reads LOCATION: a list, or one string separated by ";" or ",".
    if isinstance(location, str):
        return [part for part in location.replace(";", ",").split(",") if part.strip()]
    return list(location or [])


def _backend_class(path: Any) -> type | None:
    # The class BACKEND names; None when there is none (an alias missing from CACHES: E001)
    # or it cannot be imported (Django's own checks and the first use of the alias say why).
    if not isinstance(path, str):
        return None
    try:
        found = import_string(path)
    except (ImportError, TypeError, ValueError):
        return None
    return found if isinstance(found, type) else None


def _is_a(path: Any, bases: tuple[str, ...]) -> bool:
    """Whether the backend class ``path`` names is one of ``bases`` or a subclass of one."""
    if path in bases:
        return True
    cls = _backend_class(path)
    if cls is None:
        return False
    names = {f"{klass.__module__}.{klass.__qualname__}" for klass in cls.__mro__}
    return not names.isdisjoint(bases)


def _unsignable(alias: str, config: dict[str, Any]) -> list[checks.CheckMessage]:
    """E003 for an alias whose backend would unpickle signed caches' reads, saying why."""
    backend = config.get("BACKEND")
    if not _is_a(backend, _SIGNABLE):
        return [
            checks.Error(
                f"CACHEDCALL['SIGN'] is on, but the alias {alias!r} ({backend}) unpickles what it "
                "reads before cachedcall can check a signature, and offers no way to read the "
                "stored bytes without unpickling them.",
                hint="Use PyMemcacheCache, PyLibMCCache, RedisCache, django-redis or LocMemCache "
                "for cachedcall's aliases, or turn CACHEDCALL['SIGN'] off.",
                id="cachedcall.E003",
            )
        ]
    if not _is_a(backend, (_DJANGO_REDIS,)):
        return []
    path = (config.get("OPTIONS") or {}).get("CLIENT_CLASS", "django_redis.client.DefaultClient")
    client = _backend_class(path)
    if client is not None:
        # Importable: django-redis is installed (the client class is of it, or of its users).
        from cachedcall.fastpaths.django_redis import stores_like_default_client

        if stores_like_default_client(client):
            return []
    return [
        checks.Error(
            f"CACHEDCALL['SIGN'] is on, but the django-redis alias {alias!r} uses the client class "
            f"{path}, which stores values otherwise than DefaultClient (packed, or spread over "
            "servers): cachedcall could only read them through django-redis, which unpickles "
            "them before a signature can be checked.",
            hint="Use OPTIONS['CLIENT_CLASS'] = 'django_redis.client.DefaultClient' (the default) "
            "or 'django_redis.client.SentinelClient' for cachedcall's aliases.",
            id="cachedcall.E003",
        )
    ]
