"""``f.map()`` through the near tier: on Redis a batch of kept entries makes no round trip,
on memcached it reads the batch's counters only."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import pytest
import redis
from django.core.cache import caches
from django.test import override_settings

import cachedcall
from cachedcall import cached
from cachedcall.testing import record
from tests import bumping
from tests import servers
from tests.testapp.models import ClubClass

calls: Counter[object] = Counter()
REDIS = ["redis", "django-redis"]
MEMCACHED = ["memcached", "pylibmc"]


@cached(timeout=60, near=True, depends_on=[ClubClass])
def lessons(n):
    calls[n] += 1
    return {"n": n}


@cached(timeout=60, near=True, copy=False)
def shared(n):
    calls["shared", n] += 1
    return {"n": n}


@pytest.fixture(autouse=True)
def _fresh() -> None:
    calls.clear()


def _reads(server: servers.Server) -> int:
    stats = redis.Redis.from_url(f"redis://{server.location}/0").info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("get", "mget"))


@pytest.fixture
def get_manys(counted: Counter[str]) -> Iterator[list[list[str]]]:
    """The keys of every ``get_many`` made on the default cache (through ``counted``'s
    subclass, whose ``get_many`` cachedcall calls rather than its own reader)."""
    read: list[list[str]] = []
    cache = caches["default"]
    original = type(cache).get_many

    def spy(self, keys, *args, **kwargs):
        read.append(list(keys))
        return original(self, keys, *args, **kwargs)

    type(cache).get_many = spy
    try:
        yield read
    finally:
        type(cache).get_many = original


TEN = list(range(1, 11))


# --- Redis: a batch of kept entries, no round trip --------------------------------------------


@pytest.mark.parametrize("backend_name", REDIS, indirect=True)
def test_a_batch_of_redis_near_hits_makes_no_round_trip(backend_name, redis_server):
    assert lessons.map(TEN) == [{"n": n} for n in TEN]  # misses: computed and stored
    assert lessons.map(TEN) == [{"n": n} for n in TEN]  # hits read from Redis, and kept
    before = _reads(redis_server)
    with record() as events:
        assert lessons.map(TEN) == [{"n": n} for n in TEN]
    assert _reads(redis_server) == before
    assert events.near_hits(lessons) == 10
    assert all(calls[n] == 1 for n in TEN)


@pytest.mark.parametrize("backend_name", REDIS, indirect=True)
def test_a_bump_makes_every_kept_entry_of_the_batch_recompute(backend_name):
    lessons.map(TEN)
    lessons.map(TEN)
    cachedcall.bump(ClubClass)
    with record() as events:
        assert lessons.map(TEN) == [{"n": n} for n in TEN]
    assert events.near_hits(lessons) == 0
    assert all(calls[n] == 2 for n in TEN)


@pytest.mark.parametrize("backend_name", REDIS, indirect=True)
def test_a_batch_mixing_kept_and_new_entries_reads_only_the_new_ones(backend_name, redis_server):
    lessons.map(TEN[:5])
    lessons.map(TEN[:5])  # 1..5 kept
    with record() as events:
        assert lessons.map(TEN) == [{"n": n} for n in TEN]
    assert events.near_hits(lessons) == 5
    assert [calls[n] for n in TEN] == [1] * 10


@pytest.mark.parametrize("backend_name", REDIS, indirect=True)
def test_an_async_batch_of_near_hits_is_served_without_a_round_trip(backend_name, redis_server):
    @cached(timeout=60, near=True)
    async def aload(n):
        calls["async", n] += 1
        return [n]

    async def main() -> int:
        # The first batch connects the tracking connection (in a worker thread).
        assert await aload.map(TEN) == [[n] for n in TEN]
        assert await aload.map(TEN) == [[n] for n in TEN]
        before = _reads(redis_server)
        with record() as events:
            assert await aload.map(TEN) == [[n] for n in TEN]
        assert _reads(redis_server) == before
        return events.near_hits(aload)

    assert asyncio.run(main()) == 10
    assert all(calls["async", n] == 1 for n in TEN)


# --- memcached: the batch's counters read, its kept entries not -------------------------------


@pytest.mark.parametrize("backend_name", MEMCACHED, indirect=True)
def test_a_memcached_batch_of_kept_entries_reads_only_their_counters(backend_name, get_manys):
    lessons.map(TEN)  # misses: stored and kept
    get_manys.clear()
    with record() as events:
        assert lessons.map(TEN) == [{"n": n} for n in TEN]
    assert events.near_hits(lessons) == 10
    # One read: the two generations and the model's version, shared by the ten calls.
    assert len(get_manys) == 1 and len(get_manys[0]) == 3
    assert not set(get_manys[0]) & {lessons.key(n) for n in TEN}


@pytest.mark.parametrize("backend_name", MEMCACHED, indirect=True)
def test_a_memcached_batch_reads_the_entries_it_has_not_kept(backend_name, get_manys):
    lessons.map(TEN[:5])
    get_manys.clear()
    with record() as events:
        assert lessons.map(TEN) == [{"n": n} for n in TEN]
    assert events.near_hits(lessons) == 5
    assert len(get_manys) == 1
    assert set(get_manys[0]) >= {lessons.key(n) for n in TEN[5:]}
    assert not set(get_manys[0]) & {lessons.key(n) for n in TEN[:5]}


@pytest.mark.parametrize("backend_name", MEMCACHED, indirect=True)
def test_a_bump_outdates_the_kept_entries_of_a_memcached_batch(backend_name):
    lessons.map(TEN)
    cachedcall.bump(ClubClass)
    assert lessons.map(TEN) == [{"n": n} for n in TEN]
    assert all(calls[n] == 2 for n in TEN)
    with record() as events:
        lessons.map(TEN)  # the new entries were kept by the batch's write
    assert events.near_hits(lessons) == 10, (
        [(e.outcome, e.reason) for e in events],
        cachedcall.stats(),
    )


@pytest.mark.parametrize("backend_name", MEMCACHED, indirect=True)
def test_entries_another_process_stored_are_read_not_recomputed(backend_name, get_manys):
    lessons.map(TEN)
    cachedcall.bump(ClubClass)
    # Another process recomputed and stored under the new versions: simulated by a batch
    # with the tier off (it writes the entries to memcached only).
    with override_settings(CACHEDCALL={"NEAR_BYTES": 0}):
        lessons.map(TEN)
    assert all(calls[n] == 2 for n in TEN)
    get_manys.clear()
    assert lessons.map(TEN) == [{"n": n} for n in TEN]  # kept copies outdated: read again
    assert all(calls[n] == 2 for n in TEN)
    assert len(get_manys) == 2  # the counters, then the outdated entries
    assert set(get_manys[1]) == {lessons.key(n) for n in TEN}


# --- on every shared backend ----------------------------------------------------------------


@pytest.mark.parametrize("backend_name", REDIS + MEMCACHED, indirect=True)
def test_copy_false_shares_the_kept_values_between_batches_and_calls(backend_name):
    shared.map(TEN)
    shared.map(TEN)
    first, second = shared.map(TEN), shared.map(TEN)
    assert first == [{"n": n} for n in TEN]
    assert all(a is b for a, b in zip(first, second, strict=True))
    assert shared(3) is first[2]
    assert all(calls["shared", n] == 1 for n in TEN)


@pytest.mark.parametrize("backend_name", REDIS + MEMCACHED, indirect=True)
def test_copy_true_gives_each_result_of_a_batch_its_own_copy(backend_name):
    lessons.map(TEN)
    lessons.map(TEN)
    first, second = lessons.map(TEN), lessons.map(TEN)
    assert first == second
    assert all(a is not b for a, b in zip(first, second, strict=True))


# --- races --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend_name", REDIS + MEMCACHED, indirect=True)
def test_batches_in_threads_while_another_bumps_always_see_the_version_they_read_after(backend_name):
    @cached(timeout=60, near=True, depends_on=[ClubClass])
    def version_seen(n):
        return caches["default"].get(bumping.marker_key())

    batch = [1, 2, 3]
    bumping.hit_while_bumping(
        lambda: version_seen.map(batch), lambda: version_seen.map(batch), lambda marker: [marker] * 3
    )


@pytest.mark.parametrize("backend_name", REDIS + MEMCACHED, indirect=True)
def test_an_invalidate_while_a_batch_reads_keeps_nothing_it_read(backend_name, monkeypatch):
    from cachedcall.decorators import function_cache

    lessons.map(TEN)
    fc = function_cache(lessons)
    from cachedcall import near

    near.dropped(fc, [lessons.key(n) for n in TEN])  # as another process would: nothing kept
    run = type(fc.store).run

    def read_then_invalidated(store, operation, *args):
        found = run(store, operation, *args)
        if operation == "read" and store is fc.store:
            lessons.invalidate(3)  # another thread, between this read and its keeping
        return found

    monkeypatch.setattr(type(fc.store), "run", read_then_invalidated)
    lessons.map(TEN)  # hits of what was read before the invalidate: it started before it
    monkeypatch.undo()
    lessons.map(TEN)
    assert calls[3] == 2  # recomputed: the tier did not keep the invalidated entry
    assert [calls[n] for n in TEN if n != 3] == [1] * 9


# --- what the review found ------------------------------------------------------------------


@pytest.mark.parametrize("backend_name", MEMCACHED, indirect=True)
def test_near_hits_are_counted_even_when_the_reread_of_outdated_entries_fails(backend_name, monkeypatch):
    from cachedcall import near
    from cachedcall import nearrecords
    from cachedcall.decorators import function_cache

    lessons.map(TEN)  # stored and kept
    fc = function_cache(lessons)
    with nearrecords.lock:
        nearrecords.held[fc.alias, lessons.key(1)].stamped = ("outdated",)
    run = type(fc.store).run
    reads: list[object] = []

    def second_read_fails(store, operation, *args):
        if operation == "read" and store is fc.store:
            reads.append(args[0])
            if len(reads) == 2:  # the read again of the outdated entry
                return None
        return run(store, operation, *args)

    monkeypatch.setattr(type(fc.store), "run", second_read_fails)
    before = near.stats()["hits"].get(fc.alias, 0)
    with record() as events:
        assert lessons.map(TEN) == [{"n": n} for n in TEN]
    monkeypatch.undo()
    assert len(reads) == 2
    assert events.near_hits(lessons) == 9
    assert near.stats()["hits"].get(fc.alias, 0) - before == 9


@pytest.mark.parametrize("backend_name", REDIS + MEMCACHED, indirect=True)
def test_an_empty_batch_reads_nothing(backend_name, get_manys):
    lessons.map([1])
    get_manys.clear()
    assert lessons.map([]) == []
    assert get_manys == []


@pytest.mark.parametrize("backend_name", ["redis"], indirect=True)
def test_an_async_batch_does_not_hop_to_a_thread_for_a_tracker_that_is_not_due(backend_name):
    from cachedcall import nearrecords
    from cachedcall.decorators import function_cache

    @cached(timeout=60, near=True)
    async def aload(n):
        return n

    asyncio.run(aload.map([1, 2]))  # set up, and connected
    tracker = function_cache(aload).near.tracker
    hops: list[float] = []
    original = tracker.connect_if_due

    def counting() -> None:
        hops.append(1.0)
        original()

    tracker.connect_if_due = counting  # type: ignore[method-assign]
    with nearrecords.lock:
        tracker.close()  # as for a server that refuses CLIENT TRACKING: never connects again

    async def main() -> None:
        for _ in range(5):
            assert await aload.map([1, 2]) == [1, 2]

    asyncio.run(main())
    assert hops == []
