"""Inside a test's own transaction, writes count as committed for caching.

Django's ``TestCase`` and pytest-django's ``db`` fixture run each test in ``atomic()``
blocks that never commit. A write in them is bumped at once, so the next call reads fresh
data and stores it and the one after is a hit; when the test's block is rolled back, the
entries made from its rows become stale before the next test reads anything. In the test's
own ``atomic()`` blocks, read-your-writes still bypasses the cache. ``TransactionTestCase``
and ``transactional_db`` commit for real and end with a flush, which makes every entry stale.
"""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection
from django.db import transaction
from django.test import TestCase
from django.test import TransactionTestCase

from cachedcall import cached
from cachedcall import testworld
from cachedcall.testing import record
from tests.testapp.models import Club


@cached(timeout=600, depends_on=[Club])
def club_names():
    return sorted(Club.objects.values_list("name", flat=True))


def _counts(events):
    return events.misses(club_names), events.hits(club_names), events.bypassed(club_names)


def test_the_gate_on_djangos_test_blocks_is_open():
    # A contract with Django: connection.atomic_blocks, and TestCase's _from_testcase mark.
    assert testworld.available()


class WritesInATestCase(TestCase):
    @classmethod
    def setUpTestData(cls):
        Club.objects.create(name="from-setup")

    def test_a_write_is_read_at_once_and_then_cached(self):
        with record() as events:
            self.assertEqual(club_names(), ["from-setup"])
            self.assertEqual(club_names(), ["from-setup"])
            Club.objects.create(name="from-test")
            self.assertEqual(club_names(), ["from-setup", "from-test"])
            self.assertEqual(club_names(), ["from-setup", "from-test"])
        self.assertEqual(_counts(events), (2, 2, 0))

    def test_read_your_writes_bypass_holds_in_the_tests_own_atomic_block(self):
        club_names()
        with record() as events:
            with transaction.atomic():
                Club.objects.create(name="inside")
                self.assertIn("inside", club_names())  # pending: bypassed
            self.assertIn("inside", club_names())  # the block is done: read and stored
            self.assertIn("inside", club_names())  # a hit
        self.assertEqual(_counts(events), (1, 1, 1))

    def test_a_rolled_back_inner_block_is_never_seen(self):
        club_names()
        try:
            with transaction.atomic():
                Club.objects.create(name="rolled-back")
                raise ValueError
        except ValueError:
            pass
        self.assertEqual(club_names(), ["from-setup"])

    def test_x_rows_of_the_previous_tests_are_gone(self):
        # Runs after the tests above (unittest orders them by name): whatever they cached
        # from their own rows is stale now.
        self.assertEqual(club_names(), ["from-setup"])


@pytest.mark.django_db
def test_pytest_django_db_writes_count_too():
    with record() as events:
        assert club_names() == []
        Club.objects.create(name="pytest")
        assert club_names() == ["pytest"]
        assert club_names() == ["pytest"]
    assert _counts(events) == (2, 1, 0)


@pytest.mark.django_db
def test_pytest_django_db_rows_of_the_previous_test_are_gone():
    assert club_names() == []


class FlushedAfterEach(TransactionTestCase):
    def test_a_commit_is_cached(self):
        Club.objects.create(name="committed")
        self.assertEqual(club_names(), ["committed"])
        with record() as events:
            self.assertEqual(club_names(), ["committed"])
        self.assertEqual(events.hits(club_names), 1)

    def test_b_the_flush_made_it_stale(self):
        self.assertEqual(club_names(), [])


@pytest.mark.django_db(transaction=True)
def test_manage_py_flush_makes_every_entry_stale():
    Club.objects.create(name="before-flush")
    assert club_names() == ["before-flush"]
    call_command("flush", interactive=False, verbosity=0)
    with record() as events:
        assert club_names() == []
    assert events.misses(club_names) == 1


@pytest.mark.django_db
def test_outside_any_test_block_nothing_is_watched():
    assert testworld.in_test_world(connection)
    assert not testworld.in_test_world(type("Bare", (), {"atomic_blocks": []})())


@pytest.mark.django_db(transaction=True)
def test_entries_made_from_a_rolled_back_test_block_are_stale_before_the_next_read():
    # What TestCase does around a test, spelled out so that the order is certain.
    block = transaction.atomic()
    block._from_testcase = True
    block.__enter__()
    try:
        Club.objects.create(name="only-in-the-test")
        assert club_names() == ["only-in-the-test"]
        assert club_names() == ["only-in-the-test"]  # stored, stamped with the bumped counter
    finally:
        transaction.set_rollback(True)
        block.__exit__(None, None, None)
    with record() as events:
        assert club_names() == []
    assert events.misses(club_names) == 1
