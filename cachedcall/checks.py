"""System checks: ``cachedcall.E001`` (unknown alias), ``E002`` (bad setting),
``E003`` (signing asked of a backend that unpickles before we can check),
``E004`` (process-local counters for entries in a shared backend), ``W001`` (a memcached
alias without client timeouts), ``W002`` (silent retries), ``W003`` (version counters in a
memcached pool, where a returning node brings old ones back), ``W004`` (a Redis alias
without socket timeouts)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

__all__: list[str] = []

_MEMCACHED = "django.core.cache.backends.memcached.PyMemcacheCache"
_REDIS = "django.core.cache.backends.redis.RedisCache"
# Backends whose data lives in one process: counters there are never seen by another.
_PROCESS_LOCAL = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)
# The backends whose stored bytes cachedcall reads itself (or that live in this process).
_SIGNABLE = (
    _MEMCACHED,
    "django.core.cache.backends.redis.RedisCache",
    "django.core.cache.backends.locmem.LocMemCache",
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
        if current.sign and config.get("BACKEND") not in _SIGNABLE:
            messages.append(
                checks.Error(
                    f"CACHEDCALL['SIGN'] is on, but the alias {alias!r} ({config.get('BACKEND')}) "
                    "unpickles what it reads before cachedcall can check a signature.",
                    hint="Use PyMemcacheCache, RedisCache or LocMemCache for cachedcall's aliases.",
                    id="cachedcall.E003",
                )
            )
        if config.get("BACKEND") == _REDIS:
            options = config.get("OPTIONS") or {}
            if "socket_timeout" not in options or "socket_connect_timeout" not in options:
                messages.append(
                    checks.Warning(
                        f"The Redis alias {alias!r} used by cachedcall sets no socket timeouts: a "
                        "frozen or unreachable Redis would block every request.",
                        hint="Set OPTIONS = {'socket_connect_timeout': 0.5, 'socket_timeout': 0.5}; "
                        "see the README's recommended options.",
                        id="cachedcall.W004",
                    )
                )
        if config.get("BACKEND") == _MEMCACHED:
            options = config.get("OPTIONS") or {}
            if "timeout" not in options or "connect_timeout" not in options:
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
    return messages


def _locations(location: Any) -> list[str]:
    # As Django reads LOCATION: a list, or one string separated by ";" or ",".
    if isinstance(location, str):
        return [part for part in location.replace(";", ",").split(",") if part.strip()]
    return list(location or [])
