"""Faster ``get_many`` for Django's LocMemCache and PyMemcacheCache, same results.

Django validates every key character by character in Python, and pymemcache's ``HashClient``
hashes every key with a pure-Python murmur3 even when there is one server; for the several
keys of one cachedcall read (entry, generations, versions) that is most of a memcached hit.
Our keys are valid by construction, so the readers here skip the validation, and the
memcached reader remembers which node a key lives on for the node set it was computed
under. Whenever pymemcache has a failing or dead node, or a subclass overrides
``get_many``, the stock ``get_many`` runs instead.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from django.core.cache.backends.base import default_key_func

__all__: list[str] = []

Reader = Callable[[Any, Sequence[str]], dict[str, Any]]
Writer = Callable[[Any, str, Any, Any], None]
_NODE_MEMO_LIMIT = 50_000


#: What a raw read returns for a stored value it refused to decode (a pickle, under a key
#: of ours, in a signed cache): never unpickled, so never executed.
REFUSED: Any = type("Refused", (), {"__repr__": lambda self: "REFUSED", "__slots__": ()})()


def reader_for(cls: type, raw: bool = False) -> Reader | None:
    """A faster ``get_many`` for ``cls``, or ``None`` for Django's own.

    :param raw: the reader of a signed cache, which never unpickles: memcached and Redis
        values come back as stored bytes or ints (LocMemCache lives in this process, out of
        reach of whoever could plant an entry).
    """
    from django.core.cache.backends.locmem import LocMemCache
    from django.core.cache.backends.memcached import PyMemcacheCache
    from django.core.cache.backends.redis import RedisCache

    stock_locmem = cls.get_many is LocMemCache.get_many and cls.get is LocMemCache.get  # type: ignore[attr-defined]
    if issubclass(cls, LocMemCache) and stock_locmem and hasattr(LocMemCache, "_delete"):
        return _locmem_get_many
    if issubclass(cls, PyMemcacheCache):
        if raw:
            return _pymemcache_raw_get_many
        if cls.get_many is PyMemcacheCache.get_many:
            return _pymemcache_get_many
    if issubclass(cls, RedisCache):
        if raw:
            return _redis_raw_get_many
        if cls.get_many is RedisCache.get_many:
            return _redis_get_many
    return None


def writer_for(cls: type, raw: bool = False) -> Writer | None:
    """A faster ``set`` for the stock LocMemCache and PyMemcacheCache, or ``None``.

    :param raw: the writer of signed bytes; Redis must store them unpickled (memcached
        stores bytes as they are anyway).
    """
    from django.core.cache.backends.locmem import LocMemCache
    from django.core.cache.backends.memcached import PyMemcacheCache
    from django.core.cache.backends.redis import RedisCache

    if issubclass(cls, LocMemCache) and cls.set is LocMemCache.set and hasattr(LocMemCache, "_set"):
        return _locmem_set
    if issubclass(cls, PyMemcacheCache) and cls.set is PyMemcacheCache.set:
        return _pymemcache_set
    if raw and issubclass(cls, RedisCache):
        return _redis_raw_set
    return None


# --- raw reads for signed caches ------------------------------------------------------------


class _Raw(threading.local):
    on = False


_raw = _Raw()


class _GuardedSerde:
    """pymemcache's serde, except inside our raw reads: then bytes and ints come back as
    stored and nothing is unpickled (a planted value with the pickle flag is REFUSED)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def serialize(self, key: Any, value: Any) -> Any:
        return self.inner.serialize(key, value)

    def deserialize(self, key: Any, value: bytes, flags: int) -> Any:
        if not _raw.on:
            return self.inner.deserialize(key, value, flags)
        if flags == 0:  # pymemcache.serde.FLAG_BYTES
            return value
        if flags in (2, 4):  # FLAG_INTEGER, FLAG_LONG
            return int(value)
        return REFUSED


def _guard(hash_client: Any) -> None:
    # Node clients are made from default_kwargs (also when a dead node comes back).
    if isinstance(hash_client.default_kwargs.get("serde"), _GuardedSerde):
        return
    for client in hash_client.clients.values():
        # A PooledClient hands its serde to the clients it creates; wrap those made already.
        pool = getattr(client, "client_pool", None)
        made = [*pool._free_objs, *pool._used_objs] if pool is not None else []
        for each in (client, *made):
            if not isinstance(each.serde, _GuardedSerde):
                each.serde = _GuardedSerde(each.serde)
    inner = hash_client.default_kwargs.get("serde")
    if inner is None:
        from pymemcache.serde import LegacyWrappingSerde

        inner = LegacyWrappingSerde(None, None)
    hash_client.default_kwargs["serde"] = _GuardedSerde(inner)


def _pymemcache_raw_get_many(cache: Any, keys: Sequence[str]) -> dict[str, Any]:
    _guard(cache._cache)
    _raw.on = True
    try:
        if type(cache).get_many is not _stock_pymemcache_get_many():
            return dict(cache.get_many(keys))
        return _pymemcache_get_many(cache, keys)
    finally:
        _raw.on = False


def _stock_pymemcache_get_many() -> Any:
    from django.core.cache.backends.memcached import PyMemcacheCache

    return PyMemcacheCache.get_many


def _raw_value(value: bytes) -> Any:
    # Django stores ints as Redis integers (so INCR works) and pickles everything else;
    # signed entries are stored as bytes by _redis_raw_set.
    try:
        return int(value)
    except ValueError:
        return value


def _redis_raw_get_many(cache: Any, keys: Sequence[str]) -> dict[str, Any]:
    client = _redis_client(cache._cache, False)
    made = [cache.make_key(key) for key in keys]
    values = client.mget(made)
    return {key: _raw_value(value) for key, value in zip(keys, values, strict=True) if value is not None}


def _redis_raw_set(cache: Any, key: str, value: Any, timeout: Any) -> None:
    made = cache.make_key(key)
    client = _redis_client(cache._cache, True)
    timeout = cache.get_backend_timeout(timeout)
    if timeout == 0:
        client.delete(made)
    else:
        client.set(made, value, ex=timeout)


def _redis_client(redis_client: Any, write: bool) -> Any:
    # One redis.Redis per connection pool, reused (they are thread-safe); Django builds a
    # new one for every operation.
    pool = redis_client._get_connection_pool(write)
    held = redis_client.__dict__.setdefault("_cachedcall_clients", {})
    client = held.get(id(pool))
    if client is None:
        client = held[id(pool)] = redis_client._client(connection_pool=pool)
    return client


def _locmem_set(cache: Any, key: str, value: Any, timeout: Any) -> None:
    # LocMemCache.set without the per-character key validation.
    pickled = pickle.dumps(value, cache.pickle_protocol)
    made = cache.make_key(key)
    with cache._lock:
        cache._set(made, pickled, timeout)


def _pymemcache_set(cache: Any, key: str, value: Any, timeout: Any) -> None:
    # PyMemcacheCache.set without the validation, and without re-hashing the key when
    # there is one live node. Like Django, a refused set deletes the stale value.
    hash_client = cache._cache
    clients = hash_client.clients
    if len(clients) != 1 or hash_client._dead_clients or hash_client._failed_clients:
        cache.set(key, value, timeout)
        return
    client = next(iter(clients.values()))
    made = cache.make_key(key)
    try:
        if not client.set(made, value, cache.get_backend_timeout(timeout)):
            client.delete(made)
    except OSError:
        hash_client._mark_failed_server(client.server)
        raise


def in_memory(reader: Reader | None) -> bool:
    """Whether a reader never blocks on I/O (so async code may call it on the event loop)."""
    return reader is _locmem_get_many


def _redis_get_many(cache: Any, keys: Sequence[str]) -> dict[str, Any]:
    # RedisCache.get_many without the per-key validation, and without building a new
    # redis.Redis client object for every call: one per connection pool is reused (they
    # are thread-safe). Replica selection and the serializer stay Django's.
    from django.core.cache.backends.redis import RedisCacheClient

    redis_client: Any = cache._cache
    stock = type(redis_client) is RedisCacheClient  # a custom client keeps its own get_many
    if not stock:
        return dict(cache.get_many(keys))
    client = _redis_client(redis_client, False)
    made = [cache.make_key(key) for key in keys]
    loads = redis_client._serializer.loads
    values = client.mget(made)
    return {key: loads(value) for key, value in zip(keys, values, strict=True) if value is not None}


def _locmem_get_many(cache: Any, keys: Sequence[str]) -> dict[str, Any]:
    # LocMemCache.get, for several keys under one lock acquisition.
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


def _pymemcache_get_many(cache: Any, keys: Sequence[str]) -> dict[str, Any]:
    hash_client = cache._cache
    if hash_client._dead_clients or hash_client._failed_clients:
        return dict(cache.get_many(keys))  # let HashClient apply its retry and dead-node rules
    make_key = cache.make_key
    made = {make_key(key): key for key in keys}
    clients = hash_client.clients
    if len(clients) == 1:
        batches = {next(iter(clients.values())): list(made)}
    else:
        batches = {}
        memo = _node_memo(hash_client)
        for key in made:
            node = memo.get(key)
            if node is None:
                if len(memo) > _NODE_MEMO_LIMIT:
                    memo.clear()
                node = memo[key] = hash_client.hasher.get_node(key)
            batches.setdefault(clients[node], []).append(key)
    found: dict[str, Any] = {}
    for client, batch in batches.items():
        try:
            values = client.get_many(batch)
        except OSError:
            # What HashClient does with a node that fails: mark it, so that its retry and
            # dead-node rules (and our fallback above) apply from the next call on.
            hash_client._mark_failed_server(client.server)
            raise
        for key, value in values.items():
            found[made[key]] = value
    return found


def _node_memo(hash_client: Any) -> dict[str, Any]:
    nodes = tuple(sorted(hash_client.clients))
    memo = getattr(hash_client, "_cachedcall_nodes", None)
    if memo is None or memo[0] != nodes:
        memo = (nodes, {})
        hash_client._cachedcall_nodes = memo
    return memo[1]
