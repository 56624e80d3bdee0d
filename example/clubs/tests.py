"""The example's tests: the query function without its cache, and the caching layer alone.

Run with ``python example/manage.py test clubs``; the project's TEST_RUNNER resets cachedcall
once at the start, so nothing an earlier run or the dev server stored is ever read.
"""

import datetime

from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import TestCase

from cachedcall.testing import isolated
from cachedcall.testing import record
from clubs.models import Club
from clubs.models import ClubClass
from clubs.queries import club_classes
from clubs.views import club_page
from clubs.views import my_page


class ClubClassesQueryTests(TestCase):
    """The function itself, through __wrapped__: no cache is read or written."""

    @classmethod
    def setUpTestData(cls):
        cls.chess = Club.objects.create(name="chess")
        ClubClass.objects.create(club=cls.chess, name="Late", start_time=datetime.time(20))
        ClubClass.objects.create(club=cls.chess, name="Early", start_time=datetime.time(9))

    def test_classes_are_ordered_by_start_time(self):
        with record() as events:
            names = [c.name for c in club_classes.__wrapped__(self.chess)]
        self.assertEqual(names, ["Early", "Late"])
        self.assertEqual(len(events), 0)  # the cache was not involved at all


@isolated()
class ClubPageCachingTests(TestCase):
    """The caching layer on its own: what hits, what misses, what an edit invalidates."""

    @classmethod
    def setUpTestData(cls):
        cls.chess = Club.objects.create(name="chess")
        cls.go = Club.objects.create(name="go")
        cls.openings = ClubClass.objects.create(club=cls.chess, name="Openings", start_time=datetime.time(18))

    def test_second_render_is_served_from_the_cache(self):
        with self.assertNumQueries(2):
            self.client.get("/clubs/chess/")
        with record() as events, self.assertNumQueries(0):
            response = self.client.get("/clubs/chess/")
        events.assert_counts(club_page, hit=1, miss=0)
        self.assertEqual(events.count(club_classes), 0)  # the page hit needed no query function
        self.assertContains(response, "Openings")

    def test_an_edit_shows_up_on_the_next_render(self):
        self.client.get("/clubs/chess/")
        self.client.get("/clubs/go/")
        with self.captureOnCommitCallbacks(execute=True):
            self.openings.name = "Openings in room 2"
            self.openings.save()
        with record() as events:
            chess = self.client.get("/clubs/chess/")
            self.client.get("/clubs/go/")
        self.assertContains(chess, "Openings in room 2")
        self.assertEqual(events.misses(club_page), 1)  # chess only
        self.assertEqual(events.hits(club_page), 1)  # go stayed a hit
        self.assertEqual(events.misses(club_classes), 1)

    def test_unknown_club_is_a_404_and_is_not_cached(self):
        self.assertEqual(self.client.get("/clubs/nope/").status_code, 404)
        with record() as events:
            self.assertEqual(self.client.get("/clubs/nope/").status_code, 404)
        self.assertEqual(events.hits(club_page), 0)


class AsyncPageTests(TestCase):
    """The async page, behind the default middleware (database sessions, authentication)."""

    @classmethod
    def setUpTestData(cls):
        cls.ada = User.objects.create_user("ada", password="not-a-secret")
        Club.objects.create(name="chess")

    async def test_a_logged_in_visitor_loads_it_then_gets_it_from_the_cache(self):
        if hasattr(self.async_client, "aforce_login"):  # Django 5.0+
            await self.async_client.aforce_login(self.ada)
        else:
            await sync_to_async(self.async_client.force_login)(self.ada)
        with record() as events:
            first = await self.async_client.get("/me/")
            second = await self.async_client.get("/me/")
        self.assertContains(first, "Hello ada")
        self.assertContains(second, "chess")
        events.assert_counts(my_page, miss=1, hit=1)

    async def test_an_anonymous_visitor_gets_the_anonymous_page(self):
        self.assertContains(await self.async_client.get("/me/"), "Hello visitor")
