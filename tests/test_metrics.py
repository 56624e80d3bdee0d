"""cachedcall.metrics: counts that survive the process, added up across processes in the
cache and read by ``manage.py cachedcall stats``.

The cross-process tests run real processes (``python -c`` with the test settings, as
tests/writer.py does) against the suite's memcached and Redis servers; the fault tests stop
a server of their own and start it again on the same port.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from django.core.cache import caches
from django.test import override_settings

from cachedcall import cached
from cachedcall import metrics
from cachedcall.decorators import function_cache
from cachedcall.testing import forget_process_state
from tests import servers

ROOT = Path(__file__).resolve().parent.parent
SQUARE = "tests.test_metrics.square"
calls: Counter[str] = Counter()


@cached(timeout=600)
def square(n):
    calls["square"] += 1
    return n * n


@cached(timeout=600)
def huge(n):
    return b"x" * (2 * 1024 * 1024)  # past memcached's 1 MB item size


# What a worker process runs: the CACHES and CACHEDCALL of the test, then square() over its
# arguments; "fork" forks there (the child runs the rest), "wait" waits for stdin to close.
WORKER = """
import json, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
from django.conf import settings
settings.CACHES = {"default": json.loads(os.environ["METRICS_TEST_CACHE"])}
settings.CACHEDCALL = json.loads(os.environ["METRICS_TEST_CACHEDCALL"])
import django
django.setup()
from tests.test_metrics import square
for arg in sys.argv[1:]:
    if arg == "fork":
        if os.fork():
            os.wait()
            break
    elif arg == "wait":
        print("done", flush=True)
        sys.stdin.read()
    else:
        square(int(arg))
"""

# ``manage.py cachedcall stats --json`` in a process of its own, with the test's CACHES.
STATS = """
import json, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
from django.conf import settings
settings.CACHES = {"default": json.loads(os.environ["METRICS_TEST_CACHE"])}
from django.core.management import execute_from_command_line
execute_from_command_line(["manage.py", "cachedcall", "stats", *sys.argv[1:]])
"""


def _env(config, cachedcall=None):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    # The namespace of this test run (CACHEDCALL_NAMESPACE) is inherited with the rest.
    env.update(
        PYTHONPATH=str(ROOT),
        METRICS_TEST_CACHE=json.dumps(config),
        METRICS_TEST_CACHEDCALL=json.dumps(cachedcall or {}),
    )
    return env


def work(config, *args, cachedcall=None):
    result = subprocess.run(
        [sys.executable, "-c", WORKER, *map(str, args)],
        cwd=ROOT,
        env=_env(config, cachedcall),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def stats_json(config):
    result = subprocess.run(
        [sys.executable, "-c", STATS, "--json"],
        cwd=ROOT,
        env=_env(config),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


SHARED = {
    "memcached": ("memcached_server", servers.memcached_config),
    "pylibmc": ("memcached_server", servers.pylibmc_config),
    "redis": ("redis_server", servers.redis_config),
    "django-redis": ("redis_server", servers.django_redis_config),
}


@pytest.fixture(params=list(SHARED))
def shared(request):
    """The config of a real shared backend, as the 'default' alias of this process too,
    emptied first (the two memcached clients share a server, as do the two Redis ones)."""
    fixture, make = SHARED[request.param]
    config = make(request.getfixturevalue(fixture))
    with override_settings(CACHES={"default": config}):
        caches["default"].clear()
        yield config
        caches["default"].close()


def test_counts_of_two_processes_add_up_in_a_third(shared):
    # The first process misses 1, 2, 3 and hits 5 times; the second, on a warm cache, hits
    # 8 times. Each flushes at exit (METRICS_INTERVAL is the default 10 s).
    work(shared, 1, 2, 3, 1, 2, 3, 1, 1)
    work(shared, 1, 2, 3, 1, 2, 3, 1, 1)
    report = stats_json(shared)
    assert report["scope"] == "every process" and report["alias"] == "default"
    counted = report["functions"][SQUARE]
    assert counted == {
        "hits": 13,
        "misses": 3,
        "stored": 3,
        "errors": 0,
        "refused": 0,
        "stale": 0,
        "hit_ratio": 13 / 16,
    }
    assert report["health"]["errors"] == {}


def test_a_forked_child_flushes_only_its_own_counts(shared):
    # The parent misses 1 and 2 and hits once before the fork; the child hits 1 and 2; each
    # flushes at its exit. A child that flushed what it inherited would double the first three.
    work(shared, 1, 2, 1, "fork", 1, 2)
    counted = stats_json(shared)["functions"][SQUARE]
    assert (counted["hits"], counted["misses"], counted["stored"]) == (3, 2, 2)


def test_a_running_process_flushes_every_interval(memcached_server):
    config = servers.memcached_config(memcached_server)
    with override_settings(CACHES={"default": config}):
        caches["default"].clear()
        with subprocess.Popen(
            [sys.executable, "-c", WORKER, "4", "4", "4", "wait"],
            cwd=ROOT,
            env=_env(config, {"METRICS_INTERVAL": 0.2}),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as worker:
            try:
                assert worker.stdout is not None and worker.stdout.readline() == "done\n"
                deadline = time.monotonic() + 20
                found = None
                while time.monotonic() < deadline and not (found and found["stored"]):
                    time.sleep(0.05)  # the worker flushes every 0.2 s
                    found = (metrics.read() or metrics.Counts({}, {})).functions.get(SQUARE)
                assert found is not None
                assert (found["hits"], found["misses"], found["stored"]) == (2, 1, 1)
            finally:
                worker.send_signal(signal.SIGKILL)  # no exit flush: what was read was flushed live
                worker.wait(10)
        caches["default"].close()


@pytest.fixture(params=["memcached", "redis"])
def own_server(request):
    """A server only this test uses, which it may stop and start again on the same port."""
    server = (servers.memcached() if request.param == "memcached" else servers.redis()).start()
    make = servers.memcached_config if request.param == "memcached" else servers.redis_config
    yield server, make(server)
    server.stop()


def test_a_failed_flush_keeps_the_counts_and_the_next_one_lands_them(own_server, cachedcall_log):
    server, config = own_server
    with override_settings(CACHES={"default": config}):
        for n in (1, 2, 3, 1, 2, 3, 1, 1):
            square(n)
        caches["default"].close()
        server.stop()  # killed
        assert metrics.flush() is False
        assert "cache alias 'default' failed (" in cachedcall_log.text  # logged once, as any outage
        server.start()  # same port, empty
        assert metrics.flush() is True
        counts = metrics.read()
        assert counts is not None
        found = counts.functions[SQUARE]
        assert (found["hits"], found["misses"], found["stored"]) == (5, 3, 3)
        # The failed flush was itself an error of the alias, and is counted with the rest.
        assert counts.health["errors"]["default"] >= 1
        assert metrics.flush() is True  # nothing new: nothing added twice
        assert metrics.read() == counts


def test_a_flush_stops_at_its_first_failure(memcached):
    # A frozen alias costs a flush one client timeout (0.5 s), not one per counter, also at
    # exit; what it did not add waits. A frozen server may still run the incr it timed out
    # on once thawed: counts are at least once.
    (server,) = memcached(1)
    with override_settings(CACHES={"default": servers.memcached_config(server)}):
        square(1)
        assert metrics.flush() is True  # listed in the index: the next flush only adds
        for n in (1, 1, 2):
            square(n)  # three counters to add: hits, misses, stored
        server.freeze()
        try:
            started = time.monotonic()
            assert metrics.flush() is False
            assert time.monotonic() - started < 1.2
        finally:
            server.thaw()
        assert metrics.flush() is True
        counts = metrics.read()
        assert counts is not None
        found = counts.functions[SQUARE]
        assert found["hits"] >= 2 and found["misses"] >= 2 and found["stored"] >= 2


def test_refusals_and_oversize_values_are_counted_per_function_and_alias(memcached_server):
    config = servers.memcached_config(memcached_server)
    with override_settings(CACHES={"default": config}):
        caches["default"].clear()
        huge(1)
        huge(1)
        fc = function_cache(huge)
        assert (fc.misses, fc.stored, fc.refused) == (2, 0, 2)
        assert metrics.flush() is True
        counts = metrics.read()
        assert counts is not None
        assert counts.functions["tests.test_metrics.huge"]["refused"] == 2
        assert counts.health["too_large"] == {"default": 2}
        caches["default"].close()


def test_a_hit_makes_no_backend_call_for_the_metrics(counted):
    with override_settings(CACHEDCALL={"METRICS_INTERVAL": 3600}):
        metrics.start()  # running, as in any process (its first flush is an hour away)
        square(1)
        counted.clear()
        for _ in range(50):
            square(1)
        assert dict(counted) == {"get_many": 50}  # one read per hit, nothing else
        assert metrics.flush() is True
        assert counted["incr"] + counted["add"] >= 3  # hits, misses, stored: at the flush


def test_the_command_flushes_its_own_process_first(shared):
    from io import StringIO

    from django.core.management import call_command

    for n in (7, 7, 7):
        square(n)
    out = StringIO()
    call_command("cachedcall", "stats", stdout=out)
    line = next(row for row in out.getvalue().splitlines() if row.startswith(SQUARE))
    # hits, misses, stored, errors, refused, stale, hit ratio
    assert line.split()[1:] == ["2", "1", "1", "0", "0", "0", "66.7%"]
    assert stats_json(shared)["functions"][SQUARE]["hits"] == 2  # and another process sees them


def test_without_metrics_the_command_shows_this_process():
    from io import StringIO

    from django.core.management import call_command

    with override_settings(CACHEDCALL={"METRICS_INTERVAL": 0}):
        square(8), square(8)
        assert metrics.flush() is True  # nothing to do: nothing written
        assert metrics.read() == metrics.Counts({}, {kind: {} for kind in metrics.HEALTH})
        out = StringIO()
        call_command("cachedcall", "stats", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert report["scope"] == "this process" and report["functions"][SQUARE]["hits"] == 1


def test_forget_process_state_stops_the_thread_and_drops_what_waits():
    with override_settings(CACHEDCALL={"METRICS_INTERVAL": 3600}):
        metrics.start()
        thread = metrics._thread
        assert thread is not None and thread.is_alive()
        square(9)
        forget_process_state()
        assert not thread.is_alive()
        assert metrics.flush() is True
        assert metrics.read() == metrics.Counts({}, {kind: {} for kind in metrics.HEALTH})


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, None), (None, None), (0.5, 0.5), (30, 30.0)],
)
def test_metrics_interval_setting(value, expected):
    from cachedcall import conf

    with override_settings(CACHEDCALL={"METRICS_INTERVAL": value}):
        assert conf.get().metrics_interval == expected


@pytest.mark.parametrize("value", [-1, True, "10", float("nan"), 86400])
def test_a_bad_metrics_interval_is_a_configuration_error(value):
    from django.core.exceptions import ImproperlyConfigured

    from cachedcall import conf

    with (
        override_settings(CACHEDCALL={"METRICS_INTERVAL": value}),
        pytest.raises(ImproperlyConfigured, match=r"CACHEDCALL\['METRICS_INTERVAL'\] must be"),
    ):
        conf.get()


def test_a_foreign_index_is_no_index():
    assert metrics.decode_index(b"\x80\x04not json") == set()
    assert metrics.decode_index(b'{"function": ["a.b", 3], "bogus": ["x"]}') == {("function", "a.b")}
    assert metrics.decode_index(metrics.encode_index({("function", "a.b"), ("errors", "default")})) == {
        ("function", "a.b"),
        ("errors", "default"),
    }
