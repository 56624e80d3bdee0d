"""``manage.py cachedcall`` (and ``flush``), run through call_command and, for the way
mistakes are reported, through a real ``python -m django`` too."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from io import StringIO
from pathlib import Path

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
    stats = run("stats", "--local")
    line = next(row for row in stats.splitlines() if row.startswith("tests.test_management.club_summary"))
    # hits, misses, stored, errors, refused, stale, hit ratio
    assert line.split()[1:4] == [str(hits + 1), str(misses + 1), str(misses + 1)]
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
    assert "Bumped row pk=123456 of testapp.Club." in run("bump", "testapp.Club", "--pk", "123456")  # deleted


@pytest.mark.usefixtures("no_other_functions")
def test_backends_probes_the_aliases_named():
    with override_settings(
        CACHES={"default": servers.LOCMEM, "spare": dict(servers.LOCMEM, LOCATION="spare")}
    ):
        out = run("backends", "spare")
    assert out.startswith("spare           ok") and len(out.splitlines()) == 1


ROOT = Path(__file__).resolve().parent.parent

# Mistakes in the command line, and the one line each is reported with (exit status 2).
MISTAKES = [
    (("cachedcall",), "the following arguments are required: action"),
    (("cachedcall", "nope"), "argument action: invalid choice:"),
    (("cachedcall", "settings", "extra"), "unrecognized arguments: extra"),
    (("cachedcall", "stats", "--bogus"), "unrecognized arguments: --bogus"),
    (
        ("cachedcall", "reset", "-v", "9"),
        "argument -v/--verbosity: invalid choice: 9 (choose from 0, 1, 2, 3)",
    ),
    (("cachedcall", "-v", "x", "reset"), "argument -v/--verbosity: invalid int value: 'x'"),
    (
        ("cachedcall", "backends", "nope"),
        "argument ALIAS: 'nope' is not an alias of settings.CACHES; its aliases: default",
    ),
    (("cachedcall", "bump"), "the following arguments are required: model"),
    (("cachedcall", "bump", "nope"), "argument model: 'nope' is not an app_label.ModelName label, such as "),
    (("cachedcall", "bump", "a.b.c"), "argument model: 'a.b.c' is not an app_label.ModelName label"),
    (
        ("cachedcall", "bump", "nope.Nope"),
        "'nope.Nope': no installed app has the label 'nope'; installed: auth, cachedcall,",
    ),
    (
        ("cachedcall", "bump", "testapp.Nope"),
        "the app 'testapp' has no model 'Nope'; its models: Club, ClubClass,",
    ),
    (("cachedcall", "bump", "cachedcall.Nope"), "the app 'cachedcall' has no model 'Nope'; its models: none"),
    (
        ("cachedcall", "bump", "testapp.Club", "--pk", "abc"),
        "argument --pk: 'abc' is not a pk of testapp.Club: “abc” value must be an integer.",
    ),
    (
        ("cachedcall", "bump", "testapp.Club", "--pk", "9" * 20),
        "is not a pk of testapp.Club: ",
    ),
    (("cachedcall", "bump", "testapp.Club", "--pk"), "argument --pk: expected one argument"),
    (("cachedcall", "bump", "testapp.Club", "extra"), "unrecognized arguments: extra"),
    (("cachedcall", "bump", "sessions.Session"), "sessions.Session is in CACHEDCALL['IGNORE_MODELS']"),
    (("flush", "--database", "nope"), "argument --database: invalid choice:"),
    (("flush", "--no-input", "extra"), "unrecognized arguments: extra"),
]


@pytest.mark.django_db  # on Django 4.2, an out-of-range pk is only found out by the database
@pytest.mark.parametrize(("argv", "message"), MISTAKES, ids=[" ".join(argv) for argv, _ in MISTAKES])
def test_a_mistake_is_one_line_and_exit_status_2(argv, message):
    with pytest.raises(CommandError) as raised:
        call_command(*argv, stdout=StringIO(), stderr=StringIO())
    assert raised.value.returncode == 2
    assert str(raised.value).startswith("Error: ") and "\n" not in str(raised.value)
    assert message in str(raised.value)


def test_broken_settings_are_one_line_and_exit_status_1():
    # The system checks report them first, unless they are skipped, as call_command does.
    with override_settings(CACHEDCALL={"BOGUS": 1}), pytest.raises(CommandError) as raised:
        run("settings")
    assert raised.value.returncode == 1
    assert str(raised.value).startswith("settings.CACHEDCALL has unknown key(s) 'BOGUS'; known keys are")


def django_admin(*argv):
    """``python -m django ARGV --settings=tests.settings``, as a person would type it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, "-m", "django", *argv, "--settings=tests.settings"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("argv", "status", "start"),
    [
        (
            ("cachedcall", "bump", "testapp.Club", "--pk", "abc"),
            2,
            "__main__.py cachedcall bump: error: argument --pk: 'abc' is not a pk of testapp.Club: “abc” value must be an integer.",
        ),
        (
            ("cachedcall", "bump", "nope"),
            2,
            "__main__.py cachedcall bump: error: argument model: 'nope' is not an app_label.ModelName label, such as contenttypes.ContentType",
        ),
        (
            ("cachedcall", "backends", "nope"),
            2,
            "__main__.py cachedcall backends: error: argument ALIAS: 'nope' is not",
        ),
        # argparse words its choices differently from one Python to the next.
        (("cachedcall", "nope"), 2, "__main__.py cachedcall: error: argument action: invalid choice:"),
        (
            ("flush", "--database", "nope"),
            2,
            "__main__.py flush: error: argument --database: invalid choice:",
        ),
        # Not a mistake in the command line: the database has no tables (:memory:, never
        # migrated). Exit status 1, one line all the same.
        (
            ("cachedcall", "bump", "testapp.Club", "--pk", "7"),
            1,
            "CommandError: Reading testapp.Club pk=7: OperationalError: no such table: testapp_club",
        ),
    ],
    ids=["pk", "model", "alias", "subcommand", "flush-database", "database-error"],
)
def test_from_the_command_line_a_mistake_is_one_line_without_a_traceback(argv, status, start):
    result = django_admin(*argv)
    assert (result.returncode, result.stdout) == (status, "")
    assert result.stderr.startswith(start) and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_from_the_command_line_common_options_may_follow_the_subcommand():
    # Django reads --settings wherever it is; the subcommand's parser must accept it too.
    result = django_admin("cachedcall", "bump", "testapp.Club", "-v", "0", "--skip-checks")
    assert (result.returncode, result.stdout, result.stderr) == (0, "Bumped testapp.Club.\n", "")


@pytest.mark.usefixtures("backend_name")
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("answer", ["no", "n", ""])
def test_flush_answered_no_flushes_nothing_and_resets_nothing(answer, monkeypatch):
    chess = Club.objects.create(name="chess")
    club_summary(chess), club_summary(chess)
    assert calls["chess"] == 1
    monkeypatch.setattr("sys.stdin", StringIO(f"{answer}\n"))
    out = StringIO()
    call_command("flush", stdout=out)  # interactive, as typed: it reads the answer from stdin
    assert "Flush cancelled: nothing was flushed, no cachedcall entry was reset." in out.getvalue()
    assert Club.objects.filter(name="chess").exists()
    club_summary(chess)
    assert calls["chess"] == 1  # still a hit: the generation was not bumped


@pytest.mark.usefixtures("backend_name")
@pytest.mark.django_db(transaction=True)
def test_flush_answered_yes_flushes_and_resets(monkeypatch):
    chess = Club.objects.create(name="chess")
    club_summary(chess)
    monkeypatch.setattr("sys.stdin", StringIO("yes\n"))
    call_command("flush", stdout=StringIO())
    assert not Club.objects.exists()
    club_summary(chess)
    assert calls["chess"] == 2  # recomputed: every entry is unreachable


def test_from_the_command_line_flush_answered_no_exits_0_saying_so():
    result = subprocess.run(
        [sys.executable, "-m", "django", "flush", "--settings=tests.settings"],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
            "PYTHONPATH": str(ROOT),
        },
        input="no\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Type 'yes' to continue" in result.stdout
    assert result.stdout.endswith("Flush cancelled: nothing was flushed, no cachedcall entry was reset.\n")
