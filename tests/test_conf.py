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
    assert conf.get().key_prefix == "cc"
    with override_settings(CACHEDCALL={"KEY_PREFIX": "other", "TIMEOUT": 5}):
        assert conf.get().key_prefix == "other" and conf.get().timeout == 5

        @cached
        def f(x):
            return x

        assert f.key(1).startswith("other:f:")
    assert conf.get().key_prefix == "cc"


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


def test_memcached_without_timeouts_or_with_silent_retries_is_warned():
    server = servers.memcached(11)  # never started: the check reads settings only
    bare = {"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache", "LOCATION": server.location}
    with override_settings(CACHES={"default": bare}):
        assert sorted(m.id for m in check_settings()) == ["cachedcall.W001", "cachedcall.W002"]
    with override_settings(CACHES={"default": servers.memcached_config(server)}):
        assert check_settings() == []
