"""LocMemCache's ``get_many`` and ``set`` without Django's per-character key validation,
several keys under one lock acquisition.

They read and write LocMemCache's own dicts and lock as its ``get`` and ``set`` do, and
rebuild its key the way ``default_key_func`` does when that is the key function.

Process state: ``_decoded`` and ``_held`` (immutable values decoded, by the pickled bytes
they came from, and those bytes' total; bounded, reset by :func:`forget`). The gate's
specimen, ``LocMemCache("cachedcall-gate", {})``, leaves an empty cache of that name in
Django's module-level dicts of LocMemCache data.
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


#: Decoded immutable values by the identity of the pickled bytes they came from, which
#: LocMemCache keeps until the key is written again: a hit reads the same counters and the
#: same entry tuple over and over, and unpickling each of them was a third of a hit. Only
#: ints and tuples of immutable builtins are kept (shared between callers, they cannot be
#: changed by one of them); the entry's payload inside the tuple stays pickled and is
#: unpickled afresh for every caller. The pickled bytes are kept with the value, so an id
#: is never taken for a new object's.
_decoded: dict[int, tuple[bytes, Any]] = {}
#: The memo holds at most this many pickled bytes (values it keeps alive once LocMemCache
#: has dropped them), and no value pickled larger than a tenth of it, whose unpickling
#: would cost far more than reading it anyway.
DECODED_BYTES = 4 * 1024 * 1024
_held = [0]
_IMMUTABLE = frozenset({int, float, bytes, str, bool, type(None)})


def _shareable(value: Any) -> bool:
    kind = type(value)
    if kind is int:
        return True
    return kind is tuple and all(
        type(item) in _IMMUTABLE or (type(item) is tuple and all(type(x) in _IMMUTABLE for x in item))
        for item in value
    )


def _decode(data: bytes) -> Any:
    value = pickle.loads(data)
    size = len(data)
    if size <= DECODED_BYTES // 10 and _shareable(value):
        if _held[0] + size > DECODED_BYTES:
            forget()
        _decoded[id(data)] = (data, value)
        _held[0] += size
    return value


def forget() -> None:
    """Drop the decoded values (for the testing helpers)."""
    _decoded.clear()
    _held[0] = 0


def read(cache: Any, keys: Sequence[str]) -> dict[str, Any]:
    """``LocMemCache.get`` for several keys, under one lock acquisition."""
    if cache.key_func is default_key_func:
        head = f"{cache.key_prefix}:{cache.version}:"
        made = [head + key for key in keys]
    else:
        made = [cache.make_key(key) for key in keys]
    found: dict[str, Any] = {}
    decoded = _decoded
    now = time.time()
    with cache._lock:
        store = cache._cache
        expiry = cache._expire_info
        for key, full in zip(keys, made, strict=False):  # as long: built from keys
            expires = expiry.get(full, -1)
            if expires is not None and expires <= now:
                cache._delete(full)
                continue
            data = store[full]
            store.move_to_end(full, last=False)
            # Inline, the memo's hit: this loop is most of a locmem hit. A miss of the memo
            # unpickles under the lock, as LocMemCache.incr does.
            held = decoded.get(id(data))
            found[key] = held[1] if held is not None and held[0] is data else _decode(data)
    return found


def write(cache: Any, key: str, value: Any, timeout: Any) -> None:
    """``LocMemCache.set`` without the per-character key validation."""
    pickled = pickle.dumps(value, cache.pickle_protocol)
    made = cache.make_key(key)
    with cache._lock:
        cache._set(made, pickled, timeout)
