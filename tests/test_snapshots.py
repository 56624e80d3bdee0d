"""Snapshot isolation: a miss inside a REPEATABLE READ transaction is computed, never stored."""

from __future__ import annotations

import threading

import pytest
from django.db import connections
from django.db import transaction
from django.test import override_settings

from cachedcall import cached
from cachedcall import where
from cachedcall.snapshots import open_snapshot
from cachedcall.testing import record
from tests.testapp.models import Club
from tests.testapp.models import ClubClass

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "pg", "pg_rr"])


@cached(timeout=600, key=["club_pk"], depends_on=lambda club_pk, using: [where(ClubClass, club=club_pk)])
def names_of(club_pk, using):
    return sorted(ClubClass.objects.using(using).filter(club_id=club_pk).values_list("name", flat=True))


def _commit_in_another_thread(club):
    # A writer in another thread commits (and bumps) while the reader's snapshot is open.
    def write():
        ClubClass.objects.using("pg").create(club=club, name="new")
        connections.close_all()

    thread = threading.Thread(target=write)
    thread.start()
    thread.join(10)


@pytest.mark.parametrize("how", ["options", "declared"])
def test_a_value_computed_from_an_old_snapshot_is_returned_but_not_stored(how):
    club = Club.objects.using("pg").create(name="chess")
    ClubClass.objects.using("pg").create(club=club, name="old")
    using = "pg_rr" if how == "options" else "pg"
    settings = {"SNAPSHOT_DATABASES": ["pg"]} if how == "declared" else {}
    with override_settings(CACHEDCALL=settings), record() as events:
        with transaction.atomic(using=using):
            if how == "declared":
                connections["pg"].cursor().execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            assert Club.objects.using(using).count() == 1  # the snapshot starts here
            _commit_in_another_thread(club)
            assert open_snapshot() == using
            # Its own snapshot: the old rows, right for this transaction...
            assert names_of(club.pk, using) == ["old"]
        # ...and never served to anyone else under the counters it read after the bump.
        assert names_of(club.pk, using) == ["new", "old"]
        assert names_of(club.pk, using) == ["new", "old"]
    assert [e.reason for e in events if e.outcome == "refused"] == ["snapshot"]
    assert events.hits(names_of) == 1 and events.stored(names_of) == 1


def test_hits_are_served_inside_a_snapshot():
    club = Club.objects.using("pg").create(name="chess")
    assert names_of(club.pk, "pg") == []
    with record() as events, transaction.atomic(using="pg_rr"):
        Club.objects.using("pg_rr").count()
        assert names_of(club.pk, "pg_rr") == []
    assert events.hits(names_of) == 1


@pytest.mark.parametrize("using", ["pg", "default"])
def test_read_committed_and_sqlite_transactions_store_as_before(using):
    club = Club.objects.using("pg").create(name="chess")
    with record() as events, transaction.atomic(using=using):
        assert open_snapshot() is None
        names_of(club.pk, "pg")
        names_of(club.pk, "pg")
    assert events.stored(names_of) == 1 and events.hits(names_of) == 1


def test_snapshot_databases_is_checked():
    from django.core.exceptions import ImproperlyConfigured

    from cachedcall import conf

    with override_settings(CACHEDCALL={"SNAPSHOT_DATABASES": "pg"}):
        with pytest.raises(ImproperlyConfigured, match="SNAPSHOT_DATABASES"):
            conf.get()
