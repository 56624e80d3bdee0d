"""cachedcall.subscribe(): every call's Event to every subscriber, at no cost without one."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from django.test import Client

import cachedcall
from cachedcall import cached
from cachedcall import events
from cachedcall import where
from cachedcall.events import Event
from cachedcall.keys import pk_token
from cachedcall.testing import forget_process_state
from cachedcall.testing import record
from tests import names
from tests.testapp.models import Club
from tests.testapp.models import ClubClass


@cached(timeout=60)
def double(x):
    return 2 * x


@cached(timeout=60)
async def adouble(x):
    return 2 * x


@cached(timeout=60, depends_on=[Club])
def club_names():
    return ["chess"]


@cached(timeout=60, depends_on=lambda club_id: [where(ClubClass, club=club_id)])
def class_names(club_id):
    return [f"class of {club_id}"]


@pytest.fixture
def seen():
    """The events delivered to one subscription, open for the test."""
    received: list[Event] = []
    with cachedcall.subscribe(received.append):
        yield received


def test_a_miss_then_a_hit_deliver_their_events_with_what_a_panel_shows(seen):
    assert double(2) == double(2) == 4
    name = "tests.test_events.double"
    assert [(e.function, e.outcome) for e in seen] == [(name, "miss"), (name, "stored"), (name, "hit")]
    assert {e.key for e in seen} == {double.key(2)}
    assert all(e.duration > 0 for e in seen)
    assert all(e.reason is None for e in seen)
    assert [e.is_call for e in seen] == [True, False, True]


@pytest.mark.parametrize(
    ("function", "args", "expected"),
    [
        (double, (1,), ()),
        (club_names, (), ("v:testapp.club",)),
        (class_names, (7,), (f"v:testapp.clubclass:club_id={pk_token((7,))}", "v:testapp.clubclass:*")),
    ],
    ids=["none", "model", "callable-where"],
)
def test_events_carry_the_version_keys_the_call_depends_on(seen, function, args, expected):
    function(*args)
    function(*args)
    assert [e.outcome for e in seen] == ["miss", "stored", "hit"]
    assert {e.dependencies for e in seen} == {tuple(names.key(k) for k in expected)}


def test_dependencies_the_event_cannot_know_are_none_not_empty(seen):
    with cachedcall.disabled():
        class_names(1)
        club_names()  # a disabled call resolves nothing, static dependencies neither
    class_names.invalidate(1)
    club_names()
    club_names.invalidate()
    assert [(e.outcome, e.dependencies) for e in seen] == [
        ("disabled", None),
        ("disabled", None),
        ("invalidated", None),
        ("miss", (names.key("v:testapp.club"),)),
        ("stored", (names.key("v:testapp.club"),)),
        ("invalidated", (names.key("v:testapp.club"),)),
    ]


@pytest.mark.django_db(transaction=True)
def test_cached_view_events_refused_and_stored():
    received: list[Event] = []
    with cachedcall.subscribe(received.append):
        Client().get("/clubs/3/")
        Client().get("/clubs/3/")
        Client().get("/cookie/")  # sets a cookie: not stored
    name = "tests.views.club_page"
    assert [(e.function, e.outcome) for e in received[:3]] == [
        (name, "miss"),
        (name, "stored"),
        (name, "hit"),
    ]
    assert received[0].dependencies == (
        names.key(f"v:testapp.clubclass:club_id={pk_token((3,))}"),
        names.key("v:testapp.clubclass:*"),
    )
    refused, miss = received[3:]
    assert (refused.function, refused.outcome, miss.outcome) == ("tests.views.sets_cookie", "refused", "miss")
    assert refused.reason and "cookie" in refused.reason
    assert refused.key == miss.key and not refused.is_call and miss.is_call


def test_unsubscribe_stops_delivery_and_twice_is_once():
    received: list[Event] = []
    subscription = cachedcall.subscribe(received.append)
    assert subscription.subscribed and events.active
    double(1)
    subscription.unsubscribe()
    subscription.unsubscribe()
    double(1)
    assert [e.outcome for e in received] == ["miss", "stored"]
    assert not subscription.subscribed and not events.active
    assert "unsubscribed" in repr(subscription)


def test_the_same_callback_subscribed_twice_is_two_subscriptions():
    received: list[Event] = []
    with cachedcall.subscribe(received.append), cachedcall.subscribe(received.append) as second:
        double(1)
        second.unsubscribe()
        double(1)
    assert [e.outcome for e in received] == ["miss", "miss", "stored", "stored", "hit"]


def test_a_subscription_is_closed_by_its_block_even_when_it_raises():
    with pytest.raises(ZeroDivisionError), cachedcall.subscribe(lambda event: None) as subscription:
        raise ZeroDivisionError
    assert not subscription.subscribed and not events.active


def test_a_callback_that_raises_is_logged_once_and_the_calls_go_on(cachedcall_log):
    received: list[Event] = []

    def broken(event):
        raise RuntimeError(f"broken on {event.outcome}")

    with cachedcall.subscribe(broken) as failing, cachedcall.subscribe(received.append):
        assert double(3) == double(3) == 6
    assert failing.errors == 3
    assert [e.outcome for e in received] == ["miss", "stored", "hit"]  # the next one still gets them
    logged = [r for r in cachedcall_log.records if "event callback" in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].levelno == logging.WARNING and logged[0].name == "cachedcall"
    assert "miss event of tests.test_events.double" in logged[0].getMessage()
    assert logged[0].exc_info is not None and "broken on miss" in str(logged[0].exc_info[1])


def test_a_callback_that_calls_a_decorated_function_does_not_recurse():
    received: list[Event] = []

    def calling(event):
        received.append(event)
        double(event.duration > -1)  # every event would call again

    with record() as recorded, cachedcall.subscribe(calling):
        double(5)
    assert [e.outcome for e in received] == ["miss", "stored"]
    # A recording sees everything, the callback's own calls included.
    assert [e.outcome for e in recorded] == ["miss", "miss", "stored", "stored", "hit"]


def test_callbacks_run_in_the_calling_thread_and_subscribing_races_no_call():
    received: list[tuple[int, str]] = []
    stop = threading.Event()

    def churn():
        # Subscriptions come and go while the other threads call.
        while not stop.is_set():
            with cachedcall.subscribe(lambda event: None):
                pass

    def calls(n):
        for i in range(200):
            assert double(n * 1000 + i % 10) == 2 * (n * 1000 + i % 10)

    churner = threading.Thread(target=churn)
    with cachedcall.subscribe(lambda event: received.append((threading.get_ident(), event.outcome))):
        churner.start()
        workers = [threading.Thread(target=calls, args=(n,)) for n in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        stop.set()
        churner.join()
    assert len(received) == 4 * (200 + 10)  # per thread: 10 misses stored, 190 hits
    assert {ident for ident, _ in received} == {w.ident for w in workers}
    assert not events.active


def test_async_calls_deliver_in_their_task():
    received: list[tuple[str, str | None]] = []

    async def main():
        async def one(x):
            asyncio.current_task().set_name(f"task-{x}")
            return await adouble(x)

        return await asyncio.gather(one(1), one(2))

    with cachedcall.subscribe(lambda e: received.append((e.outcome, asyncio.current_task().get_name()))):
        assert asyncio.run(main()) == [2, 4]
    assert sorted(received) == [
        ("miss", "task-1"),
        ("miss", "task-2"),
        ("stored", "task-1"),
        ("stored", "task-2"),
    ]


def test_with_nobody_listening_a_call_never_reaches_emit(monkeypatch):
    def emit(*args, **kwargs):
        raise AssertionError("emit() called while nobody listens")

    monkeypatch.setattr(events, "emit", emit)
    assert not events.active
    assert double(8) == double(8) == 16
    double.invalidate(8)
    double.invalidate_all()
    with cachedcall.disabled():
        assert double(8) == 16


@pytest.mark.django_db(transaction=True)
def test_a_call_site_that_does_not_test_active_first_costs_a_return():
    # cached_view reports its refusals unguarded (they are off the hit path).
    assert not events.active
    assert Client().get("/cookie/").status_code == 200


def test_forget_closes_recordings_not_subscriptions():
    received: list[Event] = []
    with cachedcall.subscribe(received.append) as subscription:
        with record() as recorded:
            forget_process_state()
            double(6)
        assert subscription.subscribed and events.active
        assert [e.outcome for e in received] == ["miss", "stored"]
        assert len(recorded) == 0


def test_subscribe_refuses_what_it_cannot_call():
    with pytest.raises(
        TypeError, match=r"subscribe\(\[\]\): the callback must be a callable taking one Event, not a list"
    ):
        cachedcall.subscribe([])  # type: ignore[arg-type]
    assert not events.active


def test_the_public_names():
    assert cachedcall.subscribe is events.subscribe
    assert cachedcall.Event is Event and cachedcall.Subscription is events.Subscription
    assert set(events.OUTCOMES) - {"stored", "invalidated"} == events.CALL_OUTCOMES
