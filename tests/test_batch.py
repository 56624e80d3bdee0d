"""``f.map()`` and ``f.starmap()``: what the list comprehension returns, with one read and
one write for the whole batch, on every backend; each call keeps its own semantics."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from django.core.cache import caches
from django.db import transaction
from django.test import override_settings

import cachedcall
from cachedcall import cached
from cachedcall import where
from cachedcall.testing import record
from tests.testapp.models import Club
from tests.testapp.models import ClubClass

calls: Counter[object] = Counter()


@cached(timeout=60)
def square(n):
    calls[n] += 1
    return {"n": n, "square": n * n}


@cached(timeout=60, depends_on=[ClubClass])
def scaled(n, factor=1):
    calls[("scaled", n, factor)] += 1
    return [n * factor]


@cached(timeout=60, depends_on=lambda club: [where(ClubClass, club=club)])
def classes_of(club):
    calls[club.name] += 1
    return sorted(ClubClass.objects.filter(club=club).values_list("name", flat=True))


@cached(timeout=60)
async def asquare(n):
    calls[("async", n)] += 1
    return {"n": n}


@cached(timeout=60, lock=True)
def locked(n):
    calls[("locked", n)] += 1
    return n


class Boom(Exception):
    pass


@cached(timeout=60)
def fragile(n):
    calls[("fragile", n)] += 1
    if n == "boom":
        raise Boom(n)
    return n


class Clubs:
    def __init__(self, city):
        self.city = city

    def __cache_key__(self):
        return self.city

    @cached(timeout=60)
    def label(self, n):
        calls[("label", self.city, n)] += 1
        return f"{self.city}:{n}"


@pytest.fixture(autouse=True)
def _fresh():
    calls.clear()


# --- results -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("backend_name")
def test_map_returns_what_the_comprehension_returns_hits_and_misses_in_order():
    square(2)
    square(4)
    with record() as events:
        got = square.map([1, 2, 3, 4])
    assert calls == Counter({1: 1, 2: 1, 3: 1, 4: 1})  # 2 and 4 were hits
    assert got == [square.__wrapped__(n) for n in [1, 2, 3, 4]]
    calls.clear()
    events.assert_counts(square, hit=2, miss=2, stored=2)
    assert square.map([1, 3]) == [{"n": 1, "square": 1}, {"n": 3, "square": 9}]
    assert calls[1] == calls[3] == 0  # stored by the batch: hits now
    assert square.map([]) == []


@pytest.mark.usefixtures("backend_name")
def test_starmap_takes_argument_tuples_and_each_caller_gets_its_own_copy():
    got = scaled.starmap([(1, 2), (3,), (1, 2)])
    assert got == [[2], [3], [2]]
    assert calls[("scaled", 1, 2)] == 1  # a call repeated in the batch runs once
    assert got[0] is not got[2]  # ...and each gets a copy of its own
    got[0].append("mutated")
    assert scaled.starmap([(1, 2)]) == [[2]]


@pytest.mark.usefixtures("backend_name")
def test_map_on_a_method_binds_self():
    paris, rome = Clubs("paris"), Clubs("rome")
    assert paris.label.map([1, 2]) == ["paris:1", "paris:2"]
    assert rome.label.map([1]) == ["rome:1"]
    assert paris.label.map([1, 2]) == ["paris:1", "paris:2"]
    assert calls[("label", "paris", 1)] == 1 and calls[("label", "rome", 1)] == 1


@pytest.mark.usefixtures("backend_name")
def test_async_map_is_awaitable_and_batched_the_same():
    async def main():
        try:
            first = await asquare.map([1, 2, 1])
            again = await asquare.starmap([(1,), (2,)])
            return first, again
        finally:
            caches.close_all()

    first, again = asyncio.run(main())
    assert first == [{"n": 1}, {"n": 2}, {"n": 1}] and again == [{"n": 1}, {"n": 2}]
    assert calls[("async", 1)] == 1 and calls[("async", 2)] == 1


# --- round trips -------------------------------------------------------------------------------


def test_fifty_hits_are_one_read_and_fifty_misses_one_read_and_one_write(counted):
    scaled(0)  # creates the counters: the batch has none to seed
    counted.clear()
    assert scaled.map(range(1, 51)) == [[n] for n in range(1, 51)]
    assert dict(counted) == {"get_many": 1, "set_many": 1}, "50 misses"
    counted.clear()
    assert scaled.map(range(1, 51)) == [[n] for n in range(1, 51)]
    assert dict(counted) == {"get_many": 1}, "50 hits"
    counted.clear()
    assert scaled.map([*range(1, 26), *range(100, 125)]) == [[n] for n in [*range(1, 26), *range(100, 125)]]
    assert dict(counted) == {"get_many": 1, "set_many": 1}, "25 hits, 25 misses"


def test_fifty_misses_that_lack_the_same_counters_create_each_once(counted):
    assert scaled.map(range(1, 51)) == [[n] for n in range(1, 51)]
    # The two generations and ClubClass's version: one add each, not one per miss.
    assert dict(counted) == {"get_many": 1, "add": 3, "set_many": 1}


def test_a_locked_batch_takes_a_lock_per_miss_and_deletes_them_in_one_round_trip(counted):
    locked(0)
    counted.clear()
    assert locked.map([1, 2, 3]) == [1, 2, 3]
    assert dict(counted) == {"get_many": 1, "add": 3, "set_many": 1, "delete_many": 1}


# --- the same semantics per call ------------------------------------------------------------------


@pytest.mark.usefixtures("backend_name")
@pytest.mark.django_db
def test_a_write_makes_the_entries_that_depend_on_it_stale_in_a_batch(clubs):
    chess, go = clubs
    assert classes_of.map([chess, go]) == [["openings"], ["joseki"]]
    ClubClass.objects.create(club=chess, name="endgames")
    with record() as events:
        assert classes_of.map([chess, go]) == [["endgames", "openings"], ["joseki"]]
    events.assert_counts(classes_of, hit=1, miss=1)
    assert calls["chess"] == 2 and calls["go"] == 1


@pytest.mark.usefixtures("backend_name")
@pytest.mark.django_db(transaction=True)
def test_calls_of_a_batch_that_depend_on_a_pending_bump_bypass(clubs):
    chess, go = clubs
    classes_of.map([chess, go])
    with transaction.atomic():
        ClubClass.objects.create(club=chess, name="endgames")
        with record() as events:
            assert classes_of.map([chess, go]) == [["endgames", "openings"], ["joseki"]]
        events.assert_counts(classes_of, pending=1, hit=1)
    assert classes_of.map([chess]) == [["endgames", "openings"]]  # committed: stale, recomputed
    assert calls["chess"] == 3


@pytest.mark.usefixtures("backend_name")
def test_with_the_switch_off_a_batch_calls_the_function_and_touches_no_cache():
    with cachedcall.disabled, record() as events:
        assert square.map([1, 1]) == [{"n": 1, "square": 1}] * 2
    assert calls[1] == 2
    events.assert_counts(square, disabled=2)
    assert square.map([1]) and calls[1] == 3  # nothing was stored while off


@pytest.mark.usefixtures("backend_name")
def test_a_computation_that_raises_stops_the_batch_as_the_comprehension_would():
    with pytest.raises(Boom):
        fragile.map([1, "boom", 3])
    assert calls[("fragile", 1)] == 1 and calls[("fragile", "boom")] == 1
    assert calls[("fragile", 3)] == 0  # never started
    assert fragile.map([1, 3]) == [1, 3]
    assert calls[("fragile", 1)] == 1  # computed before the failure, and stored
    assert calls[("fragile", 3)] == 1


@pytest.mark.usefixtures("backend_name")
def test_a_signed_batch_is_verified_and_written_per_miss():
    with override_settings(CACHEDCALL={"SIGN": True}):
        assert square.map([5, 6]) == [{"n": 5, "square": 25}, {"n": 6, "square": 36}]
        assert square.map([5, 6]) == [{"n": 5, "square": 25}, {"n": 6, "square": 36}]
    assert calls[5] == calls[6] == 1


def test_starmap_refuses_an_item_that_is_no_argument_tuple():
    with pytest.raises(TypeError, match=r"starmap\(\) takes an iterable of argument tuples.*use \.map\(\)"):
        scaled.starmap([(1,), 2])
    with pytest.raises(TypeError, match="starmap"):
        scaled.starmap(["ab"])  # a str would be spread into its characters
    assert calls[("scaled", 1, 1)] == 0  # refused before any call ran


def test_map_is_refused_for_views():
    from django.http import HttpResponse

    from cachedcall import cached_view

    @cached_view(60)
    def page(request):
        return HttpResponse("x")

    with pytest.raises(TypeError, match="views"):
        page.map([None])


@pytest.mark.usefixtures("backend_name")
@pytest.mark.django_db
def test_map_of_model_instances_keys_each_by_its_row(clubs):
    chess, go = clubs
    assert classes_of.map(Club.objects.order_by("name")) == [["openings"], ["joseki"]]
