"""Failing caches never break the caller: real faults on real servers."""

from __future__ import annotations

import logging
import pickle
import time
from collections import Counter

import pytest
from django.core.cache import caches
from django.test import override_settings

import cachedcall
from cachedcall import cached
from tests import names
from tests import servers

calls: Counter[str] = Counter()


@cached(timeout=60)
def classes(club):
    calls[club] += 1
    return [club] * 3


@cached(timeout=60)
def anything(value):
    calls["anything"] += 1
    return value


class Renamed:
    def __init__(self, n):
        self.n = n


@pytest.fixture
def own_memcached(memcached):
    """A memcached only this test uses, as the 'default' alias, so it may be killed."""
    (server,) = memcached(1)
    with override_settings(CACHES={"default": servers.memcached_config(server)}):
        yield server
        caches["default"].close()


@pytest.fixture
def own_redis():
    server = servers.redis().start()
    with override_settings(CACHES={"default": servers.redis_config(server)}):
        yield server
        caches["default"].close()
    server.stop()


def _warnings(caplog):
    return [r for r in caplog.records if r.name == "cachedcall" and r.levelno == logging.WARNING]


@pytest.mark.parametrize("server_fixture", ["own_memcached", "own_redis"])
def test_killed_server_one_warning_per_outage_then_recovery(server_fixture, request, cachedcall_log):
    server = request.getfixturevalue(server_fixture)
    assert classes("a") == ["a"] * 3 and classes("a") == ["a"] * 3
    assert calls["a"] == 1
    server.stop()
    for _ in range(5):
        assert classes("a") == ["a"] * 3  # right value, nothing raised
    assert calls["a"] == 6
    assert len(_warnings(cachedcall_log)) == 1
    assert "failed" in _warnings(cachedcall_log)[0].getMessage()
    assert cachedcall.stats()["errors"]["default"] >= 5
    assert cachedcall.stats()["down"] == ["default"]
    server.start()  # same port; an empty server
    deadline = time.monotonic() + 12  # pymemcache retries a dead server after dead_timeout
    while time.monotonic() < deadline and cachedcall.stats()["down"]:
        classes("a")
        time.sleep(0.2)
    assert cachedcall.stats()["down"] == []
    before = calls["a"]
    classes("a")
    classes("a")
    assert calls["a"] == before  # caching again
    assert any("answers again" in r.getMessage() for r in cachedcall_log.records)
    server.stop()
    classes("b")
    assert len(_warnings(cachedcall_log)) == 2  # a new outage window, a new warning


def test_frozen_memcached_costs_about_the_client_timeout(own_memcached):
    classes("a")
    own_memcached.freeze()
    try:
        started = time.monotonic()
        assert classes("a") == ["a"] * 3
        first = time.monotonic() - started
        started = time.monotonic()
        for _ in range(10):
            assert classes("a") == ["a"] * 3
        rest = time.monotonic() - started
    finally:
        own_memcached.thaw()
    # timeout=0.5 for the read and again for the write; then the server is marked dead and
    # further calls fail at once instead of waiting.
    assert first < 2.5, first
    assert rest < 1.5, rest


def test_value_over_memcached_item_size_is_not_stored_and_is_no_outage(own_memcached, cachedcall_log):
    big = b"x" * (2 * 1024 * 1024)
    for _ in range(3):
        assert anything(big) == big
    assert calls["anything"] == 3
    stats = cachedcall.stats()
    assert stats["too_large"] == {"default": 3}
    assert stats["errors"] == {} and stats["down"] == []  # the alias answered: no outage
    warnings = [r for r in cachedcall_log.records if r.levelno >= logging.INFO]
    assert len(warnings) == 1 and "refused for its size" in warnings[0].getMessage()
    assert warnings[0].levelno == logging.WARNING and "anything" in warnings[0].getMessage()
    assert anything(1) == 1 and anything(1) == 1
    assert calls["anything"] == 4  # small values still cache
    # Once per function: another function's refusal says so once more, and only once.
    for _ in range(2):
        assert other_thing(big) == big
    warnings = [r for r in cachedcall_log.records if r.levelno >= logging.INFO]
    assert [r.levelno for r in warnings] == [logging.WARNING, logging.WARNING]
    assert "other_thing" in warnings[1].getMessage()
    assert cachedcall.stats()["too_large"] == {"default": 5} and cachedcall.stats()["down"] == []


@pytest.mark.usefixtures("backend_name")
def test_unpicklable_result_is_returned_logged_once_and_counted(cachedcall_log):
    @cached(timeout=60)
    def make(n):
        calls["make"] += 1
        return lambda: n

    assert make(1)() == 1
    assert make(1)() == 1
    assert calls["make"] == 2
    assert len(_warnings(cachedcall_log)) == 1
    assert "cannot be pickled" in _warnings(cachedcall_log)[0].getMessage()
    assert cachedcall.stats()["errors"]["default"] == 2


@cached(timeout=60)
def renamed(n):
    calls["renamed"] += 1
    return Renamed(n)


@pytest.mark.usefixtures("backend_name")
def test_entry_of_a_renamed_class_is_a_miss_and_is_deleted(cachedcall_log):
    assert renamed(3).n == 3
    key = renamed.key(3)
    envelope = caches["default"].get(key)
    # A deploy renamed the class: the stored pickle names a class that no longer exists.
    payload = envelope[4].replace(b"Renamed", b"Vanished")
    caches["default"].set(key, (*envelope[:4], payload, *envelope[5:]), 60)
    assert renamed(3).n == 3
    assert calls["renamed"] == 2
    assert pickle.loads(caches["default"].get(key)[4]).n == 3  # rewritten, readable again
    assert renamed(3).n == 3
    assert calls["renamed"] == 2
    assert any("unreadable" in r.getMessage() for r in _warnings(cachedcall_log))


def test_garbage_bytes_in_memcached_are_a_miss(own_memcached, cachedcall_log):
    from pymemcache.client.base import Client

    anything(5)
    raw_key = caches["default"].make_key(anything.key(5))
    client = Client(("127.0.0.1", own_memcached.port))
    # flags=1 is pymemcache's pickle flag; noreply=False waits until the server has it.
    assert client.set(raw_key, b"not a pickle at all", flags=1, noreply=False)
    client.close()
    assert anything(5) == 5
    assert calls["anything"] == 2
    assert anything(5) == 5
    assert calls["anything"] == 2  # stored again after the delete
    # pymemcache swallowed the unpickling error: still logged (once) and counted.
    assert cachedcall.stats()["corrupt"] == {"default": 1}
    assert sum("unreadable" in r.getMessage() for r in _warnings(cachedcall_log)) == 1


def test_garbage_bytes_in_redis_are_a_miss(own_redis):
    import redis

    anything(6)
    raw_key = caches["default"].make_key(anything.key(6))
    redis.Redis(port=own_redis.port).set(raw_key, b"not a pickle at all")
    assert anything(6) == 6
    assert calls["anything"] == 2
    anything(6)
    assert calls["anything"] == 2


def test_foreign_value_at_our_key_is_a_miss():
    anything(7)
    caches["default"].set(anything.key(7), "someone else's value", 60)
    assert anything(7) == 7
    assert calls["anything"] == 2


def test_refused_connection_from_the_start(cachedcall_log):
    port = servers.free_port()
    config = {**servers.memcached_config(servers.memcached(port)), "LOCATION": f"127.0.0.1:{port}"}
    with override_settings(CACHES={"default": config}):
        for _ in range(3):
            assert classes("z") == ["z"] * 3
        cachedcall.reset()  # a failing bump is logged, never raised
    assert calls["z"] == 3
    assert cachedcall.stats()["errors"]["default"] >= 3


@pytest.mark.django_db(transaction=True)
def test_a_bump_during_an_outage_never_becomes_a_stale_read(own_memcached, cachedcall_log):
    from tests.testapp.models import Club
    from tests.testapp.models import ClubClass

    @cached(timeout=600, depends_on=[ClubClass])
    def names():
        calls["names"] += 1
        return sorted(ClubClass.objects.values_list("name", flat=True))

    club = Club.objects.create(name="chess")
    assert names() == [] and names() == []
    own_memcached.freeze()  # the server keeps its data but does not answer
    time.sleep(0.2)  # SIGSTOP is delivered asynchronously
    try:
        ClubClass.objects.create(club=club, name="new")  # the bump times out
        # Said once, by the outage's WARNING; the bump failures are counted with it.
        assert any("failed (incr" in r.getMessage() for r in _warnings(cachedcall_log))
        assert cachedcall.stats()["bump_failures"]["default"] >= 1
    finally:
        own_memcached.thaw()
    time.sleep(5.5)  # past dead_timeout: pymemcache tries the server again
    # The old entry and the old counter are both still in memcached; the dirty mark
    # retries the bump before any read trusts them.
    assert names() == ["new"]
    assert names() == ["new"]
    assert calls["names"] == 2
    from cachedcall import bumps

    assert not bumps.is_dirty()


def test_versions_in_their_own_alias(memcached_server, redis_server):
    from tests.testapp.models import ClubClass  # noqa: F401

    config = {
        "default": servers.memcached_config(memcached_server),
        "versions": servers.redis_config(redis_server),
    }
    with override_settings(CACHES=config, CACHEDCALL={"VERSIONS_CACHE": "versions"}):
        caches["default"].clear()
        caches["versions"].clear()
        assert classes("v") == ["v"] * 3 and classes("v") == ["v"] * 3
        assert calls["v"] == 1
        assert caches["versions"].get(names.key("G")) is not None  # counters in Redis
        assert caches["default"].get(names.key("G")) is None
        assert caches["default"].get(classes.key("v")) is not None  # values in memcached
        cachedcall.reset()
        classes("v")
        assert calls["v"] == 2
        caches["default"].close()
        caches["versions"].close()


def test_a_failed_bump_is_retried_by_the_writer_itself_until_it_lands(memcached, cachedcall_log):
    from cachedcall import bumps
    from tests.testapp.models import Club

    (server,) = memcached(1)
    with override_settings(CACHES={"default": servers.memcached_config(server, dead_timeout=1)}):
        server.stop()
        cachedcall.bump(Club)  # a writer's bump while its counter store is unreachable
        assert bumps.is_dirty()
        server.start()  # back, and empty; the writer makes no cached call from here on
        deadline = time.monotonic() + 15
        while bumps.is_dirty() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not bumps.is_dirty()
        time.sleep(1.1)  # this thread's client marked the server dead for dead_timeout
        assert isinstance(caches["default"].get(names.key("v:testapp.club")), int)  # it landed
        caches["default"].close()


def test_bump_failures_in_an_outage_add_to_its_one_warning(own_memcached, cachedcall_log):
    from cachedcall import bumps

    own_memcached.stop()
    for n in range(50):
        bumps.bump_now([names.key(f"v:testapp.club:{n}")])
    warnings = [r for r in cachedcall_log.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert cachedcall.stats()["bump_failures"] == {"default": 50}
    bumps.forget()


def test_after_a_frozen_counter_store_thaws_the_writers_bump_lands_within_the_retry_pause(own_memcached):
    """What other processes see: the window in which they can read the old counter after
    the store answers again is the retry thread's longest pause plus one client timeout."""
    from pymemcache.client.base import Client

    from cachedcall import bumps
    from cachedcall import retries
    from tests.testapp.models import Club

    key = names.key("v:testapp.club")
    cachedcall.bump(Club)
    before = caches["default"].get(key)
    own_memcached.freeze()
    time.sleep(0.2)  # SIGSTOP is delivered asynchronously
    try:
        cachedcall.bump(Club)  # times out: dirty, and the retry thread starts
        assert bumps.is_dirty()
        time.sleep(1.0)  # the retries keep timing out
    finally:
        own_memcached.thaw()
    thawed = time.monotonic()
    # Another process's view: a client of its own, never marked the server dead.
    other = Client(("127.0.0.1", own_memcached.port), timeout=0.5)
    prefixed = caches["default"].make_and_validate_key(key)
    while (int(other.get(prefixed) or 0) <= before or bumps.is_dirty()) and time.monotonic() - thawed < 10:
        time.sleep(0.01)
    landed = time.monotonic() - thawed
    assert int(other.get(prefixed) or 0) > before
    other.close()
    assert landed <= retries.LONGEST + servers.MEMCACHED_OPTIONS["timeout"] + 0.5, landed
    assert not bumps.is_dirty()


@cached(timeout=60)
def other_thing(value):
    calls["other_thing"] += 1
    return value


@pytest.mark.usefixtures("backend_name")
def test_undecodable_entries_are_counted_and_logged_once_per_function_on_every_backend(cachedcall_log):
    from tests import planted

    garbage = planted.Payload("garbage", lambda key: b"not a pickle at all", planted.FLAG_PICKLE)
    for function in (anything, other_thing):
        for n in range(3):
            function(n)
            planted.plant(function.key(n), garbage)  # raw bytes, past Django: a corrupt entry
            assert function(n) == n  # a miss, computed again, nothing raised
            assert function(n) == n  # stored again: a hit
    assert calls["anything"] == calls["other_thing"] == 6
    assert cachedcall.stats()["corrupt"] == {"default": 6}
    assert cachedcall.stats()["down"] == []
    logged = [r.getMessage() for r in _warnings(cachedcall_log) if "unreadable" in r.getMessage()]
    assert len(logged) == 2, logged  # once per function
    assert any("anything" in m for m in logged) and any("other_thing" in m for m in logged)


@pytest.mark.django_db
def test_saving_50_rows_while_memcached_is_down_logs_one_warning(own_memcached, cachedcall_log):
    from cachedcall import bumps
    from tests.testapp.models import Club

    own_memcached.stop()
    for n in range(50):
        Club.objects.create(name=f"club {n}")  # post_save: its table, row and scopes
    warnings = _warnings(cachedcall_log)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "failed" in warnings[0].getMessage()  # the outage window's one WARNING
    assert cachedcall.stats()["bump_failures"]["default"] >= 50  # every save's, counted
    assert bumps.is_dirty()
    bumps.forget()
