"""Single flight: concurrent misses of one key in one process run the function once."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest
from django.core.cache import caches

from cachedcall import InvalidOption
from cachedcall import cached

pytestmark = pytest.mark.usefixtures("backend_name")
runs: Counter[str] = Counter()
_lock = threading.Lock()


def _slow(name, value):
    with _lock:
        runs[name] += 1
    # Long enough for every thread to miss while the first computes, also on a 2-core
    # machine running the suite on both cores (at 0.2 s a straggler now and then joined
    # after the leader had landed, and rightly computed again).
    time.sleep(0.8)
    return value


@cached(timeout=60)
def popular(n):
    return _slow("popular", [{"n": n}])


@cached(timeout=60, single_flight=False)
def unguarded(n):
    return _slow("unguarded", [n])


@cached(timeout=60)
def failing(n):
    _slow("failing", None)
    raise LookupError(f"no {n}")


@cached(timeout=60)
async def apopular(n):
    with _lock:
        runs["apopular"] += 1
    await asyncio.sleep(0.2)
    return [n]


@pytest.fixture(autouse=True)
def _reset():
    runs.clear()


def _fifty(target):
    barrier = threading.Barrier(50)
    results, errors = [], []

    def worker():
        barrier.wait()
        try:
            results.append(target())
        except Exception as exc:  # collected and asserted on below
            errors.append(exc)
        finally:
            caches.close_all()  # what request_finished does for a request thread

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_fifty_threads_missing_one_key_compute_once_where_get_or_set_computes_fifty():
    results, errors = _fifty(lambda: popular(1))
    assert not errors and len(results) == 50
    assert runs["popular"] == 1
    assert all(r == [{"n": 1}] for r in results)
    assert len({id(r) for r in results}) == 50  # each caller has its own copy
    # Django's get_or_set, same test, same backend: every thread computes.
    results, errors = _fifty(
        lambda: caches["default"].get_or_set("django-key", lambda: _slow("django", 1), 60)
    )
    # Many compute (40-50 on a quiet machine; a loaded one lets the first finish before the
    # last start, so the bound is loose): the contrast with exactly one is the point.
    assert not errors and runs["django"] >= 10


def test_without_single_flight_every_thread_computes():
    _fifty(lambda: unguarded(2))
    assert runs["unguarded"] >= 10  # as get_or_set above


def test_followers_get_the_leaders_exception():
    results, errors = _fifty(lambda: failing(3))
    assert runs["failing"] == 1
    assert len(errors) == 50 and all(isinstance(e, LookupError) for e in errors)


def test_fifty_asyncio_tasks_compute_once():
    async def scenario():
        try:
            return await asyncio.gather(*(apopular(4) for _ in range(50)))
        finally:
            caches.close_all()

    results = asyncio.run(scenario())
    assert runs["apopular"] == 1 and results == [[4]] * 50


def test_a_call_that_reenters_its_own_key_does_not_wait_on_itself():
    depth = Counter()

    @cached(timeout=60)
    def reenter(n):
        depth[n] += 1
        if depth[n] < 3:
            return reenter(n)  # the same key, from the thread that leads its flight
        return "done"

    started = time.monotonic()
    assert reenter(5) == "done"
    assert time.monotonic() - started < 1  # no wait on itself (flights.WAIT is 10 s)
    assert depth[5] == 3


def test_single_flight_option_is_validated():
    with pytest.raises(InvalidOption, match="single_flight must be True or False"):
        cached(single_flight="yes")(lambda: 1)


def test_a_follower_that_read_a_newer_version_computes_itself_not_the_leaders_older_value():
    import cachedcall
    from tests.testapp.models import ClubClass

    started, release = threading.Event(), threading.Event()
    seen: dict[str, str] = {}
    state = {"value": "before"}

    def call():
        try:
            seen[threading.current_thread().name] = slow()
        finally:
            caches.close_all()  # what request_finished does for a request thread

    @cached(timeout=60, depends_on=[ClubClass])
    def slow():
        value = state["value"]
        if threading.current_thread().name == "leader":
            started.set()
            release.wait(5)  # the leader read the data before the write, and is slow
        return value

    slow.invalidate_all()
    leader = threading.Thread(target=call, name="leader")
    leader.start()
    assert started.wait(5)
    state["value"] = "after"
    cachedcall.bump(ClubClass)  # the write commits while the leader computes
    follower = threading.Thread(target=call, name="follower")
    follower.start()
    time.sleep(0.05)  # the follower has read the new version and joined the leader's flight
    release.set()
    leader.join(5)
    follower.join(5)
    # The follower's call started after the write: it must not get the leader's older value.
    assert seen == {"leader": "before", "follower": "after"}
