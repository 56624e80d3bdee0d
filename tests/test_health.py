"""cachedcall.health: what ``stats()`` counts; here, the calls that bypassed the cache.

A call bypasses (no read, no write) while a bump it depends on waits for this thread's
commit (``"pending"``) or failed and its retry has not landed (``"error"``); ``stats()``
counts them per reason, at the one place where that is decided (``bumps.bypass``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from django.core.cache import caches
from django.db import transaction
from django.http import HttpResponse
from django.test import RequestFactory
from django.test import override_settings

import cachedcall
from cachedcall import bumps
from cachedcall import cached
from cachedcall import cached_view
from tests import servers
from tests.testapp.models import Club

pytestmark = pytest.mark.django_db(transaction=True)
calls: Counter[str] = Counter()


@cached(timeout=600, depends_on=[Club])
def club_names():
    calls["names"] += 1
    return sorted(Club.objects.values_list("name", flat=True))


@cached(timeout=600, depends_on=[Club])
async def aclub_names():
    calls["anames"] += 1
    return ["async"]


@cached(timeout=600)
def unrelated(n):
    calls["unrelated"] += 1
    return n


@cached_view(600, depends_on=[Club])
def club_page(request):
    calls["page"] += 1
    return HttpResponse(b"clubs")


def test_nothing_bypassed_is_an_empty_count():
    club_names()
    club_names()
    assert cachedcall.stats()["bypassed"] == {}


@pytest.mark.usefixtures("backend_name")
def test_calls_that_bypass_for_a_pending_bump_are_counted_per_reason():
    club_names()
    with transaction.atomic():
        Club.objects.create(name="chess")  # a bump of Club waits for the commit
        assert club_names() == ["chess"]  # read-your-writes: computed, not read
        assert club_names() == ["chess"]
        assert club_page(RequestFactory().get("/clubs/")).content == b"clubs"
        unrelated(1)  # depends on nothing pending: read as usual, not counted
        assert cachedcall.stats()["bypassed"] == {"pending": 3}
    club_names()  # committed and bumped: a read again
    club_names()
    assert calls["names"] == 4 and calls["unrelated"] == 1
    assert cachedcall.stats()["bypassed"] == {"pending": 3}


def test_a_view_bypassing_for_its_method_is_not_a_bump_bypass():
    # A POST (or an authenticated user) is the view's own refusal, reported by events;
    # "bypassed" counts what the bumps decide.
    club_page(RequestFactory().post("/clubs/"))
    assert cachedcall.stats()["bypassed"] == {}


@pytest.mark.parametrize("kind", ["memcached", "redis"])
def test_calls_that_bypass_after_a_failed_bump_are_counted_until_the_retry_lands(kind):
    server = servers.memcached() if kind == "memcached" else servers.redis()
    config = (
        servers.memcached_config(server, dead_timeout=1)
        if kind == "memcached"
        else servers.redis_config(server)
    )
    server.start()
    try:
        with override_settings(CACHES={"default": config}):
            club_names()
            server.stop()
            cachedcall.bump(Club)  # fails: the counter is dirty, its retry thread starts
            assert bumps.is_dirty()
            assert club_names() == []
            assert asyncio.run(aclub_names()) == ["async"]
            unrelated(2)  # depends on no dirty counter: tries the cache (down), not counted
            assert cachedcall.stats()["bypassed"] == {"error": 2}
            server.start()  # back (and empty); the retry thread lands the bump
            deadline = time.monotonic() + 15
            while bumps.is_dirty() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not bumps.is_dirty()
            time.sleep(1.1)  # past dead_timeout for this thread's memcached client
            club_names()
            assert cachedcall.stats()["bypassed"] == {"error": 2}
            caches["default"].close()
    finally:
        server.stop()


def test_forget_resets_the_bypass_counts():
    from cachedcall.testing import forget_process_state

    club_names()
    with transaction.atomic():
        Club.objects.create(name="go")
        club_names()
    assert cachedcall.stats()["bypassed"] == {"pending": 1}
    forget_process_state()
    assert cachedcall.stats()["bypassed"] == {}
