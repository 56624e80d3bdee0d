"""The global switch: context manager, decorator, threads, tasks, settings, environment."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import unittest
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.cache import caches
from django.test import SimpleTestCase
from django.test import override_settings

import cachedcall
from cachedcall import cached

calls: Counter[str] = Counter()


@cached(timeout=60)
def square(x):
    calls["square"] += 1
    return x * x


@cached(timeout=60)
async def asquare(x):
    calls["asquare"] += 1
    return x * x


def test_disabled_runs_the_function_with_no_read_and_no_write():
    square(2)
    with cachedcall.disabled():
        assert not cachedcall.is_enabled()
        assert square(2) == 4  # would be a hit if read
        assert square(3) == 9
    assert calls["square"] == 3
    assert caches["default"].get(square.key(3)) is None  # nothing written
    square(2)
    assert calls["square"] == 3  # back on: the old entry is still a hit


def test_nesting_restores_the_previous_state_exactly_also_on_exceptions():
    assert cachedcall.is_enabled()
    with cachedcall.disabled():
        with cachedcall.enabled():
            assert cachedcall.is_enabled()
            with pytest.raises(ZeroDivisionError), cachedcall.disabled():
                _ = 1 / 0
            assert cachedcall.is_enabled()
        assert not cachedcall.is_enabled()
    assert cachedcall.is_enabled()


def test_a_thread_started_inside_the_block_sees_it():
    seen = []
    with cachedcall.disabled():
        thread = threading.Thread(target=lambda: seen.append((cachedcall.is_enabled(), square(5), square(5))))
        thread.start()
        thread.join()
        with ThreadPoolExecutor(2) as pool:
            assert list(pool.map(square, [6, 6])) == [36, 36]
    assert seen == [(False, 25, 25)]
    assert calls["square"] == 4


def test_asyncio_tasks_see_the_block():
    async def scenario():
        with cachedcall.disabled():
            results = await asyncio.gather(*(asyncio.create_task(asquare(3)) for _ in range(3)))
        assert results == [9, 9, 9]

    asyncio.run(scenario())
    assert calls["asquare"] == 3


def test_decorating_functions_and_coroutine_functions():
    @cachedcall.disabled()
    def plain():
        return cachedcall.is_enabled(), square(4), square(4)

    @cachedcall.disabled()
    async def coroutine():
        return cachedcall.is_enabled(), await asquare(4), await asquare(4)

    assert plain() == (False, 16, 16)
    assert asyncio.run(coroutine()) == (False, 16, 16)
    assert cachedcall.is_enabled()
    assert calls["square"] == 2 and calls["asquare"] == 2


@cachedcall.disabled()
class DisabledUnittestCase(unittest.TestCase):
    def test_inside(self):
        assert not cachedcall.is_enabled()


@cachedcall.disabled()
class DisabledDjangoCase(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.state_in_setup = cachedcall.is_enabled()

    def test_inside(self):
        assert not self.state_in_setup
        assert not cachedcall.is_enabled()


@cachedcall.enabled()
@override_settings(CACHEDCALL={"ENABLED": False})
class EnabledBeatsSettings(SimpleTestCase):
    def test_inside(self):
        assert cachedcall.is_enabled()


def test_decorated_test_classes_restore_the_state_afterwards():
    for case in (DisabledUnittestCase, DisabledDjangoCase, EnabledBeatsSettings):
        suite = unittest.defaultTestLoader.loadTestsFromTestCase(case)
        result = unittest.TestResult()
        suite.run(result)
        assert result.wasSuccessful(), result.failures + result.errors
        assert result.testsRun == 1
        assert cachedcall.is_enabled()


def test_settings_are_read_at_call_time(settings):
    settings.CACHEDCALL = {"ENABLED": False}
    square(7)
    square(7)
    assert calls["square"] == 2
    settings.CACHEDCALL = {"ENABLED": True}
    square(7)
    square(7)
    assert calls["square"] == 3


@override_settings(CACHEDCALL={"ENABLED": False})
def test_override_settings_as_a_decorator():
    square(8)
    square(8)
    assert calls["square"] == 2


@pytest.mark.parametrize(
    ("value", "expected"), [("0", "False"), ("1", "True"), ("", "True"), ("off", "False")]
)
def test_environment_variable_sets_the_process_default(value, expected):
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='tests.settings'; django.setup();"
        "import cachedcall; print(cachedcall.is_enabled())"
    )
    env = {**os.environ, "CACHEDCALL_ENABLED": value, "PYTHONPATH": os.getcwd()}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_importing_cachedcall_never_touches_settings():
    code = (
        "import cachedcall, cachedcall.decorators, cachedcall.conf;"
        "from django.conf import settings; print(settings.configured)"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- the bare names: ``with cachedcall.disabled:`` and ``@cachedcall.disabled`` --------------


def test_the_bare_names_are_context_managers_that_nest():
    square(2)
    with cachedcall.disabled:
        assert not cachedcall.is_enabled()
        with cachedcall.disabled:
            assert square(2) == 4  # computed: no read
            with cachedcall.enabled:
                assert cachedcall.is_enabled()
                with pytest.raises(ZeroDivisionError), cachedcall.disabled:
                    _ = 1 / 0
                assert cachedcall.is_enabled()
            assert not cachedcall.is_enabled()
        assert not cachedcall.is_enabled()
    assert cachedcall.is_enabled() and cachedcall.switch.forced() is None
    assert calls["square"] == 2


def test_the_old_and_the_new_spellings_mix():
    assert cachedcall.disabled() is cachedcall.disabled
    with cachedcall.disabled(), cachedcall.enabled:
        assert cachedcall.is_enabled()
        with cachedcall.disabled:
            assert not cachedcall.is_enabled()
    assert cachedcall.switch.forced() is None


def test_async_with():
    async def scenario():
        async with cachedcall.disabled:
            assert not cachedcall.is_enabled()
            return await asquare(3), await asquare(3)

    assert asyncio.run(scenario()) == (9, 9)
    assert calls["asquare"] == 2 and cachedcall.is_enabled()


def test_the_bare_names_decorate_functions_coroutines_and_methods():
    @cachedcall.disabled
    def plain():
        return cachedcall.is_enabled(), square(4), square(4)

    @cachedcall.disabled
    async def coroutine():
        return cachedcall.is_enabled(), await asquare(4), await asquare(4)

    class Holder:
        @cachedcall.disabled
        @staticmethod
        def static():
            return cachedcall.is_enabled()

        @cachedcall.disabled
        @classmethod
        def klass(cls):
            return cls, cachedcall.is_enabled()

    assert plain() == (False, 16, 16)
    assert plain.__name__ == "plain"
    assert asyncio.run(coroutine()) == (False, 16, 16)
    assert Holder.static() is False and Holder().static() is False
    assert Holder.klass() == (Holder, False)
    assert cachedcall.is_enabled()
    assert calls["square"] == 2 and calls["asquare"] == 2


@cachedcall.disabled
class BareDisabledDjangoCase(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.state_in_setup = cachedcall.is_enabled()

    def test_inside(self):
        assert not self.state_in_setup
        assert not cachedcall.is_enabled()


@cachedcall.enabled
@override_settings(CACHEDCALL={"ENABLED": False})
class BareEnabledCase(SimpleTestCase):
    def test_inside(self):
        assert cachedcall.is_enabled()


@cachedcall.disabled
class BarePlainTests:
    def test_inside(self):
        return cachedcall.is_enabled()


def test_the_bare_names_on_test_classes_restore_the_state_afterwards():
    for case in (BareDisabledDjangoCase, BareEnabledCase):
        result = unittest.TestResult()
        unittest.defaultTestLoader.loadTestsFromTestCase(case).run(result)
        assert result.wasSuccessful(), result.failures + result.errors
        assert result.testsRun == 1
        assert cachedcall.is_enabled() and cachedcall.switch.forced() is None
    assert BarePlainTests().test_inside() is False
    assert cachedcall.is_enabled()


@pytest.mark.parametrize("switch", [cachedcall.disabled, cachedcall.enabled], ids=repr)
def test_forms_that_cannot_work_fail_with_the_right_form(switch):
    with pytest.raises(
        TypeError,
        match=rf"decorates functions and classes \(@{switch!r}\) and opens a block \(with {switch!r}: \.\.\.\)",
    ):
        switch(5)

    def gen():
        yield cachedcall.is_enabled()

    with pytest.raises(TypeError, match=rf"cannot decorate the generator function .*gen.*with {switch!r}:"):
        switch(gen)
    with pytest.raises(TypeError, match="takes one function or class"):
        switch(gen, gen)


def test_reprs_name_the_objects():
    assert repr(cachedcall.disabled) == "cachedcall.disabled"
    assert repr(cachedcall.enabled()) == "cachedcall.enabled"
    assert "Switch caching off" in (cachedcall.disabled.__doc__ or "")


def test_blocks_of_two_threads_that_overlap_leave_the_state_they_found():
    # A opens disabled, B opens enabled, A closes, B closes: once both are closed the switch
    # follows the settings again, whichever order they closed in.
    steps = [threading.Event() for _ in range(3)]

    def a():
        with cachedcall.disabled():
            steps[0].set()
            steps[1].wait(5)
        steps[2].set()

    def b():
        steps[0].wait(5)
        with cachedcall.enabled:
            steps[1].set()
            steps[2].wait(5)

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(step.is_set() for step in steps)
    assert cachedcall.switch.forced() is None and cachedcall.is_enabled()


def test_forget_inside_a_block_follows_the_settings_and_the_block_still_closes():
    with cachedcall.disabled:
        cachedcall.switch.forget()
        assert cachedcall.is_enabled()
        with cachedcall.disabled:
            assert not cachedcall.is_enabled()
        assert cachedcall.is_enabled()
    assert cachedcall.switch.forced() is None


def test_a_decorated_test_class_whose_set_up_class_fails_restores_the_state():
    @cachedcall.disabled
    class Broken(SimpleTestCase):
        @classmethod
        def setUpClass(cls):
            raise RuntimeError("no fixtures today")

        def test_never(self):
            pass

    result = unittest.TestResult()
    unittest.defaultTestLoader.loadTestsFromTestCase(Broken).run(result)
    assert len(result.errors) == 1 and result.testsRun == 0
    assert cachedcall.switch.forced() is None and cachedcall.is_enabled()
