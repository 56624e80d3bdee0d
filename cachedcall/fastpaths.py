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
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from django.core.cache.backends.base import default_key_func

__all__: list[str] = []

Reader = Callable[[Any, Sequence[str]], dict[str, Any]]
Writer = Callable[[Any, str, Any, Any], None]
_NODE_MEMO_LIMIT = 50_000


def reader_for(cls: type) -> Reader | None:
    from django.core.cache.backends.locmem import LocMemCache
    from django.core.cache.backends.memcached import PyMemcacheCache

    stock_locmem = cls.get_many is LocMemCache.get_many and cls.get is LocMemCache.get  # type: ignore[attr-defined]
    if issubclass(cls, LocMemCache) and stock_locmem and hasattr(LocMemCache, "_delete"):
        return _locmem_get_many
    if issubclass(cls, PyMemcacheCache) and cls.get_many is PyMemcacheCache.get_many:
        return _pymemcache_get_many
    from django.core.cache.backends.redis import RedisCache

    if issubclass(cls, RedisCache) and cls.get_many is RedisCache.get_many:
        return _redis_get_many
    return None


def writer_for(cls: type) -> Writer | None:
    """A faster ``set`` for the stock LocMemCache and PyMemcacheCache, or ``None``."""
    from django.core.cache.backends.locmem import LocMemCache
    from django.core.cache.backends.memcached import PyMemcacheCache

    if issubclass(cls, LocMemCache) and cls.set is LocMemCache.set and hasattr(LocMemCache, "_set"):
        return _locmem_set
    if issubclass(cls, PyMemcacheCache) and cls.set is PyMemcacheCache.set:
        return _pymemcache_set
    return None


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
    pool = redis_client._get_connection_pool(False)
    held = redis_client.__dict__.setdefault("_cachedcall_clients", {})
    client = held.get(id(pool))
    if client is None:
        client = held[id(pool)] = redis_client._client(connection_pool=pool)
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
