"""PyLibMCCache's ``get_many`` without Django's key validation; the raw reads of signed
caches.

Django validates every key character by character in Python before pylibmc's C
``get_multi``; our keys are valid by construction, so :func:`read` skips that (about a
quarter of a four-key hit).

pylibmc decodes what it reads by the item's flags, in C, as pymemcache does: a value
stored with the pickle flag is unpickled by ``get_multi`` itself, before cachedcall could
check a signature. pylibmc lets a ``Client`` subclass override ``deserialize`` (it decides
at construction whether the class does), so a signed cache's backend gets a
:class:`_GuardedClient` in place of the one Django makes: the same servers and options,
hence the same key distribution and the same single client (one set of connections and one
view of failed servers, for counters and entries alike). Inside a raw read it returns bytes
and ints as stored and :data:`~cachedcall.fastpaths.REFUSED` for anything else; outside
one it is pylibmc's own ``deserialize``. Writes need nothing: pylibmc stores bytes as
they are (flags 0) and ints as integers.

Process state: on each PyLibMCCache instance that served a raw read, its ``_cache`` (the
cached client Django makes) replaced by a :class:`_GuardedClient`, for that backend's
lifetime; the flag ``_cachedcall_raw`` on that client, on for the duration of a raw read.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import pylibmc  # type: ignore[import-untyped]
from django.core.cache.backends.memcached import PyLibMCCache
from django.core.exceptions import ImproperlyConfigured

from cachedcall.fastpaths import REFUSED

__all__: list[str] = []

# pylibmc's item flags (src/_pylibmcmodule.h; the zlib bit is handled, and the value
# inflated, before deserialize is called). pylibmc does not export them.
_FLAG_NONE = 0
_FLAG_INTEGER = 1 << 1
_FLAG_LONG = 1 << 2
_FLAG_TYPES = 1 << 0 | 1 << 1 | 1 << 2 | 1 << 4

#: The members of Django and pylibmc each fast path uses.
REQUIRES: dict[str, tuple[tuple[type, str], ...]] = {
    "pylibmc.read": ((PyLibMCCache, "_cache"),),
    # What the guarded client is built from, and the hook it overrides. Without these a
    # raw read is refused: Django's own get_many would unpickle.
    "pylibmc.raw_guard": (
        (PyLibMCCache, "_cache"),
        (PyLibMCCache, "_class"),
        (PyLibMCCache, "_options"),
        (PyLibMCCache, "client_servers"),
        (pylibmc.Client, "deserialize"),
    ),
}
#: Throwaway instances for the gates: a PyLibMCCache makes its client at first use only.
SPECIMENS: dict[type, Callable[[], object]] = {
    PyLibMCCache: lambda: PyLibMCCache("127.0.0.1:1", {}),
}


def read(cache: Any, keys: Sequence[str]) -> dict[str, Any]:
    """``PyLibMCCache.get_many`` without the per-character key validation."""
    made = {cache.make_key(key): key for key in keys}
    found = cache._cache.get_multi(list(made))
    return {made[key]: value for key, value in found.items()}


def raw_read(cache: Any, keys: Sequence[str]) -> dict[str, Any]:
    """:func:`read` with nothing unpickled: bytes and ints as stored, else ``REFUSED``."""
    client = _guarded(cache)
    client._cachedcall_raw = True
    try:
        return read(cache, keys)
    finally:
        client._cachedcall_raw = False


def guarded_read(cache: Any, keys: Sequence[str]) -> dict[str, Any]:
    """The backend's own ``get_many`` with nothing unpickled (a subclass that overrides it)."""
    client = _guarded(cache)
    client._cachedcall_raw = True
    try:
        return dict(cache.get_many(keys))
    finally:
        client._cachedcall_raw = False


class _GuardedClient(pylibmc.Client):  # type: ignore[misc]
    """pylibmc's client, except inside our raw reads: then bytes and ints come back as
    stored and nothing is unpickled (a planted value with the pickle flag is REFUSED)."""

    _cachedcall_raw = False

    def deserialize(self, value: bytes, flags: int) -> Any:
        if not self._cachedcall_raw:
            return super().deserialize(value, flags)
        kind = flags & _FLAG_TYPES
        if kind == _FLAG_NONE:
            return value
        if kind in (_FLAG_INTEGER, _FLAG_LONG):
            # A planted "integer" that is none must not make the read raise either.
            try:
                return int(value)
            except ValueError:
                return REFUSED
        return REFUSED


def _guarded(cache: Any) -> Any:
    # The pylibmc client of ``cache``, guarded (installed at the first raw read).
    held = cache.__dict__.get("_cache")
    if isinstance(held, _GuardedClient):
        return held
    if cache._class is not pylibmc.Client:
        raise ImproperlyConfigured(
            f"cachedcall: CACHEDCALL['SIGN'] cannot guard the memcached client class "
            f"{cache._class!r} of {type(cache).__name__} (only pylibmc.Client): its reads "
            "would unpickle before the signature is checked; calls run uncached."
        )
    # Django's _cache is a cached_property: what the instance holds under that name is
    # the client every operation of this backend uses from now on.
    guarded = _GuardedClient(cache.client_servers, **cache._options)
    cache.__dict__["_cache"] = guarded
    if cache._cache is not guarded:
        # A subclass whose _cache is not Django's cached_property would keep its own
        # client, and that one unpickles.
        raise ImproperlyConfigured(
            f"cachedcall: CACHEDCALL['SIGN'] cannot replace the memcached client of "
            f"{type(cache).__name__} (its _cache is not Django's cached_property); calls run uncached."
        )
    return guarded
