"""cached_view behind the middleware of a startproject site: sessions in the database,
authentication, async views, visitors logged in and anonymous with a session.

tests/settings.py has Django's default SessionMiddleware (database sessions) and
AuthenticationMiddleware; every test runs on locmem, memcached and Redis.
"""

from __future__ import annotations

import asyncio

import django
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import AsyncClient
from django.test import Client
from django.test import RequestFactory

from cachedcall.testing import record
from tests import views

pytestmark = [pytest.mark.usefixtures("backend_name"), pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _reset():
    views.ran.clear()


async def _login(client: AsyncClient, user: User) -> None:
    if hasattr(client, "aforce_login"):  # Django 5.0+
        await client.aforce_login(user)
    else:
        await sync_to_async(client.force_login)(user)


async def _anonymous_with_session() -> AsyncClient:
    client = AsyncClient()
    response = await client.get("/start-session/")
    assert response.status_code == 200 and "sessionid" in response.cookies
    return client


def test_async_view_serves_anonymous_visitors_with_a_session_and_logged_in_users():
    alice = User.objects.create_user("alice", password="pw")

    async def scenario() -> list[bytes]:
        anon = await _anonymous_with_session()
        logged_in = AsyncClient()
        await _login(logged_in, alice)
        pages = []
        for client in (anon, anon, logged_in, logged_in, AsyncClient()):
            response = await client.get("/async-whoami/")
            assert response.status_code == 200
            pages.append(response.content)
        return pages

    pages = asyncio.run(scenario())
    assert pages == [
        b"async_whoami 1 anonymous",
        b"async_whoami 1 anonymous",  # a hit
        b"async_whoami 2 alice",  # authenticated without per_user: bypassed, never stored
        b"async_whoami 3 alice",
        b"async_whoami 1 anonymous",  # no session at all: the anonymous entry
    ]


def test_async_view_with_per_user_keys_each_logged_in_user_apart():
    alice = User.objects.create_user("alice", password="pw")
    bob = User.objects.create_user("bob", password="pw")

    async def scenario() -> list[bytes]:
        a, b = AsyncClient(), AsyncClient()
        await _login(a, alice)
        await _login(b, bob)
        anon = await _anonymous_with_session()
        order = (a, b, a, b, anon, anon)
        return [(await client.get("/async-whoami-per-user/")).content for client in order]

    assert asyncio.run(scenario()) == [
        b"async_whoami_per_user 1 alice",
        b"async_whoami_per_user 2 bob",
        b"async_whoami_per_user 1 alice",
        b"async_whoami_per_user 2 bob",
        b"async_whoami_per_user 3 anonymous",
        b"async_whoami_per_user 3 anonymous",
    ]


def test_resolving_the_user_is_not_the_view_reading_the_session():
    # An async page that never touches the session must not vary on Cookie because we
    # looked the user up: two anonymous visitors with different sessions share its entry.
    async def scenario() -> list[bytes]:
        one, two = await _anonymous_with_session(), await _anonymous_with_session()
        return [(await client.get("/async/")).content for client in (one, two, one)]

    assert asyncio.run(scenario()) == [b"async 1", b"async 1", b"async 1"]


def test_a_view_that_writes_the_session_is_never_stored():
    client = Client()
    with record() as events:
        first = client.get("/writes-session/")
        second = client.get("/writes-session/")
    assert first.content == b"writes_session 1 1" and second.content == b"writes_session 2 2"
    assert "sessionid" in first.cookies
    refusals = events.filter(views.writes_session, "refused")
    assert [e.reason for e in refusals] == ["the view wrote the session"] * 2
    assert views.ran["writes_session"] == 2


def test_a_head_request_served_from_the_entry_has_no_body_when_called_directly():
    factory = RequestFactory()
    get = views.plain(factory.get("/plain/"))
    head = views.plain(factory.head("/plain/"))
    assert get.content == b"plain 1"
    assert head.content == b"" and head["Content-Length"] == str(len(b"plain 1"))
    assert views.ran["plain"] == 1


def test_async_class_based_views_through_as_view():
    async def scenario() -> list[bytes]:
        client = AsyncClient()
        return [(await client.get("/async-as-view/")).content for _ in range(2)]

    assert asyncio.run(scenario()) == [b"async_class_based 1"] * 2


if django.VERSION >= (5, 0):  # method_decorator wraps async methods from Django 5.0 on

    def test_async_class_based_views_through_method_decorator():
        async def scenario() -> list[bytes]:
            client = AsyncClient()
            return [(await client.get("/async-method-decorated/")).content for _ in range(2)]

        assert asyncio.run(scenario()) == [b"async_method_decorated 1"] * 2
