"""The faster readers give exactly what Django's get_many gives, in one request per node."""

from __future__ import annotations

import time

import pytest
from django.core.cache import caches
from django.test import override_settings
from django.utils.module_loading import import_string

from cachedcall import backend
from cachedcall import fastpaths
from cachedcall.fastpaths import pymemcache as pymemcache_paths
from tests import counting
from tests import servers

KEYS = ["cc:a", "cc:b", "cc:none", "cc:expired", "cc:missing", "cc:" + "x" * 60]


def _fill(cache):
    cache.set("cc:a", {"a": [1, 2]}, 60)
    cache.set("cc:b", 7, None)
    cache.set("cc:none", None, 60)
    cache.set("cc:expired", "old", 1)
    cache.set("cc:" + "x" * 60, b"bytes", 60)


# django-redis's get_many is one MGET on a client it keeps: there is nothing to skip, so
# cachedcall reads through it.
WITHOUT_A_FAST_READER = {"django-redis"}


def test_readers_return_what_get_many_returns(backend_name):
    cache = caches["default"]
    reader = fastpaths.reader_for(type(cache))
    assert (reader is None) == (backend_name in WITHOUT_A_FAST_READER)
    _fill(cache)
    time.sleep(1.1)
    expected = {"cc:a", "cc:b", "cc:none", "cc:" + "x" * 60}
    if reader is not None:
        assert reader(cache, KEYS) == cache.get_many(KEYS)
        assert set(reader(cache, KEYS)) == expected
    assert backend.read(cache, "default", KEYS) == cache.get_many(KEYS)
    assert set(backend.read(cache, "default", KEYS)) == expected


def test_subclasses_that_override_get_many_keep_it():
    for path in counting.BACKENDS.values():
        assert fastpaths.reader_for(import_string(path)) is None, path


class _CountingClient:
    """Wraps one real pymemcache client to count requests; everything else passes through."""

    def __init__(self, client, calls):
        self._client, self._calls = client, calls

    def get_many(self, keys, *args, **kwargs):
        self._calls.append(len(keys))
        return self._client.get_many(keys, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


@pytest.mark.parametrize("nodes", [1, 3])
def test_memcached_reader_makes_one_request_per_node(nodes, memcached):
    pool = memcached(nodes)
    config = servers.memcached_config(pool[0])
    config["LOCATION"] = [s.location for s in pool]
    with override_settings(CACHES={"default": config}):
        cache = caches["default"]
        keys = [f"cc:key{i}" for i in range(30)]
        cache.set_many({k: i for i, k in enumerate(keys)}, 60)
        requests: list[int] = []
        hash_client = cache._cache
        hash_client.clients = {
            name: _CountingClient(client, requests) for name, client in hash_client.clients.items()
        }
        found = pymemcache_paths.read(cache, keys)
        assert found == {k: i for i, k in enumerate(keys)}
        assert len(requests) == min(nodes, len(requests)) and sum(requests) == 30
        assert len(requests) <= nodes
        again: list[int] = []
        for client in hash_client.clients.values():
            client._calls = again
        pymemcache_paths.read(cache, keys)  # node lookups now memoized
        assert sum(again) == 30
        cache.close()


def test_a_failing_node_is_handed_back_to_hash_client(memcached):
    (server,) = memcached(1)
    with override_settings(CACHES={"default": servers.memcached_config(server)}):
        cache = caches["default"]
        cache.set("cc:k", 1, 60)
        assert backend.read(cache, "default", ["cc:k"]) == {"cc:k": 1}
        server.stop()
        # The open connection sees the close first (not an OSError: HashClient does not mark
        # the node for that either); the reconnect is refused and the node is marked dead.
        assert backend.read(cache, "default", ["cc:k"]) is None
        assert backend.read(cache, "default", ["cc:k"]) is None
        assert cache._cache._dead_clients
        started = time.monotonic()
        assert backend.read(cache, "default", ["cc:k"]) is None
        assert time.monotonic() - started < 0.1  # dead node: fails at once, no timeout
        cache.close()


# --- the LocMemCache reader's memo of decoded immutable values ---------------------------------


def _locmem():
    return override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}})


def test_the_locmem_reader_shares_decoded_counters_and_never_a_mutable_value():
    from cachedcall.fastpaths import locmem

    with _locmem():
        cache = caches["default"]
        cache.set("counter", 41)
        cache.set("entry", (3, (1, None), 0.5, 2, b"payload", None))
        cache.set("list", [1, 2])
        first = locmem.read(cache, ["counter", "entry", "list"])
        again = locmem.read(cache, ["counter", "entry", "list"])
        assert (
            first
            == again
            == {"counter": 41, "entry": (3, (1, None), 0.5, 2, b"payload", None), "list": [1, 2]}
        )
        assert again["entry"] is first["entry"]  # decoded once
        assert again["list"] is not first["list"]  # a mutable value: a copy per read
        cache.incr("counter")  # new bytes under the key: decoded afresh
        assert locmem.read(cache, ["counter"]) == {"counter": 42}
        cache.clear()


def test_the_locmem_readers_memo_is_bounded_in_bytes():
    from cachedcall.fastpaths import locmem

    with _locmem():
        cache = caches["default"]
        big = b"x" * (locmem.DECODED_BYTES // 10 + 1)
        cache.set("big", (1, big))
        assert locmem.read(cache, ["big"])["big"] is not locmem.read(cache, ["big"])["big"]  # not kept
        for n in range(200):
            cache.set(f"k{n}", (n, b"y" * 100_000))
            locmem.read(cache, [f"k{n}"])
            assert locmem._held[0] <= locmem.DECODED_BYTES
        cache.clear()
