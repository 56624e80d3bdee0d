"""Round trips, counted not timed: a hit is one, a miss is two (read, write), whatever the
number of versions, on every backend and for every benchmark scenario; a bump is one
``incr`` per counter.

Counted twice: as calls to the Django backend (every backend, tests/counting.py), and for
Redis as the commands the server ran, where one backend call can be more than one
command (Django's RedisCache.incr is an EXISTS, then an INCRBY)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from django.core.cache import caches
from django.http import HttpResponse
from django.test import RequestFactory
from django.test import override_settings

from cachedcall import bump
from cachedcall import cached
from cachedcall import cached_view
from tests import servers
from tests.testapp.models import Club
from tests.testapp.models import ClubClass
from tests.testapp.models import Tag

VALUE = [{"id": i} for i in range(20)]
club = Club(pk=7, name="chess")


@cached(timeout=60)
def one(n):
    return VALUE


@cached(timeout=60)
def three(n, club, weekday=None):
    return VALUE


@cached(timeout=60, depends_on=[ClubClass])
def dep1(n):
    return VALUE


@cached(timeout=60, depends_on=[Club, ClubClass, Tag])
def dep3(n):
    return VALUE


@cached(timeout=60)
async def acompute(n):
    return VALUE


@cached_view(60)
def page(request):
    return HttpResponse("x" * 100)


async def _in_context(func, n):
    # Each asyncio.run() is a new context with its own Django cache objects; close them as
    # Django's request_finished would at the end of an ASGI request.
    try:
        return await func(n)
    finally:
        caches.close_all()


SCENARIOS = {
    "1 argument": lambda n: one(n),
    "3 arguments with a keyword and an instance": lambda n: three(n, club, weekday=2),
    "depends_on 1 model": lambda n: dep1(n),
    "depends_on 3 models": lambda n: dep3(n),
    "async": lambda n: asyncio.run(_in_context(acompute, n)),
    "cached_view": lambda n: page(RequestFactory().get(f"/page/{n}/")),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_round_trips(scenario, counted):
    call = SCENARIOS[scenario]
    call(1)  # creates the counters
    counted.clear()
    call(2)
    assert dict(counted) == {"get_many": 1, "set": 1}, "miss"
    counted.clear()
    call(2)
    assert dict(counted) == {"get_many": 1}, "hit"


def test_a_bump_is_one_incr_per_counter(counted):
    dep1(1)  # creates the counters dep1 reads
    bump(ClubClass)  # creates the epoch of ClubClass's rows, which dep1 does not read
    counted.clear()
    bump(ClubClass)  # the table's counter and the epoch of its rows
    assert dict(counted) == {"incr": 2}


# What the Redis server runs for the same calls: a hit, a miss, a bump of a model (two
# counters), and how many of those commands were requests from the client (round trips).
# Django's RedisCache.incr sends an EXISTS, then an INCRBY: two round trips per counter.
# django-redis sends one EVAL per counter, whose Lua script runs the EXISTS and INCRBY on
# the server (Redis counts those too): one round trip per counter.
REDIS_COMMANDS = {
    "redis": {
        "hit": ({"mget": 1}, 1),
        "miss": ({"mget": 1, "set": 1}, 2),
        "bump": ({"exists": 2, "incrby": 2}, 4),
    },
    "django-redis": {
        "hit": ({"mget": 1}, 1),
        "miss": ({"mget": 1, "set": 1}, 2),
        "bump": ({"eval": 2, "exists": 2, "incrby": 2}, 2),
    },
}
# Commands that a script runs on the server, not requests of their own.
_IN_SCRIPTS = {"django-redis": {"exists", "incrby"}, "redis": set()}


@pytest.fixture(params=list(REDIS_COMMANDS))
def redis_commands(request, redis_server):
    """``(backend name, commands())``: ``commands()`` is what the server ran since the last
    call of it, by command (the INFO that asks left out)."""
    import redis

    make = servers.redis_config if request.param == "redis" else servers.django_redis_config
    client = redis.Redis.from_url(f"redis://{redis_server.location}/0")
    last: list[Counter[str]] = []

    def ran() -> Counter[str]:
        stats = client.info("commandstats")
        now = Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})
        delta = now - last[0] if last else Counter()
        last[:] = [now]
        delta.pop("info", None)
        return delta

    with override_settings(
        CACHES={"default": make(redis_server), "other": dict(servers.LOCMEM, LOCATION="other")}
    ):
        caches["default"].clear()
        yield request.param, ran
        caches["default"].close()
    client.close()


def test_round_trips_on_the_wire_of_redis(redis_commands):
    name, ran = redis_commands

    def check(what):
        commands, round_trips = REDIS_COMMANDS[name][what]
        seen = ran()
        assert dict(seen) == commands, what
        assert sum(n for command, n in seen.items() if command not in _IN_SCRIPTS[name]) == round_trips

    dep1(1)
    bump(ClubClass)  # all counters created
    ran()
    dep1(2)
    check("miss")
    dep1(2)
    check("hit")
    bump(ClubClass)
    check("bump")
