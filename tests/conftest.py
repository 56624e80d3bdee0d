from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.test import override_settings

from cachedcall import backend
from cachedcall import bumps
from cachedcall import switch
from tests import counting
from tests import servers


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[servers.Server]:
    server = servers.memcached().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[servers.Server]:
    server = servers.redis().start()
    yield server
    server.stop()


def _config(name: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if name == "locmem":
        return dict(servers.LOCMEM)
    if name == "memcached":
        return servers.memcached_config(request.getfixturevalue("memcached_server"))
    return servers.redis_config(request.getfixturevalue("redis_server"))


@pytest.fixture(params=["locmem", "memcached", "redis"])
def backend_name(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once per real backend, with that backend as the 'default' alias."""
    config = _config(request.param, request)
    with override_settings(CACHES={"default": config, "other": dict(servers.LOCMEM, LOCATION="other")}):
        caches["default"].clear()
        caches["other"].clear()
        yield request.param
        caches["default"].close()


@pytest.fixture
def counted(backend_name: str, request: pytest.FixtureRequest) -> Iterator[counting.Counter[str]]:
    """The same backend through a subclass that counts the calls made to it (round trips).

    The subclasses override get_many, so cachedcall uses Django's own get_many with them
    rather than its faster readers; tests/test_fastpaths.py covers those.
    """
    config = {**_config(backend_name, request), "BACKEND": counting.BACKENDS[backend_name]}
    with override_settings(CACHES={"default": config, "other": dict(servers.LOCMEM, LOCATION="other")}):
        counting.calls.clear()
        yield counting.calls
        caches["default"].close()


@pytest.fixture(autouse=True)
def _clean_state() -> Iterator[None]:
    """Every test starts with the switch following settings and no remembered failures."""
    saved = switch._forced
    backend.errors.clear()
    backend._down.clear()
    bumps.dirty.clear()
    caches["default"].clear()
    yield
    switch._set_forced(saved)
    bumps.dirty.clear()


@pytest.fixture
def cachedcall_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="cachedcall")
    return caplog
