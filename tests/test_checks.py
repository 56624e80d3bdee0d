"""System checks about which backends cachedcall's counters and signed entries may live in:
``cachedcall.E005`` (counters in a backend whose incr loses bumps) and ``E003`` (signing
on a backend that would unpickle first). tests/test_backends.py shows the lost bumps."""

from __future__ import annotations

import pytest
from django.core.cache.backends.db import DatabaseCache
from django.test import override_settings

from cachedcall.checks import check_settings
from tests import servers

DATABASE = {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "cachedcall_counters"}
FILES = {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": "/tmp/cachedcall-x"}
SUBCLASS = {"BACKEND": "tests.test_checks.OurDatabaseCache", "LOCATION": "cachedcall_counters"}
REDIS = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
# A server never started: a location is all the checks look at.
NOWHERE = servers.Server("unstarted", [], port=1)
SHARED = [servers.memcached_config, servers.pylibmc_config, servers.redis_config, servers.django_redis_config]


class OurDatabaseCache(DatabaseCache):
    """A project's own DatabaseCache: its incr is still get() then set()."""


def _messages(id_, **settings):
    with override_settings(**settings):
        return [m for m in check_settings() if m.id == id_]


@pytest.mark.parametrize("config", [DATABASE, FILES, SUBCLASS], ids=["database", "files", "subclass"])
def test_counters_beside_entries_in_a_database_or_file_cache_are_an_error(config):
    (error,) = _messages("cachedcall.E005", CACHES={"default": config})
    assert "'default'" in error.msg and config["BACKEND"] in error.msg
    assert "get() then a set()" in error.msg
    assert "CACHEDCALL['VERSIONS_CACHE']" in error.hint and "memcached or Redis" in error.hint


def test_a_versions_cache_in_a_database_cache_is_an_error_naming_it():
    (error,) = _messages(
        "cachedcall.E005",
        CACHES={"default": REDIS, "counters": FILES},
        CACHEDCALL={"VERSIONS_CACHE": "counters"},
    )
    assert "'counters'" in error.msg and "'default'" not in error.msg


def test_entries_in_a_database_cache_with_counters_in_redis_are_fine():
    assert (
        _messages(
            "cachedcall.E005", CACHES={"default": DATABASE, "v": REDIS}, CACHEDCALL={"VERSIONS_CACHE": "v"}
        )
        == []
    )


def test_counters_in_memcached_redis_or_locmem_are_fine():
    for config in (*(make(NOWHERE) for make in SHARED), dict(servers.LOCMEM)):
        assert _messages("cachedcall.E005", CACHES={"default": config}) == [], config["BACKEND"]


@pytest.mark.parametrize("make", SHARED)
def test_signing_is_accepted_on_every_shared_backend_cachedcall_reads_raw(make):
    config = make(NOWHERE)
    assert _messages("cachedcall.E003", CACHES={"default": config}, CACHEDCALL={"SIGN": True}) == []


@pytest.mark.parametrize("client", ["DefaultClient", "SentinelClient"])
def test_signing_on_django_redis_is_accepted_with_the_client_classes_that_store_as_default(client):
    config = servers.django_redis_config(NOWHERE)
    config["OPTIONS"]["CLIENT_CLASS"] = f"django_redis.client.{client}"
    assert _messages("cachedcall.E003", CACHES={"default": config}, CACHEDCALL={"SIGN": True}) == []


@pytest.mark.parametrize("client", ["HerdClient", "ShardClient"])
def test_signing_on_django_redis_with_a_client_that_stores_otherwise_is_an_error_saying_why(client):
    config = servers.django_redis_config(NOWHERE)
    config["OPTIONS"]["CLIENT_CLASS"] = f"django_redis.client.{client}"
    (error,) = _messages("cachedcall.E003", CACHES={"default": config}, CACHEDCALL={"SIGN": True})
    assert client in error.msg and "unpickles them before a signature can be checked" in error.msg
    assert "DefaultClient" in error.hint


# W001 / W002 / W004: client timeouts, and clients that hide an outage, per backend. Each
# backend with the options tests/servers.py recommends passes, and without them warns.
_TIMEOUT_IDS = {"cachedcall.W001", "cachedcall.W002", "cachedcall.W004"}


def _messages_any(**settings):
    with override_settings(**settings):
        return [m for m in check_settings() if m.id in _TIMEOUT_IDS]


@pytest.mark.parametrize("make", SHARED, ids=["pymemcache", "pylibmc", "redis", "django-redis"])
def test_the_recommended_client_options_pass_the_timeout_checks(make):
    assert _messages_any(CACHES={"default": make(NOWHERE)}) == []


def test_django_redis_without_socket_timeouts_warns_w004_in_its_own_spelling():
    config = servers.django_redis_config(NOWHERE)
    config["OPTIONS"] = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}  # Django's spelling
    (warning,) = _messages_any(CACHES={"default": config})
    assert warning.id == "cachedcall.W004" and "'default'" in warning.msg
    assert "SOCKET_CONNECT_TIMEOUT" in warning.hint


def test_django_redis_ignores_a_zero_timeout_and_takes_the_pool_kwargs():
    zero = servers.django_redis_config(NOWHERE)
    zero["OPTIONS"]["SOCKET_TIMEOUT"] = 0
    assert [m.id for m in _messages_any(CACHES={"default": zero})] == ["cachedcall.W004"]
    pool = servers.django_redis_config(NOWHERE)
    pool["OPTIONS"] = {"CONNECTION_POOL_KWARGS": {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}}
    assert _messages_any(CACHES={"default": pool}) == []


def test_django_redis_ignoring_exceptions_warns_w002():
    config = servers.django_redis_config(NOWHERE)
    config["OPTIONS"]["IGNORE_EXCEPTIONS"] = True
    (warning,) = _messages_any(CACHES={"default": config})
    assert warning.id == "cachedcall.W002" and "IGNORE_EXCEPTIONS" in warning.msg
    (from_settings,) = _messages_any(
        CACHES={"default": servers.django_redis_config(NOWHERE)}, DJANGO_REDIS_IGNORE_EXCEPTIONS=True
    )
    assert from_settings.id == "cachedcall.W002"


def test_pylibmc_without_timeout_behaviors_warns_w001():
    config = servers.pylibmc_config(NOWHERE)
    del config["OPTIONS"]["behaviors"]["receive_timeout"]
    (warning,) = _messages_any(CACHES={"default": config})
    assert warning.id == "cachedcall.W001" and "pylibmc alias 'default'" in warning.msg
    assert "'behaviors'" in warning.hint and "receive_timeout" in warning.hint


def test_pylibmc_timeouts_outside_behaviors_warn_w001_saying_where_they_belong():
    config = servers.pylibmc_config(NOWHERE)
    config["OPTIONS"] = dict(servers.PYLIBMC_BEHAVIORS)  # pylibmc.Client would refuse these
    (warning,) = _messages_any(CACHES={"default": config})
    assert warning.id == "cachedcall.W001"
    assert "connect_timeout, receive_timeout, send_timeout must be in OPTIONS['behaviors']" in warning.msg


def test_a_subclass_of_a_backend_is_checked_as_its_backend():
    config = {**servers.memcached_config(NOWHERE), "BACKEND": "tests.counting.CountingPyMemcacheCache"}
    config["OPTIONS"] = {"retry_attempts": 0}
    assert [m.id for m in _messages_any(CACHES={"default": config})] == ["cachedcall.W001"]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"},
            ["cachedcall.W004"],
        ),
        (
            {
                **servers.redis_config(NOWHERE),
                "OPTIONS": {"socket_timeout": None, "socket_connect_timeout": 0.5},
            },
            ["cachedcall.W004"],
        ),
        (
            {"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache", "LOCATION": NOWHERE.location},
            ["cachedcall.W001", "cachedcall.W002"],
        ),
        (
            {"BACKEND": "django.core.cache.backends.memcached.PyLibMCCache", "LOCATION": NOWHERE.location},
            ["cachedcall.W001"],
        ),
        (
            {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"},
            ["cachedcall.W004"],
        ),
    ],
    ids=["redis", "redis-none", "pymemcache", "pylibmc", "django-redis"],
)
def test_each_backend_without_options_warns(config, expected):
    assert sorted(m.id for m in _messages_any(CACHES={"default": config})) == expected
