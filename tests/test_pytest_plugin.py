"""The pytest plugin, tested by running pytest on generated test modules in subprocesses."""

from __future__ import annotations

import pytest

from tests import servers

CONFTEST = """
import os
import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        INSTALLED_APPS=["cachedcall"],
        CACHES={{"default": {memcached!r}}},
        CACHEDCALL={{"ENABLED": os.environ.get("SETTINGS_ENABLED", "1") == "1"}},
    )
    django.setup()
"""

MODULE = """
import os
import pytest
from collections import Counter
from cachedcall import cached, conf

calls = Counter()

@cached(timeout=None)
def run_value():
    return os.environ["RUN_VALUE"]

@cached(timeout=60)
def square(x):
    calls[x] += 1
    return x * x
"""


@pytest.fixture
def project(pytester, memcached_server):
    config = servers.memcached_config(memcached_server)
    pytester.makeconftest(CONFTEST.format(memcached=config))
    pytester.makepyfile(helpers=MODULE)
    return pytester


def _run(pytester, *args, **env):
    for key, value in env.items():
        pytester._monkeypatch.setenv(key, value)
    # The generated modules rely on the order their tests are written in.
    return pytester.runpytest_subprocess(
        "-p", "no:django", "-p", "no:cacheprovider", "-p", "no:randomly", *args
    )


def test_a_session_starts_from_a_clean_slate(project):
    project.makepyfile(
        test_value="""
        import os
        from helpers import run_value
        def test_value():
            assert run_value() == os.environ["EXPECTED"]
        """
    )
    # A previous process (a dev server, an earlier run) stored "first" with no expiry.
    assert _run(project, RUN_VALUE="first", EXPECTED="first").ret == 0
    # The next session does not read it...
    _run(project, RUN_VALUE="second", EXPECTED="second").assert_outcomes(passed=1)
    # ...unless the reset is switched off, by flag or ini option: then the old entry is read.
    _run(project, "--cachedcall-no-reset", RUN_VALUE="third", EXPECTED="second").assert_outcomes(passed=1)
    project.makeini("[pytest]\ncachedcall_reset = false\n")
    _run(project, RUN_VALUE="fourth", EXPECTED="second").assert_outcomes(passed=1)


def test_fixtures(project):
    project.makepyfile(
        test_fixtures="""
        import cachedcall
        from helpers import square, calls

        def test_disabled(cachedcall_disabled):
            square(2); square(2)
            assert calls[2] == 2 and not cachedcall.is_enabled()

        def test_enabled_beats_settings(cachedcall_enabled):
            square(3); square(3)
            assert calls[3] == 1

        def test_isolated_first(cachedcall_enabled, cachedcall_isolated):
            square(4); square(4)
            assert calls[4] == 1

        def test_isolated_second_sees_an_empty_namespace(cachedcall_enabled, cachedcall_isolated):
            square(4)
            assert calls[4] == 2

        def test_events(cachedcall_enabled, cachedcall_events):
            square(5); square(5)
            assert cachedcall_events.misses(square) == 1
            assert cachedcall_events.hits(square) == 1
            assert cachedcall_events.stored(square) == 1
        """
    )
    _run(project, "-v", SETTINGS_ENABLED="0").assert_outcomes(passed=5)


def test_marker_and_its_validation(project):
    project.makepyfile(
        test_marker="""
        import pytest
        import cachedcall
        from helpers import square, calls

        @pytest.mark.cachedcall(enabled=False)
        def test_off():
            square(6); square(6)
            assert calls[6] == 2

        @pytest.mark.cachedcall(enabled=True, isolated=True)
        def test_on_isolated():
            assert cachedcall.is_enabled()
            square(7); square(7)
            assert calls[7] == 1

        @pytest.mark.cachedcall(enabld=False)
        def test_typo():
            pass
        """
    )
    result = _run(project)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*wrong arguments to the marker; use cachedcall(enabled=True, isolated=False)*"]
    )
    _run(project, "--markers").stdout.fnmatch_lines(
        ["@pytest.mark.cachedcall(enabled=True, isolated=False):*"]
    )


def test_disable_flag_for_a_whole_run(project):
    project.makepyfile(
        test_flag="""
        import cachedcall
        from helpers import square, calls

        def test_off():
            square(8); square(8)
            assert calls[8] == 2 and not cachedcall.is_enabled()

        def test_fixture_still_wins(cachedcall_enabled):
            square(9); square(9)
            assert calls[9] == 1
        """
    )
    _run(project, "--cachedcall-disable").assert_outcomes(passed=2)


def test_xdist_workers_are_isolated_from_each_other(project):
    project.makepyfile(
        test_workers="""
        import os, time
        import cachedcall
        from cachedcall import conf
        from helpers import square, calls

        def _check():
            worker = os.environ["PYTEST_XDIST_WORKER"]
            assert conf.get().key_prefix == "cc.test." + worker
            before = calls[10]
            square(10)
            time.sleep(0.3)  # meanwhile the other worker resets: in a shared namespace,
            square(10)       # this would be a second miss
            assert calls[10] == before + 1
            cachedcall.reset()

        def test_a(): _check()
        def test_b(): _check()
        def test_c(): _check()
        def test_d(): _check()
        """
    )
    _run(project, "-n", "2", "-p", "no:benchmark").assert_outcomes(passed=4)


def test_with_pytest_django(pytester, memcached_server):
    pytester.makepyfile(
        settings=f"""
INSTALLED_APPS = ["cachedcall"]
CACHES = {{"default": {servers.memcached_config(memcached_server)!r}}}
SECRET_KEY = "x"
"""
    )
    pytester.makepyfile(
        test_django="""
        import os
        from cachedcall import cached

        @cached(timeout=None)
        def value():
            return os.environ["RUN_VALUE"]

        def test_value(settings, cachedcall_events):
            assert value() == os.environ["RUN_VALUE"]
            assert cachedcall_events.misses(value) == 1
        """
    )
    pytester._monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    for run in ("one", "two"):
        pytester._monkeypatch.setenv("RUN_VALUE", run)
        result = pytester.runpytest_subprocess(
            "-p", "pytest_django", "--ds=settings", "-p", "no:cacheprovider"
        )
        result.assert_outcomes(passed=1)
