"""Planted payloads through every read path: with ``CACHEDCALL["SIGN"]`` on, nothing planted
is ever unpickled, and each planted read is a plain miss.

One table: read path x backend x (target, payload). An attacker with network access to
memcached or Redis plants (:mod:`tests.planted`) a pickle whose loading runs code, a forged
or foreign signature, or something that is no integer of ours, under the entry key, the
global or the function's generation, or the model version; the lock paths also find the
entry's lock held, by a pickle. The call must return the right value, compute it once (a
miss: recorded as ``miss``, stored), run nothing, and leave the cache repaired (the next
call is a hit).

The read paths: ``f()``, ``await f()``, ``cached_view`` sync and async, ``stale=``, ``soft=``
and ``early=`` (each reads the same but decides differently on what it read), the lock's
waiting path sync and async, ``f.refresh()`` (counters only) and ``f.map()`` (a batch of one).
A second table runs the sync path through each backend's other reader: the ``get_many`` of
a subclass under the guard, pymemcache's own ``get_many`` while a node is down, Redis through
``get_client``, and a ``get_many`` that fails to decode (which must fail the read, never
fall back key by key through Django's ``get()``). A last test plants a counter in the race
between a read and the ``add`` that re-seeds it.

See tests/test_signing.py for signing itself (round trips, key binding, fallback secrets).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any
from typing import NamedTuple

import pytest
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.core.cache.backends.redis import RedisCacheClient
from django.http import HttpResponse
from django.test import AsyncRequestFactory
from django.test import RequestFactory
from django.test import override_settings

from cachedcall import bump as cachedcall_bump
from cachedcall import cached
from cachedcall import cached_view
from cachedcall import fastpaths
from cachedcall import locks
from cachedcall import stats
from cachedcall import xfetch
from cachedcall.decorators import function_cache
from cachedcall.fastpaths import redis as redis_paths
from cachedcall.testing import record
from tests import names
from tests import planted
from tests import servers
from tests.planted import COUNTER_PAYLOADS
from tests.planted import ENTRY_PAYLOADS
from tests.planted import Payload
from tests.planted import ran

calls: Counter[str] = Counter()
MODEL = "testapp.Club"


@pytest.fixture(autouse=True)
def signed() -> Iterator[None]:
    ran.clear()
    planted.race.clear()
    with override_settings(CACHEDCALL={"SIGN": True}):
        yield
    assert ran == []  # whatever else a test asserts, nothing planted ever ran


# --- the decorated functions, one per read path --------------------------------------------------


@cached(timeout=60, depends_on=[MODEL])
def value(n):
    calls["sync"] += 1
    return {"n": n}


@cached(timeout=60, depends_on=[MODEL])
async def avalue(n):
    calls["async"] += 1
    return {"n": n}


@cached(timeout=60, depends_on=[MODEL])
def mapped_value(n):
    calls["map"] += 1
    return {"n": n}


@cached_view(60, depends_on=[MODEL])
def page(request, n):
    calls["view"] += 1
    return HttpResponse(f"page {n}")


@cached_view(60, depends_on=[MODEL])
async def apage(request, n):
    calls["async-view"] += 1
    return HttpResponse(f"page {n}")


@cached(timeout=60, stale=30, depends_on=[MODEL])
def stale_value(n):
    calls["stale"] += 1
    return {"n": n}


@cached(timeout=60, soft=True, depends_on=[MODEL])
def soft_value(n):
    calls["soft"] += 1
    return {"n": n}


@cached(timeout=60, early=1.0, depends_on=[MODEL])
def early_value(n):
    calls["early"] += 1
    return {"n": n}


@cached(timeout=60, lock=True, lock_wait=0.05, lock_ttl=2, depends_on=[MODEL])
def locked_value(n):
    calls["lock"] += 1
    return {"n": n}


@cached(timeout=60, lock=True, lock_wait=0.05, lock_ttl=2, depends_on=[MODEL])
async def alocked_value(n):
    calls["async-lock"] += 1
    return {"n": n}


@cached(timeout=60, depends_on=[MODEL])
def refreshed_value(n):
    calls["refresh"] += 1
    return {"n": n}


def _run(coroutine: Any) -> Any:
    async def request() -> Any:
        try:
            return await coroutine
        finally:
            caches.close_all()  # as request_finished does at the end of an ASGI request

    return asyncio.run(request())


def _get() -> Any:
    return RequestFactory().get("/planted/")


def _aget() -> Any:
    return AsyncRequestFactory().get("/planted/")


class ReadPath(NamedTuple):
    """How one read path is called, and what its caller must get."""

    name: str
    function: Any
    #: One call of the path (n=1), and what it returns as compared.
    call: Callable[[], Any]
    #: The entry key that call reads.
    key: Callable[[], str]
    #: The next plain call, which must be a hit once the planted bytes are repaired.
    again: Callable[[], Any]
    expected: Any
    #: Before planting: make a valid entry take this path's branch (undone before ``again``).
    arrange: Callable[[pytest.MonkeyPatch], None] | None = None
    #: Whether the path holds the entry's lock (the waiting path: planted under the lock too).
    locked: bool = False
    #: Whether the path reads the entry at all (``refresh()`` reads only the counters).
    reads_entry: bool = True


def _content(response: Any) -> bytes:
    return bytes(response.content)


def _past_freshness(patch: pytest.MonkeyPatch) -> None:
    # 61 s later: a valid entry (fresh for 60) is stale, and still held (60 + stale 30).
    real = xfetch.clock
    patch.setattr(xfetch, "clock", lambda: real() + 61)


def _always_early(patch: pytest.MonkeyPatch) -> None:
    patch.setattr(xfetch, "rand", lambda: 0.0)  # a draw that refreshes any fresh entry


PATHS = {
    path.name: path
    for path in [
        ReadPath("sync", value, lambda: value(1), lambda: value.key(1), lambda: value(1), {"n": 1}),
        ReadPath(
            "map",
            mapped_value,
            lambda: mapped_value.map([1])[0],
            lambda: mapped_value.key(1),
            lambda: mapped_value(1),
            {"n": 1},
        ),
        ReadPath(
            "async", avalue, lambda: _run(avalue(1)), lambda: avalue.key(1), lambda: _run(avalue(1)), {"n": 1}
        ),
        ReadPath(
            "view",
            page,
            lambda: _content(page(_get(), 1)),
            lambda: page.key(_get(), 1),
            lambda: _content(page(_get(), 1)),
            b"page 1",
        ),
        ReadPath(
            "async-view",
            apage,
            lambda: _content(_run(apage(_aget(), 1))),
            lambda: apage.key(_aget(), 1),
            lambda: _content(_run(apage(_aget(), 1))),
            b"page 1",
        ),
        ReadPath(
            "stale",
            stale_value,
            lambda: stale_value(1),
            lambda: stale_value.key(1),
            lambda: stale_value(1),
            {"n": 1},
            arrange=_past_freshness,
        ),
        ReadPath(
            "soft",
            soft_value,
            lambda: soft_value(1),
            lambda: soft_value.key(1),
            lambda: soft_value(1),
            {"n": 1},
        ),
        ReadPath(
            "early",
            early_value,
            lambda: early_value(1),
            lambda: early_value.key(1),
            lambda: early_value(1),
            {"n": 1},
            arrange=_always_early,
        ),
        ReadPath(
            "lock",
            locked_value,
            lambda: locked_value(1),
            lambda: locked_value.key(1),
            lambda: locked_value(1),
            {"n": 1},
            locked=True,
        ),
        ReadPath(
            "async-lock",
            alocked_value,
            lambda: _run(alocked_value(1)),
            lambda: alocked_value.key(1),
            lambda: _run(alocked_value(1)),
            {"n": 1},
            locked=True,
        ),
        ReadPath(
            "refresh",
            refreshed_value,
            lambda: refreshed_value.refresh(1),
            lambda: refreshed_value.key(1),
            lambda: refreshed_value(1),
            {"n": 1},
            reads_entry=False,
        ),
    ]
}


# --- what is planted, and where -------------------------------------------------------------------


def _target_key(path: ReadPath, target: str) -> str:
    if target == "entry":
        return path.key()
    if target == "global-generation":
        return names.key("G")
    if target == "function-generation":
        fc = function_cache(path.function)
        assert fc is not None
        fc.setup()  # resolved on the first call, which random order may not have made yet
        return fc.generation_keys[1]
    assert target == "model-version"
    return names.key("v:" + MODEL.lower())


COUNTER_TARGETS = ["global-generation", "function-generation", "model-version"]
SCENARIOS = (
    [pytest.param("entry", p, id=f"entry-{p.name}") for p in ENTRY_PAYLOADS]
    + [
        pytest.param(target, p, id=f"{target}-{p.name}")
        for target in COUNTER_TARGETS
        for p in COUNTER_PAYLOADS
    ]
    # The bypass the hardening issue found: something that is no integer under the global
    # generation (its int() raised, and the read fell back key by key through Django's get,
    # which unpickles) together with a pickle under the entry key.
    + [pytest.param("generation-and-entry", p, id=f"generation-and-entry-{p.name}") for p in COUNTER_PAYLOADS]
)


def _plant(path: ReadPath, target: str, payload: Payload, counters: str = "default") -> None:
    if target == "generation-and-entry":
        planted.plant(_target_key(path, "global-generation"), payload, counters)
        planted.plant(path.key(), ENTRY_PAYLOADS[0])  # a pickle that runs code
    else:
        planted.plant(_target_key(path, target), payload, "default" if target == "entry" else counters)


def _plant_and_call(
    path: ReadPath, target: str, payload: Payload, monkeypatch: pytest.MonkeyPatch, counters: str = "default"
) -> Any:
    """Warm the entry, plant, make the planted call; return what it returned.

    :param counters: the alias that holds the counters (``CACHEDCALL["VERSIONS_CACHE"]``).
    """
    assert path.call() == path.expected
    assert calls[path.name] == 1
    with monkeypatch.context() as patch:
        if path.arrange is not None:
            path.arrange(patch)
        _plant(path, target, payload, counters)
        if path.locked:
            # Held by someone else (the holder's token planted as a pickle: it is never read).
            planted.plant(locks.key(path.key()), planted.LOCK_PAYLOAD)
        with record() as events:
            started = time.perf_counter()
            got = path.call()
            took = time.perf_counter() - started
    events.assert_counts(path.function, miss=1, stored=1, hit=0, error=0, stale=0)
    if path.locked:
        assert took >= 0.05, took  # it waited for the holder (lock_wait), polling the entry
    return got


@pytest.mark.usefixtures("backend_name")
@pytest.mark.parametrize(("target", "payload"), SCENARIOS)
@pytest.mark.parametrize("path_name", list(PATHS))
def test_a_planted_payload_is_never_unpickled_and_is_a_plain_miss(path_name, target, payload, monkeypatch):
    path = PATHS[path_name]
    assert _plant_and_call(path, target, payload, monkeypatch) == path.expected
    assert ran == []
    assert calls[path.name] == 2  # computed again: a miss, and nothing served unverified
    refused = 1 if target in ("entry", "generation-and-entry") and path.reads_entry else 0
    assert stats()["bad_signatures"].get("default", 0) == refused
    # Repaired: the entry overwritten, the foreign counter dropped and re-seeded.
    assert path.again() == path.expected
    assert calls[path.name] == 2
    assert ran == []


# --- the other readers of each backend, on the sync path ------------------------------------------


def _memcached_node_down(server: servers.Server) -> dict[str, Any]:
    # Two nodes, one of them never started: HashClient marks it dead (dead_timeout long
    # enough for the test), and the fast reader hands every read to HashClient.get_many.
    dead = servers.memcached(servers.free_port())
    config = servers.memcached_config(server, dead_timeout=300)
    return {**config, "LOCATION": [server.location, dead.location]}


READERS = [
    # (backend, reader): the fast readers are the table above's.
    ("memcached", "get_many-of-a-subclass"),
    ("memcached", "node-down"),
    ("memcached", "decode-error"),
    ("pylibmc", "get_many-of-a-subclass"),
    ("pylibmc", "decode-error"),
    ("redis", "via-get_client"),
    ("locmem", "get_many-of-a-subclass"),
    ("locmem", "decode-error"),
]


@pytest.fixture(params=READERS, ids=["-".join(r) for r in READERS])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The 'default' alias read through one of its backend's other readers."""
    from tests import counting

    name, kind = request.param
    if name in ("memcached", "pylibmc"):
        server = request.getfixturevalue("memcached_server")
        config = servers.memcached_config(server) if name == "memcached" else servers.pylibmc_config(server)
    elif name == "redis":
        config = servers.redis_config(request.getfixturevalue("redis_server"))
    else:
        config = dict(servers.LOCMEM)
    if kind == "get_many-of-a-subclass":
        # A backend that overrides get_many keeps it: read under the guard.
        config = {**config, "BACKEND": counting.BACKENDS[name]}
    elif kind == "decode-error":
        stock = config["BACKEND"].rsplit(".", 1)[1]
        config = {**config, "BACKEND": f"tests.planted.DecodeFailing{stock}"}
    elif kind == "node-down":
        config = _memcached_node_down(request.getfixturevalue("memcached_server"))
    with override_settings(CACHES={"default": config}):
        if kind == "node-down":
            from pymemcache.client.base import Client

            # Each key's node is the live one once the other is dead; the test starts with the
            # live one empty (Django's clear() would fail on the dead node).
            live = Client(("127.0.0.1", request.getfixturevalue("memcached_server").port))
            live.flush_all(noreply=False)
            live.close()
            for n in range(20):  # some key hashes to the dead node and marks it dead
                try:
                    caches["default"].get(f"cc:node-{n}")
                except OSError:
                    break
            assert caches["default"]._cache._dead_clients
        else:
            caches["default"].clear()
        if kind == "via-get_client":
            # As a redis-py or Django upgrade without the per-pool members would: the gate
            # closes (its verdict is kept) and raw reads go through get_client.
            with monkeypatch.context() as patch:
                patch.delattr(RedisCacheClient, "_get_connection_pool")
                assert fastpaths.reader_for(RedisCache, raw=True) is redis_paths.raw_read_via_get_client
        yield kind
        caches["default"].close()


@pytest.mark.parametrize(("target", "payload"), SCENARIOS)
def test_every_other_reader_never_unpickles_a_planted_payload(reader, target, payload, monkeypatch):
    path = PATHS["sync"]
    if reader == "decode-error":
        # Every read fails (counted, logged once), so every call computes and stores nothing;
        # had the read fallen back key by key through Django's get(), the pickle would run.
        _plant(path, target, payload)
        for _ in range(2):
            with record() as events:
                assert path.call() == path.expected
            events.assert_counts(path.function, error=1, stored=0, hit=0)
        assert stats()["errors"]["default"] == 2
        assert ran == []
        return
    assert _plant_and_call(path, target, payload, monkeypatch) == path.expected
    assert ran == [] and calls[path.name] == 2
    assert path.again() == path.expected
    assert calls[path.name] == 2 and ran == []


# --- counters in their own alias (VERSIONS_CACHE): two raw reads, counters first -----------------


SPLITS = [("memcached", "redis"), ("redis", "memcached")]


@pytest.fixture(params=SPLITS, ids=[f"entries-{e}-counters-{c}" for e, c in SPLITS])
def split(request: pytest.FixtureRequest) -> Iterator[None]:
    def config(name: str) -> dict[str, Any]:
        if name == "memcached":
            return servers.memcached_config(request.getfixturevalue("memcached_server"))
        return servers.redis_config(request.getfixturevalue("redis_server"))

    entries, counters = request.param
    with override_settings(
        CACHES={"default": config(entries), "versions": config(counters)},
        CACHEDCALL={"SIGN": True, "VERSIONS_CACHE": "versions"},
    ):
        for alias in ("default", "versions"):
            caches[alias].clear()
        yield
        for alias in ("default", "versions"):
            caches[alias].close()


@pytest.mark.usefixtures("split")
@pytest.mark.parametrize(("target", "payload"), SCENARIOS)
@pytest.mark.parametrize("path_name", ["sync", "async", "refresh"])
def test_with_counters_in_their_own_alias_a_planted_payload_is_a_plain_miss(
    path_name, target, payload, monkeypatch
):
    path = PATHS[path_name]
    assert _plant_and_call(path, target, payload, monkeypatch, counters="versions") == path.expected
    assert calls[path.name] == 2 and ran == []
    assert path.again() == path.expected
    assert calls[path.name] == 2 and ran == []


# --- soft=: the old value served while a planted lock says someone else refreshes -----------------


@pytest.mark.usefixtures("backend_name")
@pytest.mark.parametrize("payload", COUNTER_PAYLOADS, ids=lambda p: p.name)
def test_soft_serves_the_verified_old_value_past_a_planted_version_and_a_planted_lock(payload):
    # Only the model version differs (planted), so soft= may serve the old entry while the
    # holder of its lock refreshes it: the value served is the verified entry's, never the
    # planted bytes, and nothing computes.
    assert soft_value(1) == {"n": 1}
    planted.plant(names.key("v:" + MODEL.lower()), payload)
    planted.plant(locks.key(soft_value.key(1)), planted.LOCK_PAYLOAD)
    with record() as events:
        assert soft_value(1) == {"n": 1}
    events.assert_counts(soft_value, stale=1, miss=0, hit=0, stored=0)
    assert calls["soft"] == 1 and ran == []


# --- the payloads are real attacks ----------------------------------------------------------------


LIVE = {
    # What Django's own get() runs, per payload, backend by backend (a payload that no stock
    # read would run is in the table all the same: a refusal must not depend on it).
    "pickle": {"memcached", "pylibmc", "redis", "django-redis"},
    "pickle-as-bytes": {"redis", "django-redis"},
    "zlib-pickle": {"pylibmc"},
}


@pytest.mark.parametrize("payload", [p for p in ENTRY_PAYLOADS if p.name in LIVE], ids=lambda p: p.name)
def test_the_planted_pickles_are_ones_the_backends_own_reads_would_run(backend_name, payload):
    planted.plant("cc:planted", payload)
    try:
        caches["default"].get("cc:planted")
    except Exception:
        pass  # a client that could not decode it: then it did not run either
    assert ran == (["planted pickle executed"] if backend_name in LIVE[payload.name] else [])
    ran.clear()


# --- a counter planted in the race between a read and the add that re-seeds it -------------------


def _racing_config(name: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    # The stock backend's config, its class replaced by the racing subclass of it.
    if name in ("memcached", "pylibmc"):
        server = request.getfixturevalue("memcached_server")
        config = servers.memcached_config(server) if name == "memcached" else servers.pylibmc_config(server)
    else:
        server = request.getfixturevalue("redis_server")
        config = servers.redis_config(server) if name == "redis" else servers.django_redis_config(server)
    stock = config["BACKEND"].rsplit(".", 1)[1]
    if name == "django-redis":
        stock = "DjangoRedisCache"
    return {**config, "BACKEND": f"tests.planted.Racing{stock}"}


@pytest.mark.parametrize("payload", COUNTER_PAYLOADS, ids=lambda p: p.name)
@pytest.mark.parametrize("name", ["memcached", "pylibmc", "redis", "django-redis"])
def test_a_counter_planted_between_the_read_and_the_re_seed_is_never_unpickled_nor_stamped(
    name, payload, request
):
    model_version = names.key("v:" + MODEL.lower())
    with override_settings(CACHES={"default": _racing_config(name, request)}):
        caches["default"].clear()
        assert value(1) == {"n": 1}
        caches["default"].delete(model_version)  # evicted: the next call re-seeds it
        planted.race[model_version] = payload  # and an attacker wins the race to that add
        with record() as events:
            assert value(1) == {"n": 1}  # nothing raised, the right value
        assert not planted.race and calls["sync"] == 2
        # Not stored under a version that is not ours (nothing could be stamped)...
        events.assert_counts(value, miss=1, stored=0)
        # ...so the next call drops the planted counter, re-seeds it and stores; then hits.
        assert value(1) == {"n": 1}
        assert value(1) == {"n": 1}
        assert calls["sync"] == 3
        caches["default"].close()
    assert ran == []


@pytest.mark.usefixtures("backend_name")
@pytest.mark.parametrize("payload", COUNTER_PAYLOADS, ids=lambda p: p.name)
def test_a_bump_over_a_planted_counter_replaces_it_with_one_of_ours(payload):
    from cachedcall import bumps

    model_version = names.key("v:" + MODEL.lower())
    planted.plant(model_version, payload)
    cachedcall_bump(MODEL)  # incr cannot advance what is no integer: dropped and re-seeded
    assert not bumps.is_dirty() and stats()["bump_failures"] == {}
    from cachedcall import backend

    found = backend.read(caches["default"], "default", [model_version], raw=True)
    assert found is not None and type(found[model_version]) is int  # one of ours now
    assert value(7) == {"n": 7}
    assert value(7) == {"n": 7}  # stamped with the re-seeded counter, and a hit
    assert calls["sync"] == 1
    assert ran == []
