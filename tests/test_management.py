"""``manage.py cachedcall``, run through call_command."""

from __future__ import annotations

from collections import Counter
from io import StringIO

import pytest
from django.core.management import CommandError
from django.core.management import call_command
from django.test import override_settings

from cachedcall import cached
from tests import servers
from tests.testapp.models import Club
from tests.testapp.models import ClubClass

calls: Counter[str] = Counter()


@cached(timeout=60, depends_on=lambda club: [club, ClubClass])
def club_summary(club):
    calls[club.name] += 1
    return f"{club.name}: {ClubClass.objects.filter(club=club).count()}"


def run(*args):
    out = StringIO()
    call_command("cachedcall", *args, stdout=out)
    return out.getvalue()


def test_settings_shows_what_is_in_effect():
    with override_settings(CACHEDCALL={"KEY_PREFIX": "ops", "TIMEOUT": 30}):
        out = run("settings")
    assert "KEY_PREFIX      ops" in out and "TIMEOUT         30" in out and "ENABLED         True" in out


@pytest.mark.usefixtures("backend_name", "no_other_functions")
def test_backends_reports_each_alias():
    out = run("backends")
    assert out.startswith("default         ok")


def test_backends_fails_when_an_alias_does_not_answer():
    dead = servers.memcached(servers.free_port())
    with (
        override_settings(CACHES={"default": servers.memcached_config(dead)}),
        pytest.raises(CommandError, match="do not answer"),
    ):
        run("backends")


@pytest.mark.usefixtures("backend_name")
@pytest.mark.django_db(transaction=True)
def test_stats_reset_and_bump():
    chess = Club.objects.create(name="chess")
    core = club_summary._self_function_cache  # counters are per process, cumulative across tests
    hits, misses = core.hits, core.misses
    club_summary(chess), club_summary(chess)
    stats = run("stats")
    line = next(row for row in stats.splitlines() if row.startswith("tests.test_management.club_summary"))
    assert line.split()[1:] == [str(hits + 1), str(misses + 1), "0"]
    assert "Every cachedcall entry is now unreachable" in run("reset")
    club_summary(chess)
    assert calls["chess"] == 2
    assert "Bumped testapp.ClubClass." in run("bump", "testapp.ClubClass")
    club_summary(chess)
    assert calls["chess"] == 3
    assert f"Bumped row pk={chess.pk} of testapp.Club." in run("bump", "testapp.Club", "--pk", str(chess.pk))
    club_summary(chess)
    club_summary(chess)
    assert calls["chess"] == 4
    with pytest.raises(CommandError, match="names no installed model"):
        run("bump", "testapp.Nope")
