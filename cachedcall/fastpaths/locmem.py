"""LocMemCache's ``get_many`` and ``set`` without Django's per-character key validation,
several keys under one lock acquisition.

They read and write LocMemCache's own dicts and lock as its ``get`` and ``set`` do, and
rebuild its key the way ``default_key_func`` does when that is the key function.

Process state: none of its own. The gate's specimen, ``LocMemCache("cachedcall-gate", {})``,
leaves an empty cache of that name in Django's module-level dicts of LocMemCache data.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from django.core.cache.backends.base import default_key_func
from django.core.cache.backends.locmem import LocMemCache

__all__: list[str] = []

#: The members of LocMemCache each fast path uses. ``key_func``, ``key_prefix`` and
#: ``version`` are set by ``BaseCache.__init__`` and documented nowhere.
REQUIRES: dict[str, tuple[tuple[type, str], ...]] = {
    "locmem.read": (
        (LocMemCache, "_cache"),
        (LocMemCache, "_expire_info"),
        (LocMemCache, "_lock"),
        (LocMemCache, "_delete"),
        (LocMemCache, "key_func"),
        (LocMemCache, "key_prefix"),
        (LocMemCache, "version"),
    ),
    "locmem.write": (
        (LocMemCache, "_lock"),
        (LocMemCache, "_set"),
        (LocMemCache, "pickle_protocol"),
    ),
}
#: Throwaway instances for the gates, for members that only instances have.
SPECIMENS: dict[type, Callable[[], object]] = {LocMemCache: lambda: LocMemCache("cachedcall-gate", {})}


def read(cache: Any, keys: Sequence[str]) -> dict[str, Any]:
    """``LocMemCache.get`` for several keys, under one lock acquisition."""
    if cache.key_func is default_key_func:
        head = f"{cache.key_prefix}:{cache.version}:"
        made = [head + key for key in keys]
    else:
        made = [cache.make_key(key) for key in keys]
    pickled = []
    now = time.time()
    with cache._lock:
        store = cache._cache
        expiry = cache._expire_info
        for key, full in zip(keys, made, strict=True):
            expires = expiry.get(full, -1)
            if expires is not None and expires <= now:
                cache._delete(full)
                continue
            pickled.append((key, store[full]))
            store.move_to_end(full, last=False)
    return {key: pickle.loads(data) for key, data in pickled}


def write(cache: Any, key: str, value: Any, timeout: Any) -> None:
    """``LocMemCache.set`` without the per-character key validation."""
    pickled = pickle.dumps(value, cache.pickle_protocol)
    made = cache.make_key(key)
    with cache._lock:
        cache._set(made, pickled, timeout)
