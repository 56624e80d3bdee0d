"""PyMemcacheCache's ``get_many`` and ``set`` without Django's key validation, and without
pymemcache's ``HashClient`` hashing every key again; the raw reads of signed caches.

The reader remembers which node a key lives on for the node set it was computed under, and
sends one ``get_many`` per node. Whenever the ``HashClient`` has a failing or dead node,
the stock ``get_many`` / ``set`` runs instead, so that its retry and dead-node rules apply.

Raw reads put a :class:`_GuardedSerde` in front of pymemcache's serde, in every node client
(pooled ones too) and in the ``default_kwargs`` that later clients are made from: inside a
raw read it returns bytes and ints as stored and :data:`~cachedcall.fastpaths.REFUSED` for
anything else, so nothing read is unpickled; outside one it is the serde it wraps.

Process state: ``_raw``, a thread-local flag that is on for the duration of a raw read;
on each ``HashClient``, the attribute ``_cachedcall_nodes`` (the node set and a key -> node
memo, cleared past ``_NODE_MEMO_LIMIT`` keys); and the guarded serdes, installed into a
``HashClient`` and its clients at its first raw read and kept for its lifetime.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from django.core.cache.backends.memcached import PyMemcacheCache
from pymemcache.client.base import Client
from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient
from pymemcache.pool import ObjectPool
from pymemcache.serde import LegacyWrappingSerde

from cachedcall.fastpaths import REFUSED

try:
    from pymemcache.serde import FLAG_BYTES
    from pymemcache.serde import FLAG_INTEGER
    from pymemcache.serde import FLAG_LONG
except ImportError:  # pragma: no cover - the values python-memcached set and pymemcache kept.
    FLAG_BYTES, FLAG_INTEGER, FLAG_LONG = 0, 2, 4

__all__: list[str] = []

_NODE_MEMO_LIMIT = 50_000
_INTEGER_FLAGS = frozenset((FLAG_INTEGER, FLAG_LONG))

#: The members of Django and pymemcache each fast path uses. Node clients are ``Client``
#: or, with ``use_pooling``, ``PooledClient`` (which makes ``Client`` objects in its pool).
REQUIRES: dict[str, tuple[tuple[type, str], ...]] = {
    "pymemcache.read": (
        (PyMemcacheCache, "_cache"),
        (HashClient, "clients"),
        (HashClient, "_dead_clients"),
        (HashClient, "_failed_clients"),
        (HashClient, "hasher"),
        (HashClient, "_mark_failed_server"),
        (Client, "server"),
        (PooledClient, "server"),
    ),
    "pymemcache.write": (
        (PyMemcacheCache, "_cache"),
        (HashClient, "clients"),
        (HashClient, "_dead_clients"),
        (HashClient, "_failed_clients"),
        (HashClient, "_mark_failed_server"),
        (Client, "server"),
        (PooledClient, "server"),
    ),
    # Where the serde is that the guard replaces; a rename here would leave pickles to the
    # serde we meant to guard, so a raw read without these members is refused.
    "pymemcache.raw_guard": (
        (PyMemcacheCache, "_cache"),
        (HashClient, "clients"),
        (HashClient, "default_kwargs"),
        (Client, "serde"),
        (PooledClient, "serde"),
        (PooledClient, "client_pool"),
        (ObjectPool, "_free_objs"),
        (ObjectPool, "_used_objs"),
    ),
}
#: Throwaway instances for the gates, for members that only instances have: none of these
#: connects before its first command.
SPECIMENS: dict[type, Callable[[], object]] = {
    HashClient: lambda: HashClient([]),
    Client: lambda: Client(("127.0.0.1", 1)),
    PooledClient: lambda: PooledClient(("127.0.0.1", 1)),
    ObjectPool: lambda: ObjectPool(object),
}


def read(cache: Any, keys: Sequence[str]) -> dict[str, Any]:
    """``PyMemcacheCache.get_many`` in one request per node, without re-hashing known keys."""
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


def write(cache: Any, key: str, value: Any, timeout: Any) -> None:
    """``PyMemcacheCache.set`` without the validation, and without re-hashing the key when
    there is one live node. Like Django, a refused set deletes the stale value."""
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


def raw_read(cache: Any, keys: Sequence[str]) -> dict[str, Any]:
    """:func:`read` with nothing unpickled: bytes and ints as stored, else ``REFUSED``."""
    _guard(cache._cache)
    _raw.on = True
    try:
        return read(cache, keys)
    finally:
        _raw.on = False


def guarded_read(cache: Any, keys: Sequence[str]) -> dict[str, Any]:
    """The backend's own ``get_many`` with nothing unpickled (a subclass that overrides it,
    or a pymemcache without the members of :func:`read`)."""
    _guard(cache._cache)
    _raw.on = True
    try:
        return dict(cache.get_many(keys))
    finally:
        _raw.on = False


def _node_memo(hash_client: Any) -> dict[str, Any]:
    nodes = tuple(sorted(hash_client.clients))
    memo = getattr(hash_client, "_cachedcall_nodes", None)
    if memo is None or memo[0] != nodes:
        memo = (nodes, {})
        hash_client._cachedcall_nodes = memo
    return memo[1]


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
        if flags == FLAG_BYTES:
            return value
        if flags in _INTEGER_FLAGS:
            # A planted value with the integer flag that is no integer must not make the read
            # raise: the caller's fallback would read the batch again through Django, which
            # unpickles.
            try:
                return int(value)
            except ValueError:
                return REFUSED
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
        inner = LegacyWrappingSerde(None, None)
    hash_client.default_kwargs["serde"] = _GuardedSerde(inner)
