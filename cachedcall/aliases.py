"""Which backend object a thread uses for each cache alias.

Sync code uses the backend of its own thread, looked up once per thread rather than through
asgiref's slower ``caches[alias]`` on every call. A thread of ours (the bump retry and
repeat threads) closes what it opened itself, since no ``request_finished`` does; the
retry thread also builds new backends for every try (:func:`use_fresh_backends`).

Process state: each thread's backends (``_local.held``, valid for one ``_generation`` of
``settings.CACHES``, which ``override_settings`` advances) and whether the thread wants
fresh ones (``_local.fresh``); :func:`forget` starts a new generation.
"""

from __future__ import annotations

import threading

from django.core.cache import InvalidCacheBackendError
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.signals import setting_changed

__all__: list[str] = []

_local = threading.local()
_generation = 0


def cache_for(alias: str) -> BaseCache:
    """Return this thread's backend for ``alias`` without asgiref's slower lookup each call."""
    held: tuple[int, dict[str, BaseCache]] | None = getattr(_local, "held", None)
    if held is None or held[0] != _generation:
        held = _local.held = (_generation, {})
    backend = held[1].get(alias)
    if backend is None:
        backend = held[1][alias] = fresh(alias) if getattr(_local, "fresh", False) else lookup(alias)
    return backend


def use_fresh_backends() -> None:
    """Make this thread build a new backend per alias after each :func:`close_thread_caches`
    instead of reusing ``caches[alias]``: a client keeps state across ``close()`` (pymemcache
    marks a server dead for ``dead_timeout``), and a retry must try the server itself."""
    _local.fresh = True


def fresh(alias: str) -> BaseCache:
    """A new backend for ``alias``, built from ``settings.CACHES`` as Django builds one."""
    from django.conf import settings
    from django.utils.module_loading import import_string

    lookup(alias)  # the same error as everywhere for an alias that does not exist
    params = dict(settings.CACHES[alias])
    backend_cls = import_string(params.pop("BACKEND"))
    location = params.pop("LOCATION", "")
    built: BaseCache = backend_cls(location, params)
    return built


def lookup(alias: str) -> BaseCache:
    """Return ``caches[alias]`` or raise a configuration error that says how to fix it."""
    try:
        found: BaseCache = caches[alias]
        return found
    except InvalidCacheBackendError as exc:
        raise InvalidCacheBackendError(
            f"cachedcall: there is no cache alias {alias!r} in settings.CACHES; add it, or "
            f"pass cache='<alias>' / set CACHEDCALL['CACHE'] to one of: "
            f"{', '.join(_known_aliases()) or '(none)'}."
        ) from exc


def _known_aliases() -> list[str]:
    from django.conf import settings

    return sorted(getattr(settings, "CACHES", {}) or {})


def _caches_changed(*, setting: str, **kwargs: object) -> None:
    global _generation
    if setting == "CACHES":
        _generation += 1


setting_changed.connect(_caches_changed, dispatch_uid="cachedcall.aliases.caches_changed")


def close_thread_caches() -> None:
    """Close the backends this thread opened (a thread of ours that no request ends)."""
    held: tuple[int, dict[str, BaseCache]] | None = getattr(_local, "held", None)
    if held is not None:
        for cache in held[1].values():
            cache.close()
        _local.held = None


def forget() -> None:
    """Make every thread look its backends up again (on its next call)."""
    global _generation
    _generation += 1
