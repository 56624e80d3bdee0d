"""The README's testing recipes, run as written.

Each block between ``# README: <name>`` and ``# /README`` appears verbatim in README.rst
(the last test checks it), so the recipes users copy are recipes that pass.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import TestCase
from django.test import TransactionTestCase

from cachedcall import cached
from cachedcall.testing import record
from tests.testapp.models import Club


# README: function
@cached(timeout=600, depends_on=[Club])
def club_names():
    return sorted(Club.objects.values_list("name", flat=True))


# /README


# README: TestCase
class ClubNamesTests(TestCase):
    def test_a_new_club_is_read_at_once_then_cached(self):
        club_names()
        Club.objects.create(name="chess")  # in the test's transaction: counts as committed
        with record() as events:
            self.assertEqual(club_names(), ["chess"])  # miss: the fresh rows, stored
            self.assertEqual(club_names(), ["chess"])  # hit
        events.assert_counts(club_names, miss=1, hit=1)

    def test_the_previous_tests_rows_are_gone(self):
        self.assertEqual(club_names(), [])  # its entries went stale with its rollback


# /README


# README: TransactionTestCase
class CommittedClubTests(TransactionTestCase):
    def test_a_committed_club_is_cached(self):
        Club.objects.create(name="go")  # a real commit: bumped after it
        with record() as events:
            self.assertEqual(club_names(), ["go"])
            self.assertEqual(club_names(), ["go"])
        events.assert_counts(club_names, miss=1, hit=1)
        # The flush after each test makes every entry stale for the next one.


# /README


# README: pytest
@pytest.mark.django_db  # the db fixture: a transaction per test, as TestCase
def test_with_db(cachedcall_events):
    Club.objects.create(name="shogi")
    assert club_names() == ["shogi"]
    assert club_names() == ["shogi"]
    cachedcall_events.assert_counts(club_names, miss=1, hit=1)


@pytest.mark.django_db(transaction=True)  # transactional_db: real commits, then a flush
def test_with_transactional_db(cachedcall_events):
    Club.objects.create(name="xiangqi")
    assert club_names() == ["xiangqi"]
    assert club_names() == ["xiangqi"]
    cachedcall_events.assert_counts(club_names, miss=1, hit=1)


# /README


# README: subscribe
def test_a_subscription_sees_every_call(db):
    import cachedcall

    seen = []
    with cachedcall.subscribe(seen.append):  # or keep the Subscription; .unsubscribe()
        club_names()
        club_names()
    assert [e.outcome for e in seen if e.is_call] == ["miss", "hit"]
    assert seen[-1].dependencies[-1].endswith(":v:testapp.club")  # the counters it checked


# /README


# README: prometheus
def test_calls_are_exported_to_prometheus(db):
    from prometheus_client import CollectorRegistry

    from cachedcall.contrib.prometheus import export

    registry = CollectorRegistry()
    exporter = export(registry)  # once, e.g. in AppConfig.ready(); exporter.close() undoes it
    club_names()
    club_names()
    labels = {"function": "tests.test_readme_recipes.club_names", "outcome": "hit"}
    assert registry.get_sample_value("cachedcall_calls_total", labels) == 1
    exporter.close()


# /README


def test_every_recipe_is_in_the_readme_as_written():
    source = Path(__file__).read_text()
    readme = (Path(__file__).resolve().parent.parent / "README.rst").read_text()
    recipes = re.findall(r"# README: (\S+)\n(.*?)# /README\n", source, flags=re.S)
    assert [name for name, _ in recipes] == [
        "function",
        "TestCase",
        "TransactionTestCase",
        "pytest",
        "subscribe",
        "prometheus",
    ]
    for name, body in recipes:
        body = body.rstrip() + "\n"
        indented = "".join(f"    {line}" if line.strip() else line for line in body.splitlines(True))
        assert indented in readme, f"the README's {name} recipe differs from tests/test_readme_recipes.py"
