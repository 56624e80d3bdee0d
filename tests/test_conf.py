"""The CACHEDCALL setting and the system checks."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from cachedcall import cached
from cachedcall import conf
from cachedcall.checks import check_settings
from tests import servers


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "must be a dict"),
        ({"ENABLE": True}, r"unknown key\(s\) 'ENABLE'"),
        ({"ENABLED": "yes"}, r"\['ENABLED'\] must be True or False"),
        ({"CACHE": 3}, r"\['CACHE'\] must name an alias"),
        ({"TIMEOUT": -1}, r"CACHEDCALL\['TIMEOUT'\]: timeout must be None or a number >= 0"),
        ({"KEY_PREFIX": "has space"}, r"\['KEY_PREFIX'\] must be 1-32 characters"),
        ({"SCOPES": {"testapp.Club": "name"}}, r"\['SCOPES'\] must map"),
        ({"IGNORE_MODELS": "sessions.Session"}, r"\['IGNORE_MODELS'\] must be a list"),
    ],
)
def test_invalid_settings_raise_improperly_configured_naming_the_setting(value, message):
    with override_settings(CACHEDCALL=value), pytest.raises(ImproperlyConfigured, match=message):
        conf.get()


def test_settings_are_refreshed_when_they_change():
    before = conf.get().key_prefix
    assert before.startswith("cc")
    with override_settings(CACHEDCALL={"KEY_PREFIX": "other", "TIMEOUT": 5}):
        assert conf.get().key_prefix == "other" + before[2:] and conf.get().timeout == 5

        @cached
        def f(x):
            return x

        assert f.key(1).startswith(f"other{before[2:]}:f:")  # the test namespace is kept
    assert conf.get().key_prefix == before


def test_unknown_alias_is_reported_by_the_system_check():
    @cached(timeout=1, cache="missing-alias")
    def f(x):
        return x

    ids = {(m.id, "missing-alias" in m.msg) for m in check_settings()}
    assert ("cachedcall.E001", True) in ids
    with override_settings(CACHEDCALL={"CACHE": "nope"}):
        assert any(m.id == "cachedcall.E001" and "CACHEDCALL['CACHE']" in m.msg for m in check_settings())
    with override_settings(CACHEDCALL={"bad": 1}):
        assert [m.id for m in check_settings()] == ["cachedcall.E002"]
    from cachedcall.function import registry

    registry.remove(f._self_function_cache)


@pytest.mark.usefixtures("no_other_functions")
def test_memcached_without_timeouts_or_with_silent_retries_is_warned():
    server = servers.memcached(11)  # never started: the check reads settings only
    bare = {"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache", "LOCATION": server.location}
    with override_settings(CACHES={"default": bare}):
        assert sorted(m.id for m in check_settings()) == ["cachedcall.W001", "cachedcall.W002"]
    with override_settings(CACHES={"default": servers.memcached_config(server)}):
        assert check_settings() == []


@pytest.mark.usefixtures("no_other_functions")
def test_process_local_counters_for_entries_in_a_shared_backend_are_an_error():
    shared = servers.memcached_config(servers.memcached(11))  # never started: settings only
    caches_ = {"default": shared, "local": dict(servers.LOCMEM)}
    with override_settings(CACHES=caches_, CACHEDCALL={"VERSIONS_CACHE": "local"}):
        errors = [m for m in check_settings() if m.id == "cachedcall.E004"]
        assert len(errors) == 1 and "'default'" in errors[0].msg and "Remove VERSIONS_CACHE" in errors[0].hint
    with override_settings(CACHES=caches_):  # counters beside the entries: nothing to report
        assert not [m for m in check_settings() if m.id == "cachedcall.E004"]
    with override_settings(
        CACHES={"default": dict(servers.LOCMEM)}, CACHEDCALL={"VERSIONS_CACHE": "default"}
    ):
        assert not [m for m in check_settings() if m.id == "cachedcall.E004"]  # all in one process


def test_a_bump_reaches_every_alias_that_holds_entries():
    from cachedcall import conf

    caches_ = {"default": dict(servers.LOCMEM), "mc": dict(servers.LOCMEM, LOCATION="mc")}
    with override_settings(CACHES=caches_):
        assert conf.get().counter_aliases == ("default", "mc")
        assert conf.get().counters_for("mc") == "mc"
    with override_settings(CACHES=caches_, CACHEDCALL={"VERSIONS_CACHE": "default"}):
        assert conf.get().counter_aliases == ("default",)
        assert conf.get().counters_for("mc") == "default"


@pytest.mark.usefixtures("no_other_functions")
def test_redis_without_socket_timeouts_is_warned():
    server = servers.redis(12)  # never started: the check reads settings only
    bare = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"redis://{server.location}/0",
    }
    with override_settings(CACHES={"default": bare}):
        assert [m.id for m in check_settings()] == ["cachedcall.W004"]
    with override_settings(CACHES={"default": servers.redis_config(server)}):
        assert check_settings() == []
