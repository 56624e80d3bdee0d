"""RedisCache's ``get_many`` without Django's key validation and without a new
``redis.Redis`` per call; the raw reads and writes of signed caches.

Django builds a ``redis.Redis`` around the connection pool for every operation; these
paths keep one per pool (they are thread-safe) and leave replica selection to Django's
``_get_connection_pool`` and decoding to its serializer. Raw reads never unpickle: Django
stores ints as Redis integers (so that ``INCR`` works) and pickles everything else, and
signed entries are stored as the bytes they are by the raw writers, so a raw read returns
ints and bytes.

When the per-pool members are missing, the raw paths go through the ``redis.Redis`` that
Django's own ``RedisCacheClient.get_client`` returns (new per call, as in Django), which
reads and writes bytes as they are, too.

Process state: on each ``RedisCacheClient``, the attribute ``_cachedcall_clients`` (one
``redis.Redis`` per connection pool, by the pool's ``id``; the client holds its pools for
its lifetime, so an ``id`` is not reused while it is there).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from django.core.cache.backends.redis import RedisCache
from django.core.cache.backends.redis import RedisCacheClient

from cachedcall.fastpaths import raw_value

__all__: list[str] = []

#: The members of Django's Redis backend each fast path uses.
REQUIRES: dict[str, tuple[tuple[type, str], ...]] = {
    "redis.read": (
        (RedisCache, "_cache"),
        (RedisCacheClient, "_get_connection_pool"),
        (RedisCacheClient, "_client"),
        (RedisCacheClient, "_serializer"),
    ),
    # Raw reads and writes, one redis.Redis per pool.
    "redis.raw": (
        (RedisCache, "_cache"),
        (RedisCacheClient, "_get_connection_pool"),
        (RedisCacheClient, "_client"),
    ),
    # Raw reads and writes through a client of Django's making: the last resort, since
    # Django's own get_many would unpickle.
    "redis.raw_via_get_client": (
        (RedisCache, "_cache"),
        (RedisCacheClient, "get_client"),
    ),
}
#: Throwaway instances for the gates, for members that only instances have: a
#: RedisCacheClient makes its connection pool at its first command, not before.
SPECIMENS: dict[type, Callable[[], object]] = {
    RedisCacheClient: lambda: RedisCacheClient(["redis://127.0.0.1:1/0"]),
}


def read(cache: Any, keys: Sequence[str]) -> dict[str, Any]:
    """``RedisCache.get_many`` in one ``MGET`` on a reused client; a custom
    ``RedisCacheClient`` keeps its own ``get_many``."""
    redis_client: Any = cache._cache
    # Not an inline ``is not`` test: mypy would narrow to the stubs' RedisCacheClient, which
    # lacks the private members used below.
    stock = type(redis_client) is RedisCacheClient
    if not stock:
        return dict(cache.get_many(keys))
    client = _redis_client(redis_client, False)
    made = [cache.make_key(key) for key in keys]
    loads = redis_client._serializer.loads
    values = client.mget(made)
    return {key: loads(value) for key, value in zip(keys, values, strict=True) if value is not None}


def raw_read(cache: Any, keys: Sequence[str]) -> dict[str, Any]:
    """An ``MGET`` with nothing unpickled: ints, and bytes as stored."""
    client = _redis_client(cache._cache, False)
    made = [cache.make_key(key) for key in keys]
    values = client.mget(made)
    return {key: raw_value(value) for key, value in zip(keys, values, strict=True) if value is not None}


def raw_write(cache: Any, key: str, value: Any, timeout: Any) -> None:
    """``RedisCache.set`` of signed bytes, stored as they are (Django would pickle them)."""
    made = cache.make_key(key)
    client = _redis_client(cache._cache, True)
    timeout = cache.get_backend_timeout(timeout)
    if timeout == 0:
        client.delete(made)
    else:
        client.set(made, value, ex=timeout)


def raw_read_via_get_client(cache: Any, keys: Sequence[str]) -> dict[str, Any]:
    """:func:`raw_read` through the client Django's ``get_client`` makes."""
    client = cache._cache.get_client(write=False)
    made = [cache.make_key(key) for key in keys]
    values = client.mget(made)
    return {key: raw_value(value) for key, value in zip(keys, values, strict=True) if value is not None}


def raw_write_via_get_client(cache: Any, key: str, value: Any, timeout: Any) -> None:
    """:func:`raw_write` through the client Django's ``get_client`` makes."""
    made = cache.make_key(key)
    client = cache._cache.get_client(made, write=True)
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
