"""cachedcall.testing: record() for every outcome, isolated(), and readable messages."""

from __future__ import annotations

import asyncio
import threading
import time
import unittest

import pytest
from django.db import transaction
from django.test import SimpleTestCase
from django.test import override_settings

import cachedcall
from cachedcall import cached
from cachedcall.decorators import function_cache
from cachedcall.testing import isolated
from cachedcall.testing import record
from tests import names
from tests import servers
from tests.testapp.models import Club
from tests.testapp.models import ClubClass


@cached(timeout=60)
def double(x):
    return 2 * x


@cached(timeout=60)
async def adouble(x):
    return 2 * x


@cached(timeout=60, depends_on=[ClubClass])
def count_classes():
    return ClubClass.objects.count()


@pytest.mark.usefixtures("backend_name")
def test_hit_miss_stored_invalidated_disabled():
    with record() as events:
        double(1)
        double(1)
        double.invalidate(1)
        with cachedcall.disabled():
            double(1)
    assert [e.outcome for e in events.filter(double)] == ["miss", "stored", "hit", "invalidated", "disabled"]
    assert events.misses(double) == events.hits(double) == events.stored(double) == 1
    assert events.bypassed(double) == 1
    assert all(e.key == double.key(1) for e in events.filter(double, "hit"))
    assert events.filter(double, "hit")[0].duration > 0


@pytest.mark.django_db(transaction=True)
def test_pending_transaction_is_recorded():
    club = Club.objects.create(name="c")
    with record() as events, transaction.atomic():
        ClubClass.objects.create(club=club, name="x")
        count_classes()
    assert events.count(count_classes, "pending") == 1


def test_error_outcome_when_the_backend_is_down():
    port = servers.free_port()
    config = {**servers.memcached_config(servers.memcached(port))}
    with override_settings(CACHES={"default": config}), record() as events:
        double(3)
    assert events.errors(double) == 1
    assert events.misses(double) == 0


def test_readable_assertion_messages():
    with record() as events:
        double(4)
    with pytest.raises(AssertionError) as info:
        events.assert_counts(double, hit=1, miss=0)
    message = str(info.value)
    assert (
        "expected {'hit': 1, 'miss': 0} for tests.test_testing.double, got {'hit': 0, 'miss': 1}" in message
    )
    assert f"miss        tests.test_testing.double {names.key('double:')}" in message
    with pytest.raises(ValueError, match="unknown outcome 'hits'"):
        events.count(double, "hits")
    with pytest.raises(TypeError, match="not a function decorated with @cached"):
        events.hits(len)


def test_threads_and_async_tasks_are_recorded():
    async def tasks():
        await asyncio.gather(*(adouble(i) for i in range(5)))

    with record() as events:
        threads = [threading.Thread(target=double, args=(100 + i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        asyncio.run(tasks())
    assert events.misses(double) == 10 and events.misses(adouble) == 5
    with record() as outer, record() as inner:
        double(1)
    assert len(outer) == len(inner) == 2


def test_isolated_gives_an_empty_namespace_and_leaves_nothing_behind():
    double(6)
    with record() as events:
        with isolated():
            double(6)
            double(6)
        double(6)
    assert [e.outcome for e in events.filter(double) if e.outcome != "stored"] == ["miss", "hit", "miss"]


@isolated()
class IsolatedCase(unittest.TestCase):
    def test_one(self):
        with record() as events:
            double(7)
        assert events.misses(double) == 1

    def test_two(self):
        with record() as events:
            double(7)
        assert events.misses(double) == 1


def test_isolated_decorates_test_classes():
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(IsolatedCase)
    result = unittest.TestResult()
    suite.run(result)
    assert result.wasSuccessful() and result.testsRun == 2, result.failures


@override_settings(CACHEDCALL={"ENABLED": False})
class OverrideOnClass(SimpleTestCase):
    def test_off(self):
        assert not cachedcall.is_enabled()

    @override_settings(CACHEDCALL={"ENABLED": True})
    def test_method_wins(self):
        assert cachedcall.is_enabled()


def test_override_settings_on_classes_and_methods():
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(OverrideOnClass)
    result = unittest.TestResult()
    suite.run(result)
    assert result.wasSuccessful() and result.testsRun == 2, result.failures
    assert cachedcall.is_enabled()


@pytest.mark.django_db
def test_capture_on_commit_callbacks_sees_and_runs_the_bumps_of_the_tests_own_blocks(
    django_capture_on_commit_callbacks,
):
    from django.core.cache import caches

    def table():
        return caches["default"].get(names.key("v:testapp.clubclass"))

    club = Club.objects.create(name="captured")
    before = table()
    ClubClass.objects.create(club=club, name="direct")  # in the test's world: bumped at once
    middle = table()
    assert middle is not None and middle != before

    def foreign():
        pass

    transaction.on_commit(foreign)  # registered before the capture: not part of it
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with transaction.atomic():  # the test's own block: its bumps wait for its "commit"
            ClubClass.objects.create(club=club, name="x")
    assert foreign not in callbacks
    assert len(callbacks) == 3  # table, row and scope of the new class
    assert table() not in (None, middle)


def test_manage_py_test_resets_its_namespace_once_at_the_start(memcached_server, tmp_path):
    import os
    import subprocess
    import sys

    from django.core.cache import caches

    config = servers.memcached_config(memcached_server)
    with override_settings(CACHES={"default": config}):
        cache = caches["default"]
        cache.set("cc:G", 11, None)  # the development server's generation (KEY_PREFIX "cc")
        test_generation = cache.get("cc.test:G")
        env = {
            **os.environ,
            "CACHEDCALL_EXAMPLE_MEMCACHED": memcached_server.location,
            "CACHEDCALL_EXAMPLE_DB": str(tmp_path / "db.sqlite3"),
        }
        for name in ("DJANGO_SETTINGS_MODULE", "CACHEDCALL_NAMESPACE"):
            env.pop(name, None)
        result = subprocess.run(
            [sys.executable, "example/manage.py", "test", "clubs", "-v", "1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "OK" in result.stderr
        after = cache.get("cc.test:G")
        dev_after = cache.get("cc:G")
        cache.close()
    assert after is not None and after != test_generation  # the run reset its own namespace
    assert dev_after == 11  # and nothing of the development server's


def test_forget_process_state_resets_what_every_module_keeps():
    from cachedcall import bumps
    from cachedcall import conf
    from cachedcall import events
    from cachedcall import function
    from cachedcall import health
    from cachedcall import keys
    from cachedcall import signing
    from cachedcall import switch
    from cachedcall import versions
    from cachedcall import xfetch
    from cachedcall.testing import forget_process_state

    @cachedcall.cached(timeout=60)
    def remembered(x):
        return x

    remembered(1), remembered(1)
    fc = function_cache(remembered)
    assert fc.hits == 1
    switch.force(False)
    health.failed("default", "get", OSError("down"))
    sink: list = []
    events.attach(sink)
    signing.seal("k", (1,))
    versions.shapes(ClubClass)
    keys.encode(Club(pk=1))
    xfetch.clock = lambda: 0.0
    settings_before = conf.get()
    forget_process_state()
    assert switch.forced() is None
    counts = health.stats()
    assert set(counts) == {
        "errors",
        "down",
        "bad_signatures",
        "bump_failures",
        "too_large",
        "corrupt",
        "bypassed",
        "near",
    }
    near_counts = counts.pop("near")
    assert near_counts == {"hits": {}, "evictions": {}, "invalidations": {}, "entries": 0, "bytes": 0}
    assert all(not value for value in counts.values())
    assert not events.active
    assert signing._keys is None and not versions._shapes
    assert xfetch.clock is time.time
    assert conf.get() is not settings_before
    assert fc.hits == 0 and not bumps.is_dirty() and not bumps.has_pending()
    assert set(keys._EXACT) == set(keys._BUILTIN)
    assert function.registry  # the functions stay registered (weakly)
