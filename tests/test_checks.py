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
