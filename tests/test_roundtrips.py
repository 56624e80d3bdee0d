"""Round trips, counted not timed: a hit is one, a miss is two (read, write), whatever the
number of versions, on every backend and for every benchmark scenario."""

from __future__ import annotations

import asyncio

import pytest
from django.core.cache import caches
from django.http import HttpResponse
from django.test import RequestFactory

from cachedcall import cached
from cachedcall import cached_view
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
