"""Under load: cross-process locks, stale-while-revalidate, soft invalidation, XFetch."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from django.core.cache import caches

from cachedcall import InvalidOption
from cachedcall import bump
from cachedcall import cached
from cachedcall import locks
from cachedcall import reset
from cachedcall import testing
from cachedcall import xfetch
from tests import stampede
from tests.conftest import _config
from tests.testapp.models import ClubClass

runs: Counter[str] = Counter()
_lock = threading.Lock()
offset = [0.0]


def _run(name: str, seconds: float = 0.0) -> int:
    with _lock:
        runs[name] += 1
        n = runs[name]
    time.sleep(seconds)
    return n


@pytest.fixture(autouse=True)
def _reset(monkeypatch):
    runs.clear()
    offset[0] = 0.0
    monkeypatch.setattr(xfetch, "clock", lambda: time.time() + offset[0])


def _crowd(target, n=10):
    """Call ``target`` from ``n`` threads released together; return (result, seconds) each."""
    barrier = threading.Barrier(n)
    out: list[tuple[object, float]] = []

    def one():
        barrier.wait()
        began = time.perf_counter()
        try:
            value = target()
        finally:
            caches.close_all()  # what request_finished does for a request thread
        with _lock:
            out.append((value, time.perf_counter() - began))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


# --- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lock": "yes"}, "lock must be True or False"),
        ({"lock_ttl": 0.5}, "lock_ttl must be a number of seconds >= 1"),
        ({"lock_wait": -1}, "lock_wait must be a number of seconds >= 0"),
        ({"stale": "1m"}, "stale must be a number of seconds >= 0"),
        ({"soft": 1}, "soft must be True or False"),
        ({"early": 0}, "early must be XFetch's beta"),
        ({"early": True}, "early must be XFetch's beta"),
        ({"timeout": None, "stale": 10}, "need entries that expire"),
        ({"timeout": None, "early": 1}, "need entries that expire"),
    ],
)
def test_bad_load_options_fail_at_decoration_naming_the_option(options, message):
    with pytest.raises(InvalidOption, match=message):
        cached(**options)(lambda: None)


# --- XFetch -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remaining", "beta", "expected", "tolerance"),
    [(1.0, 1.0, math.exp(-1), 0.015), (1.0, 2.0, math.exp(-0.5), 0.015), (3.0, 1.0, math.exp(-3), 0.01)],
)
def test_xfetch_refreshes_with_probability_exp_minus_remaining_over_beta_delta(
    monkeypatch, remaining, beta, expected, tolerance
):
    delta, now = 0.5, 1_000.0
    monkeypatch.setattr(xfetch, "rand", random.Random(20151).random)
    monkeypatch.setattr(xfetch, "clock", lambda: now)
    draws = 10_000
    hits = sum(xfetch.early(now + remaining * delta, delta, beta) for _ in range(draws))
    assert abs(hits / draws - expected) <= tolerance, hits / draws


def test_xfetch_at_expiry_always_refreshes_and_a_zero_draw_is_infinitely_early(monkeypatch):
    monkeypatch.setattr(xfetch, "clock", lambda: 10.0)
    monkeypatch.setattr(xfetch, "rand", lambda: 0.999999)
    assert xfetch.early(10.0, 0.5, 1.0)
    assert not xfetch.early(12.0, 0.5, 1.0)
    monkeypatch.setattr(xfetch, "rand", lambda: 0.0)
    assert xfetch.early(1e12, 0.5, 1.0)


@cached(timeout=10, early=1.0)
def early_fn(n):
    return [n, _run("early", 0.05)]


@pytest.mark.usefixtures("backend_name")
def test_early_refresh_recomputes_a_fresh_entry_when_drawn_and_serves_it_otherwise(monkeypatch):
    assert early_fn(1) == [1, 1]
    monkeypatch.setattr(xfetch, "rand", lambda: 1.0)  # log(1) = 0: never early while fresh
    assert early_fn(1) == [1, 1]
    monkeypatch.setattr(xfetch, "rand", lambda: 1e-300)  # as early as can be
    assert early_fn(1) == [1, 2]
    monkeypatch.setattr(xfetch, "rand", lambda: 1.0)
    assert early_fn(1) == [1, 2]  # the refreshed entry was stored
    assert runs["early"] == 2


# --- stale-while-revalidate --------------------------------------------------------------------


@cached(timeout=1, stale=30)
def listing(n):
    return [n, _run("listing", 0.3)]


@cached(timeout=1, stale=30, single_flight=False)
def listing_by_lock(n):
    return [n, _run("listing_by_lock", 0.3)]


@pytest.mark.usefixtures("backend_name")
@pytest.mark.parametrize("func", [listing, listing_by_lock], ids=["single-flight", "cache-lock"])
def test_after_the_timeout_one_caller_recomputes_while_the_others_get_the_old_value_at_once(func):
    name = func.__wrapped__.__name__
    assert func(1) == [1, 1]
    offset[0] = 2.0  # past the timeout, inside the stale window
    with testing.record() as seen:
        out = _crowd(lambda: func(1))
    assert runs[name] == 2
    old = [seconds for value, seconds in out if value == [1, 1]]
    new = [seconds for value, seconds in out if value == [1, 2]]
    assert len(old) == 9 and len(new) == 1
    assert max(old) < 0.2 <= new[0]  # nobody waited for the recomputation but its caller
    seen.assert_counts(func, stale=9, miss=1, stored=1)
    offset[0] = 0.0
    assert func(1) == [1, 2]
    assert runs[name] == 2


@cached(timeout=1, stale=1)
def short_stale(n):
    return [n, _run("short_stale")]


@pytest.mark.usefixtures("backend_name")
def test_past_the_stale_window_an_entry_is_a_plain_miss():
    assert short_stale(1) == [1, 1]
    offset[0] = 2.5
    assert short_stale(1) == [1, 2]


# --- soft invalidation -------------------------------------------------------------------------

names = ["a"]


@cached(timeout=60, depends_on=[ClubClass], soft=True)
def soft_names():
    _run("soft", 0.3)
    return list(names)


@cached(timeout=60, depends_on=[ClubClass])
def hard_names():
    _run("hard", 0.3)
    return list(names)


@pytest.mark.usefixtures("backend_name")
def test_soft_serves_the_old_value_after_a_version_bump_while_one_caller_recomputes():
    names[:] = ["a"]
    assert soft_names() == ["a"]
    names.append("b")
    bump(ClubClass)
    out = _crowd(soft_names)
    assert runs["soft"] == 2
    assert sorted(tuple(v) for v, _ in out) == [("a",)] * 9 + [("a", "b")]
    assert soft_names() == ["a", "b"]


@pytest.mark.usefixtures("backend_name")
def test_model_versions_stay_hard_by_default_and_reset_is_hard_even_with_soft():
    names[:] = ["a"]
    assert hard_names() == ["a"] and soft_names() == ["a"]
    names.append("b")
    bump(ClubClass)
    out = _crowd(hard_names)
    assert [v for v, _ in out] == [["a", "b"]] * 10  # nobody saw the old value
    reset()
    names.append("c")
    assert soft_names() == ["a", "b", "c"]


# --- cross-process lock, in one process ----------------------------------------------------------


@cached(timeout=60, lock=True, single_flight=False)
def locked(n):
    return [n, _run("locked", 0.3)]


starts: list[float] = []


@cached(timeout=60, lock=True, lock_wait=0.3, single_flight=False)
def impatient(n):
    starts.append(time.perf_counter())
    return [n, _run("impatient", 1.5)]


@cached(timeout=60, lock=True, lock_ttl=2)
def guarded(n):
    return [n, _run("guarded")]


@cached(timeout=60, lock=True)
async def alocked(n, seconds=5.0):
    _run("alocked")
    await asyncio.sleep(seconds)
    return [n]


@pytest.mark.usefixtures("backend_name")
def test_fifty_threads_without_single_flight_compute_once_through_the_cache_lock():
    out = _crowd(lambda: locked(1), 50)
    assert runs["locked"] == 1
    assert {tuple(v) for v, _ in out} == {(1, 1)}
    assert caches["default"].get(locks.key(locked.key(1))) is None  # released


@pytest.mark.usefixtures("backend_name")
def test_a_computation_slower_than_the_wait_budget_makes_waiters_compute_themselves():
    starts.clear()

    def holder():
        impatient(1)
        caches.close_all()

    first = threading.Thread(target=holder)
    first.start()
    time.sleep(0.1)
    began = time.perf_counter()
    assert impatient(1)[0] == 1
    first.join()
    assert runs["impatient"] == 2
    waited = starts[-1] - began
    assert 0.25 < waited < 0.8, waited  # its wait budget (0.3 s), not the holder's 1.5 s


@pytest.mark.usefixtures("backend_name")
def test_a_lock_left_by_a_dead_holder_blocks_nobody_longer_than_its_ttl():
    # As a holder that died would leave it (tests below kill a real process on memcached and Redis).
    assert caches["default"].add(locks.key(guarded.key(1)), "dead:1:1", 2)
    began = time.perf_counter()
    assert guarded(1) == [1, 1]
    waited = time.perf_counter() - began
    assert 0.9 < waited < 2 + 1.2, waited


@pytest.mark.usefixtures("backend_name")
def test_a_cancelled_async_computation_releases_its_lock():
    lock_key = locks.key(alocked.key(1))

    async def scenario():
        task = asyncio.ensure_future(alocked(1))
        while not runs["alocked"]:
            await asyncio.sleep(0.01)
        assert caches["default"].get(lock_key) is not None
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    deadline = time.monotonic() + 2
    while caches["default"].get(lock_key) is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert caches["default"].get(lock_key) is None


# --- cross-process lock, across processes --------------------------------------------------------


def _worker(config, *args):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.stampede", json.dumps(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.fixture(params=["memcached", "redis"])
def shared(request, settings):
    """A real memcached or Redis as the 'default' alias; its config, for worker processes."""
    config = _config(request.param, request)
    settings.CACHES = {"default": config}
    caches["default"].clear()
    yield config
    caches["default"].close()


@pytest.mark.parametrize("mode", ["crowd", "crowd-mc"], ids=["default-alias", "named-alias"])
def test_four_processes_of_ten_threads_compute_at_most_twice(shared, mode):
    # named-alias: entries in cache="mc" beside a LocMemCache default; with the counters in
    # the process-local default, each process computed once (4).
    config = shared
    start_at = time.time() + 4
    workers = [_worker(config, mode, str(start_at), "10") for _ in range(4)]
    computed = 0
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        computed += json.loads(out.strip().splitlines()[-1])["computed"]
    assert time.time() < start_at + 10 * stampede.DURATION  # they did run together
    assert 1 <= computed <= 2


def test_a_lock_holder_killed_with_os_exit_blocks_the_others_no_longer_than_the_lock_ttl(shared):
    config = shared
    holder = _worker(config, "die")
    out, err = holder.communicate(timeout=60)
    assert holder.returncode == 3 and "holding" in out, err
    lock_key = locks.key(stampede.popular.key(1))
    assert caches["default"].get(lock_key) is not None  # it died holding the lock
    began = time.perf_counter()
    value = stampede.popular(1)
    waited = time.perf_counter() - began
    assert value["pid"] == os.getpid()
    assert waited < 2 + 1.2 + stampede.DURATION, waited  # lock_ttl=2, memcached's 1 s clock


@pytest.mark.usefixtures("backend_name")
def test_an_async_caller_of_another_event_loop_waits_for_the_lock_holder_and_gets_its_value():
    async def request():
        try:
            return await alocked(1, 0.5)
        finally:
            caches.close_all()  # as request_finished does at the end of an ASGI request

    def holder():
        asyncio.run(request())

    first = threading.Thread(target=holder)
    first.start()
    while not runs["alocked"]:
        time.sleep(0.01)
    began = time.perf_counter()
    assert asyncio.run(request()) == [1]  # another loop: no shared flight, only the lock
    waited = time.perf_counter() - began
    first.join()
    assert runs["alocked"] == 1
    assert 0.2 < waited < 1.5
