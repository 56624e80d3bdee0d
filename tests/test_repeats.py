"""REPLICA_LAG: every bump repeats after the lag, so an entry computed from a replica that
had not caught up goes stale too."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from cachedcall import cached
from cachedcall import conf
from cachedcall import repeats
from tests.testapp.models import Club

pytestmark = [pytest.mark.usefixtures("backend_name"), pytest.mark.django_db(transaction=True)]

LAG = 0.3
# What a lagging replica answers: the club names as of LAG seconds ago. Replication itself
# is not under test here (benchmarks/race.py runs a real lagging database); the bumps are.
replica: dict[str, list[str]] = {"names": []}


def _replicate_later():
    names = sorted(Club.objects.values_list("name", flat=True))
    threading.Timer(LAG / 2, replica.__setitem__, ("names", names)).start()


@cached(timeout=600, depends_on=[Club])
def club_names():
    return list(replica["names"])


def test_an_entry_computed_from_a_lagging_replica_goes_stale_after_the_lag():
    replica["names"] = []
    with override_settings(CACHEDCALL={"REPLICA_LAG": LAG}):
        assert club_names() == []
        Club.objects.create(name="chess")
        _replicate_later()
        # The bump has landed, the replica has not replayed the write: this reader stores
        # the old rows under the new counters.
        assert club_names() == []
        assert repeats.waiting() == 1
        time.sleep(LAG + 0.2)
        assert repeats.waiting() == 0
        assert club_names() == ["chess"]


def test_without_the_setting_nothing_repeats():
    replica["names"] = []
    assert club_names() == []
    Club.objects.create(name="chess")
    _replicate_later()
    assert club_names() == []
    assert repeats.waiting() == 0
    time.sleep(LAG)
    assert club_names() == []  # the stale entry the setting exists for


def test_forget_makes_the_waiting_repeats_now():
    with override_settings(CACHEDCALL={"REPLICA_LAG": 30}):
        club_names()
        Club.objects.create(name="chess")
        assert repeats.waiting() == 1
        repeats.forget()
        assert repeats.waiting() == 0


@pytest.mark.parametrize("value", [-1, 61, "1", True])
def test_the_lag_is_checked(value):
    with (
        override_settings(CACHEDCALL={"REPLICA_LAG": value}),
        pytest.raises(ImproperlyConfigured, match="REPLICA_LAG"),
    ):
        conf.get()


def test_each_repeat_logs_when_its_bumps_were_due_and_when_it_landed():
    # benchmarks/race.py judges the replica scenario from these two records: the dues say
    # which writes a repeat covers, the second record when it landed.
    seen: list[tuple[float, logging.LogRecord]] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((time.monotonic(), record))

    log = logging.getLogger("cachedcall")
    handler, level = Handler(level=logging.DEBUG), log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        with override_settings(CACHEDCALL={"REPLICA_LAG": LAG}):
            club_names()
            before = time.monotonic()
            Club.objects.create(name="chess")
            after = time.monotonic()
            time.sleep(LAG + 0.2)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    made = [(t, r) for t, r in seen if r.getMessage().startswith("cachedcall: repeat")]
    assert [r.getMessage().split(" the bumps")[0] for _, r in made] == [
        "cachedcall: repeating",
        "cachedcall: repeated",
    ]
    (started, record), (landed, done) = made
    count, first, last = record.args
    assert count >= 1  # the club's row, its scopes, its table
    # Every bump of the create was due LAG after it; made after that, landed after that.
    assert before + LAG <= first <= last <= after + LAG
    assert last <= started
    assert done.args[0] == count
    assert started <= done.args[1] <= landed
