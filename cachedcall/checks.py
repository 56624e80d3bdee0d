"""System checks: ``cachedcall.E001`` (unknown alias), ``E002`` (bad setting),
``W001`` (a memcached alias without client timeouts), ``W002`` (silent retries)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

__all__: list[str] = []

_MEMCACHED = "django.core.cache.backends.memcached.PyMemcacheCache"


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from cachedcall import conf
    from cachedcall.core import registry

    try:
        current = conf.get()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="cachedcall.E002")]
    caches = getattr(settings, "CACHES", {}) or {}
    used: dict[str, str] = {current.cache: "CACHEDCALL['CACHE']"}
    if current.versions_cache:
        used[current.versions_cache] = "CACHEDCALL['VERSIONS_CACHE']"
    for core in registry:
        if core.cache_option:
            used.setdefault(core.cache_option, f"cached(cache=...) on {core.name}")
    messages: list[checks.CheckMessage] = []
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
