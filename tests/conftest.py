from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.test import override_settings

from cachedcall import switch
from cachedcall.testing import forget_process_state
from tests import counting
from tests import servers
from tests.testapp.models import Club
from tests.testapp.models import ClubClass


@pytest.fixture(autouse=True)
def _clear_calls(request: pytest.FixtureRequest) -> None:
    """Test modules count their functions' computations in a module-level ``calls``
    Counter; every test starts it from zero."""
    calls = getattr(request.module, "calls", None)
    if isinstance(calls, Counter):
        calls.clear()


@pytest.fixture
def clubs() -> tuple[Club, Club]:
    """Two clubs with a class each (for tests that have database access)."""
    chess = Club.objects.create(name="chess")
    go = Club.objects.create(name="go")
    ClubClass.objects.create(club=chess, name="openings")
    ClubClass.objects.create(club=go, name="joseki")
    return chess, go


@pytest.fixture
def memcached() -> Iterator[Callable[[int], list[servers.Server]]]:
    """``memcached(n)`` starts n memcached servers only this test uses (it may kill them);
    they are stopped after the test."""
    started: list[servers.Server] = []

    def start(n: int = 1) -> list[servers.Server]:
        new = [servers.memcached().start() for _ in range(n)]
        started.extend(new)
        return new

    yield start
    for server in started:
        server.stop()


@pytest.fixture(params=["gate-open", "gate-closed"])
def commit_gate(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with cachedcall.oncommit's gate on Django's run_on_commit open (the
    installed Django, as probed) and closed (bumps through the public on_commit() alone)."""
    from django.db import connections

    from cachedcall import oncommit

    if request.param == "gate-closed":
        monkeypatch.setitem(oncommit._gates, type(connections["default"]), False)
    return str(request.param)


@pytest.fixture
def no_other_functions() -> Iterator[None]:
    """The registry of decorated functions without the suite's own, for tests of what the
    system checks and the management command derive from it (some test modules decorate
    functions with ``cache="mc"``, an alias most tests do not configure)."""
    from cachedcall.function import registry

    saved = list(registry)
    registry.clear()
    yield
    registry.update(saved)


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


#: The real backends the behavioural suite runs on: Django's LocMemCache, PyMemcacheCache
#: and RedisCache, django-redis, and Django's PyLibMCCache. The two memcached clients share
#: the session's memcached server, the two Redis clients its Redis server (every test
#: starts by clearing the alias).
BACKEND_NAMES = ["locmem", "memcached", "redis", "django-redis", "pylibmc"]


def _config(name: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if name == "locmem":
        return dict(servers.LOCMEM)
    if name == "memcached":
        return servers.memcached_config(request.getfixturevalue("memcached_server"))
    if name == "pylibmc":
        return servers.pylibmc_config(request.getfixturevalue("memcached_server"))
    if name == "django-redis":
        return servers.django_redis_config(request.getfixturevalue("redis_server"))
    return servers.redis_config(request.getfixturevalue("redis_server"))


@pytest.fixture(params=BACKEND_NAMES)
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
    """Every test starts with no process state left by another (the switch following the
    settings, no remembered failures or pending bumps) and an empty default cache. The
    switch is kept: a class decorated with ``@disabled()`` opened its block in setUpClass."""
    saved = switch.forced()
    forget_process_state()
    switch.force(saved)
    caches["default"].clear()
    yield
    forget_process_state()
    switch.force(saved)


@pytest.fixture
def cachedcall_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="cachedcall")
    return caplog
