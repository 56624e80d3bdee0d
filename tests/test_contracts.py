"""The private members of Django, pymemcache, pylibmc and django-redis that the fast paths
use still exist; a missing one turns its fast path off, with one log line, for the public API.

The first test is the contract: it fails on the upgrade that removes a gated member, one
case per member, named ``<fast path>-<class>.<member>``.
"""

from __future__ import annotations

import logging
import pickle

import django
import django_redis
import pylibmc
import pymemcache
import pytest
from django.core.cache import caches
from django.core.cache.backends.base import default_key_func
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.memcached import PyLibMCCache
from django.core.cache.backends.memcached import PyMemcacheCache
from django.core.cache.backends.redis import RedisCache
from django.core.cache.backends.redis import RedisCacheClient
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from django_redis.cache import RedisCache as DjangoRedisCache
from django_redis.client import DefaultClient
from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient

from cachedcall import backend
from cachedcall import fastpaths
from cachedcall import health
from cachedcall.fastpaths import django_redis as django_redis_paths
from cachedcall.fastpaths import locmem
from cachedcall.fastpaths import pylibmc as pylibmc_paths
from cachedcall.fastpaths import pymemcache as pymemcache_paths
from cachedcall.fastpaths import redis as redis_paths
from tests import counting
from tests import servers
from tests.planted import Planted
from tests.planted import ran

ENTRIES = [
    (module, path, owner, name)
    for module in (locmem, pymemcache_paths, redis_paths, pylibmc_paths, django_redis_paths)
    for path, members in module.REQUIRES.items()
    for owner, name in members
]


@pytest.fixture(autouse=True)
def _fresh_gates(monkeypatch):
    """Every test selects its fast paths from scratch, and leaves no verdict behind."""
    fastpaths.forget()
    monkeypatch.setattr(backend, "_readers", {})
    monkeypatch.setattr(backend, "_writers", {})
    ran.clear()
    yield
    fastpaths.forget()


# Py_TPFLAGS_HEAPTYPE: a class made by a class statement, whose attributes can be deleted.
_HEAPTYPE = 1 << 9


class _Gone:
    """Where a member of an extension type was (pylibmc's C ``client``, whose attributes
    cannot be deleted): looking it up on the subclass finds nothing."""

    def __get__(self, obj, owner=None):
        raise AttributeError


def _remove(patch: pytest.MonkeyPatch, owner: type, name: str) -> None:
    """Make ``owner`` and its instances lack ``name``, as an upgrade that drops it would."""
    defined = [klass for klass in owner.__mro__ if name in vars(klass)]
    for klass in defined:
        if klass.__flags__ & _HEAPTYPE:
            patch.delattr(klass, name)
        else:
            patch.setattr(owner, name, _Gone())
    if not defined:  # an attribute that __init__ sets
        init = owner.__init__

        def without(self, *args, **kwargs):
            init(self, *args, **kwargs)
            vars(self).pop(name, None)

        patch.setattr(owner, "__init__", without)


def _gate_lines(log: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in log.records if r.name == "cachedcall" and r.levelno == logging.INFO]


# --- the contract -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "path", "owner", "name"),
    ENTRIES,
    ids=[f"{path}-{owner.__name__}.{name}" for _, path, owner, name in ENTRIES],
)
def test_every_gated_member_exists(module, path, owner, name):
    assert fastpaths.present(owner, name, module.SPECIMENS), (
        f"{owner.__module__}.{owner.__qualname__}.{name} is gone from the installed libraries, so "
        f"the {path} fast path is off: adapt {module.__name__} to the new version and update "
        "the versions in cachedcall/fastpaths/__init__.py."
    )


def test_every_fast_path_is_open_on_the_installed_versions(cachedcall_log):
    assert fastpaths.reader_for(LocMemCache) is locmem.read
    assert fastpaths.reader_for(LocMemCache, raw=True) is locmem.read
    assert fastpaths.writer_for(LocMemCache) is locmem.write
    assert fastpaths.reader_for(PyMemcacheCache) is pymemcache_paths.read
    assert fastpaths.reader_for(PyMemcacheCache, raw=True) is pymemcache_paths.raw_read
    assert fastpaths.writer_for(PyMemcacheCache) is pymemcache_paths.write
    assert fastpaths.reader_for(RedisCache) is redis_paths.read
    assert fastpaths.reader_for(RedisCache, raw=True) is redis_paths.raw_read
    assert fastpaths.writer_for(RedisCache, raw=True) is redis_paths.raw_write
    assert fastpaths.writer_for(RedisCache) is None  # Django's set is as fast
    assert fastpaths.reader_for(PyLibMCCache) is pylibmc_paths.read
    assert fastpaths.reader_for(PyLibMCCache, raw=True) is pylibmc_paths.raw_read
    assert fastpaths.writer_for(PyLibMCCache) is None
    assert fastpaths.writer_for(PyLibMCCache, raw=True) is None  # pylibmc stores bytes as they are
    assert fastpaths.reader_for(DjangoRedisCache) is None  # its get_many is one MGET already
    assert fastpaths.reader_for(DjangoRedisCache, raw=True) is django_redis_paths.raw_read
    assert fastpaths.writer_for(DjangoRedisCache) is None
    assert fastpaths.writer_for(DjangoRedisCache, raw=True) is django_redis_paths.raw_write
    assert _gate_lines(cachedcall_log) == []


# What the gates check is names; these are the behaviours behind the names that the fast
# paths rely on, which an upgrade could change without a rename.


def test_default_key_func_is_prefix_version_key():
    assert default_key_func("cc:k", "pre", 3) == "pre:3:cc:k"  # locmem.read builds it inline


def test_clients_get_their_serde_from_where_the_guard_puts_it():
    sentinel = object()
    hash_client = HashClient([], use_pooling=True)
    hash_client.default_kwargs["serde"] = sentinel
    hash_client.add_server(("127.0.0.1", 1))  # no connection before the first command
    (client,) = hash_client.clients.values()
    assert client.serde is sentinel
    assert isinstance(client, PooledClient)
    assert client.client_pool.get().serde is sentinel  # PooledClient hands it on


def test_pylibmc_takes_a_subclass_deserialize_in_place_of_its_own():
    # pylibmc decides at construction whether the class overrides deserialize; the guard
    # relies on a subclass's being called for every value read (no server needed for that:
    # deserialize is the hook, and the server tests below read through it).
    client = pylibmc_paths._GuardedClient(["127.0.0.1:1"])
    assert client.deserialize(b"7", 2) == 7  # outside a raw read: pylibmc's own
    assert client.deserialize(pickle.dumps({"a": 1}), 1) == {"a": 1}
    client._cachedcall_raw = True
    assert client.deserialize(pickle.dumps(Planted()), 1) is fastpaths.REFUSED
    assert client.deserialize(b"bytes", 0) == b"bytes"
    assert client.deserialize(b"7", 4) == 7
    assert client.deserialize(b"no int", 2) is fastpaths.REFUSED
    assert client.deserialize(b"text", 16) is fastpaths.REFUSED
    assert ran == []


def test_djangos_pylibmc_client_is_a_cached_property_the_instance_can_hold():
    cache = PyLibMCCache("127.0.0.1:1", {})
    assert cache._class is pylibmc.Client
    assert cache.client_servers == ["127.0.0.1:1"]
    held = object()
    cache.__dict__["_cache"] = held
    assert cache._cache is held


def test_django_redis_get_client_is_what_its_get_many_reads_through():
    # The raw paths read and write where DefaultClient.get_many and set do: the redis.Redis
    # of get_client(write=...). DefaultClient stores ints unpickled (so that INCRBY works).
    cache = DjangoRedisCache("redis://127.0.0.1:1/0", {})
    assert type(cache.client) is DefaultClient
    assert cache.client.encode(7) == 7
    assert pickle.loads(cache.client.encode(b"x")) == b"x"  # bytes are pickled: raw writes needed
    assert django_redis_paths.stores_like_default_client(DefaultClient)


def test_redis_cache_client_makes_plain_redis_clients():
    import redis

    client = RedisCacheClient(["redis://127.0.0.1:1/0"])
    assert client._client is redis.Redis
    assert client._serializer.loads(b"7") == 7


# --- the gates ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "path", "owner", "name"),
    ENTRIES,
    ids=[f"{path}-{owner.__name__}.{name}" for _, path, owner, name in ENTRIES],
)
def test_a_removed_member_is_found_missing(module, path, owner, name, monkeypatch):
    _remove(monkeypatch, owner, name)
    assert fastpaths.missing(module.REQUIRES[path], module.SPECIMENS) == [
        f"{owner.__module__}.{owner.__qualname__}.{name}"
    ]


def test_a_specimen_is_built_once_per_class():
    built = []

    def build():
        built.append(1)
        return HashClient([])

    specimens = {HashClient: build}
    assert fastpaths.present(HashClient, "clients", specimens)
    assert fastpaths.present(HashClient, "_failed_clients", specimens)
    assert not fastpaths.present(HashClient, "_no_such_member", specimens)
    assert built == [1]


def test_a_class_that_cannot_be_built_as_before_has_no_instance_members():
    def build():
        raise TypeError("__init__() got an unexpected keyword argument")

    assert not fastpaths.present(HashClient, "clients", {HashClient: build})
    assert fastpaths.present(HashClient, "_mark_failed_server", {HashClient: build})


# Which member goes per backend: one that the fast reader uses. Django's own code needs it
# too (an upgrade that drops it from where the gate looks has moved it, and Django's own
# get_many along with it), so it is back before the read: what is under test is that the
# choice made without it is Django's public API, and that that reads the real server right.
# django-redis has no fast reader to lose: it reads through its own get_many always, and
# says nothing about it.
REMOVED = {
    "locmem": (LocMemCache, "_delete", django.__version__),
    "memcached": (HashClient, "_mark_failed_server", pymemcache.__version__),
    "redis": (RedisCacheClient, "_get_connection_pool", django.__version__),
    "pylibmc": (PyLibMCCache, "_cache", django.__version__),
    "django-redis": None,
}


def test_a_missing_member_falls_back_to_djangos_get_many(backend_name, cachedcall_log, monkeypatch):
    cache = caches["default"]
    cache.set("cc:a", {"a": [1, 2]}, 60)
    cache.set("cc:b", 7, None)
    cache.set("cc:none", None, 60)
    removed = REMOVED[backend_name]
    with monkeypatch.context() as patch:
        if removed is not None:
            _remove(patch, removed[0], removed[1])
        assert fastpaths.reader_for(type(cache)) is None
    asked = []
    get_many = cache.get_many
    monkeypatch.setattr(cache, "get_many", lambda keys: asked.append(list(keys)) or get_many(keys))
    keys = ["cc:a", "cc:b", "cc:none", "cc:missing"]
    assert backend.read(cache, "default", keys) == {"cc:a": {"a": [1, 2]}, "cc:b": 7, "cc:none": None}
    assert asked == [keys]
    assert fastpaths.reader_for(type(cache)) is None  # memoized: no second line
    if removed is None:
        assert _gate_lines(cachedcall_log) == []
        return
    owner, name, version = removed
    (line,) = _gate_lines(cachedcall_log)
    assert f"{owner.__qualname__}.{name}" in line and version in line


# --- signed (raw) reads without their members -------------------------------------------------


@pytest.fixture
def memcached_cache(memcached_server):
    with override_settings(CACHES={"default": servers.memcached_config(memcached_server)}):
        cache = caches["default"]
        cache.clear()
        cache.set("cc:planted", Planted(), 60)
        cache.set("cc:bytes", b"ccS1 signed", 60)
        cache.set("cc:n", 7, 60)
        yield cache
        cache.close()


@pytest.fixture
def redis_cache(redis_server):
    with override_settings(CACHES={"default": servers.redis_config(redis_server)}):
        cache = caches["default"]
        cache.clear()
        cache.set("cc:planted", Planted(), 60)
        cache.set("cc:n", 7, 60)
        yield cache
        cache.close()


KEYS = ["cc:planted", "cc:bytes", "cc:n", "cc:missing"]


def test_memcached_without_the_fast_read_members_reads_raw_through_djangos_get_many_guarded(
    memcached_cache, cachedcall_log, monkeypatch
):
    with monkeypatch.context() as patch:
        _remove(patch, HashClient, "_mark_failed_server")
        assert fastpaths.reader_for(PyMemcacheCache, raw=True) is pymemcache_paths.guarded_read
    found = backend.read(memcached_cache, "default", KEYS, raw=True)
    assert found == {"cc:planted": fastpaths.REFUSED, "cc:bytes": b"ccS1 signed", "cc:n": 7}
    assert ran == []
    (line,) = _gate_lines(cachedcall_log)
    assert "pymemcache.read" in line and "_mark_failed_server" in line


def test_memcached_without_the_guard_members_refuses_raw_reads(memcached_cache, cachedcall_log, monkeypatch):
    # The fixture's writes made the HashClient before its __init__ changes.
    with monkeypatch.context() as patch:
        _remove(patch, HashClient, "default_kwargs")
        reader = fastpaths.reader_for(PyMemcacheCache, raw=True)
    with pytest.raises(ImproperlyConfigured, match=r"HashClient\.default_kwargs"):
        reader(memcached_cache, KEYS)
    assert backend.read(memcached_cache, "default", KEYS, raw=True) is None
    (warning,) = [r.getMessage() for r in cachedcall_log.records if r.levelno == logging.WARNING]
    assert "HashClient.default_kwargs" in warning and "CACHEDCALL['SIGN']" in warning
    assert ran == []
    assert health.errors["default"] == 1
    (line,) = _gate_lines(cachedcall_log)
    assert "pymemcache.raw_guard" in line and f"pymemcache {pymemcache.__version__}" in line


def _stored(server, cache, key):
    import redis

    client = redis.Redis.from_url(servers.redis_config(server)["LOCATION"])
    try:
        return client.get(cache.make_key(key))
    finally:
        client.close()


def test_redis_without_the_pool_members_reads_and_writes_raw_through_get_client(
    redis_server, redis_cache, cachedcall_log, monkeypatch
):
    with monkeypatch.context() as patch:
        _remove(patch, RedisCacheClient, "_get_connection_pool")
        assert fastpaths.reader_for(RedisCache, raw=True) is redis_paths.raw_read_via_get_client
        assert fastpaths.writer_for(RedisCache, raw=True) is redis_paths.raw_write_via_get_client
    assert backend.write(redis_cache, "default", "cc:bytes", b"ccS1 signed", 60, raw=True)
    assert _stored(redis_server, redis_cache, "cc:bytes") == b"ccS1 signed"  # not pickled
    found = backend.read(redis_cache, "default", KEYS, raw=True)
    assert found == {
        "cc:planted": pickle.dumps(Planted(), pickle.HIGHEST_PROTOCOL),  # as stored, not loaded
        "cc:bytes": b"ccS1 signed",
        "cc:n": 7,
    }
    assert ran == []
    (line,) = _gate_lines(cachedcall_log)  # one fast path, for raw reads and writes
    assert "redis.raw " in line and "_get_connection_pool" in line


def test_redis_without_any_raw_route_refuses_raw_reads_and_writes(redis_cache, cachedcall_log, monkeypatch):
    with monkeypatch.context() as patch:
        _remove(patch, RedisCacheClient, "_get_connection_pool")
        _remove(patch, RedisCacheClient, "get_client")
        reader = fastpaths.reader_for(RedisCache, raw=True)
        writer = fastpaths.writer_for(RedisCache, raw=True)
    with pytest.raises(ImproperlyConfigured, match=r"RedisCacheClient\.get_client"):
        reader(redis_cache, KEYS)
    with pytest.raises(ImproperlyConfigured, match="to store signed bytes in Redis"):
        writer(redis_cache, "cc:bytes", b"ccS1 signed", 60)
    assert backend.read(redis_cache, "default", KEYS, raw=True) is None
    (warning,) = [r.getMessage() for r in cachedcall_log.records if r.levelno == logging.WARNING]
    assert "RedisCacheClient.get_client to read Redis's stored bytes" in warning
    assert not backend.write(redis_cache, "default", "cc:bytes", b"ccS1 signed", 60, raw=True)
    assert redis_cache.get("cc:bytes") is None
    assert ran == []
    assert [line.split()[2] for line in _gate_lines(cachedcall_log)] == [
        "redis.raw",
        "redis.raw_via_get_client",
    ]


# --- pylibmc and django-redis: the raw paths on a real server ------------------------------


@pytest.fixture
def pylibmc_cache(memcached_server):
    with override_settings(CACHES={"default": servers.pylibmc_config(memcached_server)}):
        cache = caches["default"]
        cache.clear()
        cache.set("cc:planted", Planted(), 60)  # pylibmc stores it with its pickle flag
        cache.set("cc:bytes", b"ccS1 signed", 60)
        cache.set("cc:n", 7, 60)
        yield cache
        cache.close()


@pytest.fixture
def django_redis_cache(redis_server):
    with override_settings(CACHES={"default": servers.django_redis_config(redis_server)}):
        cache = caches["default"]
        cache.clear()
        cache.set("cc:planted", Planted(), 60)
        cache.set("cc:n", 7, 60)
        yield cache
        cache.close()


def test_pylibmc_raw_reads_never_unpickle_and_the_same_client_reads_as_before(pylibmc_cache):
    reader = fastpaths.reader_for(PyLibMCCache, raw=True)
    assert reader(pylibmc_cache, KEYS) == {
        "cc:planted": fastpaths.REFUSED,
        "cc:bytes": b"ccS1 signed",
        "cc:n": 7,
    }
    assert ran == []
    # One client for everything (the guarded one), pylibmc's own decoding outside raw reads.
    assert type(pylibmc_cache._cache) is pylibmc_paths._GuardedClient
    pylibmc_cache.set("cc:dict", {"a": 1}, 60)
    assert pylibmc_cache.get_many(["cc:dict", "cc:n"]) == {"cc:dict": {"a": 1}, "cc:n": 7}
    assert pylibmc_cache.incr("cc:n") == 8


def test_pylibmc_subclasses_that_override_get_many_read_raw_under_the_guard(memcached_server):
    config = {**servers.pylibmc_config(memcached_server), "BACKEND": counting.BACKENDS["pylibmc"]}
    with override_settings(CACHES={"default": config}):
        cache = caches["default"]
        cache.set("cc:planted", Planted(), 60)
        assert fastpaths.reader_for(type(cache), raw=True) is pylibmc_paths.guarded_read
        assert backend.read(cache, "default", ["cc:planted"], raw=True) == {"cc:planted": fastpaths.REFUSED}
        assert ran == []


def test_pylibmc_without_the_guard_members_refuses_raw_reads(pylibmc_cache, cachedcall_log, monkeypatch):
    with monkeypatch.context() as patch:
        _remove(patch, pylibmc.Client, "deserialize")
        reader = fastpaths.reader_for(PyLibMCCache, raw=True)
    with pytest.raises(ImproperlyConfigured, match=r"pylibmc\.client\.Client\.deserialize"):
        reader(pylibmc_cache, KEYS)
    assert backend.read(pylibmc_cache, "default", KEYS, raw=True) is None
    assert ran == []
    (line,) = _gate_lines(cachedcall_log)
    assert "pylibmc.raw_guard" in line and f"pylibmc {pylibmc.__version__}" in line


def test_pylibmc_with_another_client_class_refuses_raw_reads(pylibmc_cache):
    class Other(pylibmc.Client):
        pass

    pylibmc_cache._class = Other
    pylibmc_cache.__dict__.pop("_cache", None)
    with pytest.raises(ImproperlyConfigured, match="cannot guard the memcached client class"):
        pylibmc_paths.raw_read(pylibmc_cache, KEYS)
    assert ran == []


def test_django_redis_raw_reads_and_writes_go_around_its_pickling(redis_server, django_redis_cache):
    assert backend.write(django_redis_cache, "default", "cc:bytes", b"ccS1 signed", 60, raw=True)
    assert _stored(redis_server, django_redis_cache, "cc:bytes") == b"ccS1 signed"  # not pickled
    found = backend.read(django_redis_cache, "default", KEYS, raw=True)
    planted = _stored(redis_server, django_redis_cache, "cc:planted")
    assert planted.startswith(b"\x80")  # a pickle (of django-redis's protocol)
    assert found == {"cc:planted": planted, "cc:bytes": b"ccS1 signed", "cc:n": 7}  # as stored, not loaded
    assert ran == []
    # Django's timeouts, as django-redis's own set reads them: 0 deletes, None is forever.
    assert backend.write(django_redis_cache, "default", "cc:bytes", b"ccS1 x", 0, raw=True)
    assert _stored(redis_server, django_redis_cache, "cc:bytes") is None
    assert backend.write(django_redis_cache, "default", "cc:bytes", b"ccS1 x", None, raw=True)
    assert django_redis_cache.ttl("cc:bytes") is None


def test_django_redis_with_a_client_class_that_stores_otherwise_refuses_raw_access(redis_server):
    config = servers.django_redis_config(redis_server)
    config["OPTIONS"]["CLIENT_CLASS"] = "django_redis.client.HerdClient"
    with override_settings(CACHES={"default": config}):
        cache = caches["default"]
        with pytest.raises(ImproperlyConfigured, match="HerdClient"):
            fastpaths.reader_for(type(cache), raw=True)(cache, KEYS)
        with pytest.raises(ImproperlyConfigured, match="HerdClient"):
            fastpaths.writer_for(type(cache), raw=True)(cache, "cc:bytes", b"ccS1", 60)
        assert backend.read(cache, "default", KEYS, raw=True) is None


def test_django_redis_without_its_raw_client_refuses_raw_access(
    django_redis_cache, cachedcall_log, monkeypatch
):
    with monkeypatch.context() as patch:
        _remove(patch, DefaultClient, "get_client")
        reader = fastpaths.reader_for(DjangoRedisCache, raw=True)
        writer = fastpaths.writer_for(DjangoRedisCache, raw=True)
    with pytest.raises(ImproperlyConfigured, match=r"DefaultClient\.get_client to read Redis's stored bytes"):
        reader(django_redis_cache, KEYS)
    with pytest.raises(ImproperlyConfigured, match="to store signed bytes in Redis"):
        writer(django_redis_cache, "cc:bytes", b"ccS1 signed", 60)
    assert ran == []
    (line,) = _gate_lines(cachedcall_log)
    assert "django_redis.raw" in line and f"django_redis {django_redis.__version__}" in line


@pytest.mark.parametrize(
    "backend_path",
    ["django.core.cache.backends.db.DatabaseCache", "django.core.cache.backends.filebased.FileBasedCache"],
)
def test_backends_without_a_raw_read_refuse_signed_reads(backend_path):
    from django.utils.module_loading import import_string

    reader = fastpaths.reader_for(import_string(backend_path), raw=True)
    with pytest.raises(ImproperlyConfigured, match="unpickles what it reads"):
        reader(None, KEYS)
