"""Races and processes on a real PostgreSQL: the suite creates its own test database."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from django.core.cache import caches
from django.db import connections
from django.db import transaction
from django.test import override_settings

from cachedcall import cached
from cachedcall import where
from cachedcall.testing import record
from tests import servers
from tests.testapp.models import Club
from tests.testapp.models import ClubClass

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "pg"])


@cached(timeout=600, key=["club_pk"], depends_on=lambda club_pk, pause=None: [where(ClubClass, club=club_pk)])
def pg_classes(club_pk, pause=None):
    names = sorted(ClubClass.objects.using("pg").filter(club_id=club_pk).values_list("name", flat=True))
    if pause is not None:
        pause()
    return names


def _finish_thread():
    # What Django's request_finished does for a request thread: close what it opened.
    connections.close_all()
    caches.close_all()


@pytest.fixture
def memcached_default(memcached_server):
    with override_settings(CACHES={"default": servers.memcached_config(memcached_server)}):
        caches["default"].clear()
        yield memcached_server
        caches["default"].close()


def test_a_write_committing_while_a_reader_computes_leaves_the_entry_stale(memcached_default):
    club = Club.objects.using("pg").create(name="chess")
    ClubClass.objects.using("pg").create(club=club, name="old")
    reader_read = threading.Event()
    writer_committed = threading.Event()
    results = {}

    def reader():
        # R reads the old rows, then waits until W has committed before storing its value.
        def pause():
            reader_read.set()
            writer_committed.wait(10)

        results["reader"] = pg_classes(club.pk, pause=pause)
        _finish_thread()

    def writer():
        reader_read.wait(10)
        with transaction.atomic(using="pg"):
            ClubClass.objects.using("pg").create(club=club, name="new")
        writer_committed.set()
        _finish_thread()

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results["reader"] == ["old"]  # computed from the rows it saw
    assert pg_classes.__wrapped__(club.pk) == ["new", "old"]
    assert pg_classes(club.pk) == ["new", "old"]  # the entry R stored was already stale


def test_a_writer_process_that_never_imported_the_reader_still_bumps(memcached_default):
    club = Club.objects.using("pg").create(name="go")
    assert pg_classes(club.pk) == []
    assert pg_classes(club.pk) == []
    db_name = connections["pg"].settings_dict["NAME"]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    subprocess.run(
        [sys.executable, "-m", "tests.writer", memcached_default.location, db_name, str(club.pk), "joseki"],
        env=env,
        check=True,
        timeout=60,
    )
    assert pg_classes(club.pk) == ["joseki"]


@cached(timeout=600, cache="mc", depends_on=lambda club_pk: [where(ClubClass, club=club_pk)])
def mc_classes(club_pk):
    return sorted(ClubClass.objects.using("pg").filter(club_id=club_pk).values_list("name", flat=True))


def test_entries_in_a_named_alias_go_stale_when_a_process_that_never_imported_them_writes(memcached_server):
    # CACHES = {"default": LocMemCache, "mc": memcached} and @cached(cache="mc"): the counters
    # live beside the entries in "mc", and a writer bumps every alias, so a save in another
    # process reaches them (with counters in the process-local default, it never did).
    caches_ = {"default": dict(servers.LOCMEM), "mc": servers.memcached_config(memcached_server)}
    with override_settings(CACHES=caches_):
        caches["mc"].clear()
        club = Club.objects.using("pg").create(name="hnefatafl")
        assert mc_classes(club.pk) == []
        with record() as events:
            assert mc_classes(club.pk) == []
        assert events.hits(mc_classes) == 1
        db_name = connections["pg"].settings_dict["NAME"]
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        argv = [
            sys.executable,
            "-m",
            "tests.writer",
            memcached_server.location,
            db_name,
            str(club.pk),
            "tafl",
            "mc",
        ]
        subprocess.run(argv, env=env, check=True, timeout=60)
        assert mc_classes(club.pk) == ["tafl"]
        caches["mc"].close()


def test_two_transactions_interleaved_each_bump_after_their_own_commit(memcached_default):
    club = Club.objects.using("pg").create(name="shogi")
    pg_classes(club.pk)
    in_tx = threading.Event()
    go_on = threading.Event()

    def slow_writer():
        with transaction.atomic(using="pg"):
            ClubClass.objects.using("pg").create(club=club, name="slow")
            in_tx.set()
            go_on.wait(10)
        _finish_thread()

    thread = threading.Thread(target=slow_writer)
    thread.start()
    in_tx.wait(10)
    assert pg_classes(club.pk) == []  # not committed: not visible, and no bump yet
    go_on.set()
    thread.join(10)
    time.sleep(0.05)
    assert pg_classes(club.pk) == ["slow"]
