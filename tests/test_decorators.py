"""The decorator's behaviour, run once per real backend (locmem, memcached, Redis)."""

from __future__ import annotations

import asyncio
import datetime
import functools
import inspect
import logging
import pickle
from collections import Counter

import django
import pytest
from django.core.cache import caches
from django.test import override_settings

import cachedcall
from cachedcall import cached
from tests import servers

calls: Counter[str] = Counter()


@cached(timeout=60)
def club_classes(club, weekday=None):
    """Return the classes of a club."""
    calls["club_classes"] += 1
    return [{"club": club, "weekday": weekday, "n": calls["club_classes"]}]


@cached(timeout=60)
def returns(value):
    calls["returns"] += 1
    return value


@cached(timeout=60)
def fails(x):
    calls["fails"] += 1
    raise KeyError(x)


@cached(timeout=60)
async def async_classes(club):
    calls["async"] += 1
    await asyncio.sleep(0)
    return [club, calls["async"]]


class Clubs:
    def __init__(self, name):
        self.name = name

    def __cache_key__(self):
        return self.name

    @cached(timeout=60)
    def classes(self, weekday):
        calls["method"] += 1
        return f"{self.name}-{weekday}-{calls['method']}"

    @cached(timeout=60)
    @classmethod
    def all_names(cls, n):
        calls["classmethod"] += 1
        return [cls.__name__] * n

    @cached(timeout=60)
    @staticmethod
    def double(n):
        calls["staticmethod"] += 1
        return n * 2

    @cached(timeout=60)
    async def aclasses(self, weekday):
        calls["amethod"] += 1
        return f"{self.name}-{weekday}"


pytestmark = pytest.mark.usefixtures("backend_name")


def test_second_call_is_a_hit_and_arguments_separate_entries():
    assert club_classes("chess") == club_classes("chess", None) == club_classes(club="chess")
    assert calls["club_classes"] == 1
    assert club_classes("go")[0]["club"] == "go"
    assert club_classes("chess", weekday=2)[0]["weekday"] == 2
    assert calls["club_classes"] == 3


def test_the_entry_is_readable_through_django_cache_api_at_f_key():
    value = club_classes("chess")
    envelope = caches["default"].get(club_classes.key("chess"))
    assert isinstance(envelope, tuple)
    assert pickle.loads(envelope[4]) == value


@pytest.mark.parametrize("falsy", [None, 0, "", [], False, {}])
def test_falsy_results_are_hits(falsy):
    assert returns(falsy) == falsy
    assert returns(falsy) == falsy
    assert calls["returns"] == 1


def test_exceptions_propagate_unchanged_and_are_not_cached():
    for _ in range(2):
        with pytest.raises(KeyError) as info:
            fails(7)
        assert info.value.args == (7,)
    assert calls["fails"] == 2


def test_mutating_a_returned_value_does_not_change_the_next_callers():
    first = club_classes("chess")
    first.append("mutated")
    first[0]["club"] = "changed"
    second = club_classes("chess")
    second.append("again")
    assert club_classes("chess") == [{"club": "chess", "weekday": None, "n": 1}]


def test_methods_classmethods_staticmethods_key_their_instance_or_class():
    a, b = Clubs("a"), Clubs("b")
    assert a.classes(1) == "a-1-1" and a.classes(1) == "a-1-1"
    assert b.classes(1) == "b-1-2"
    assert Clubs.classes(a, 1) == "a-1-1"
    assert calls["method"] == 2
    assert a.classes.key(1) == Clubs.classes.key(a, 1) != b.classes.key(1)
    assert Clubs.all_names(2) == ["Clubs", "Clubs"] == a.all_names(2)
    assert Clubs.double(4) == 8 == a.double(4)
    assert calls["classmethod"] == 1 and calls["staticmethod"] == 1


def test_helpers_are_bound_on_methods():
    a, b = Clubs("a"), Clubs("b")
    a.classes(1)
    b.classes(1)
    a.classes.invalidate(1)
    assert a.classes(1) == "a-1-3"  # recomputed
    assert b.classes(1) == "b-1-2"  # untouched
    assert a.classes.refresh(1) == "a-1-4"
    assert a.classes(1) == "a-1-4"
    a.classes.invalidate_all()
    assert b.classes(1) == "b-1-5"


def test_async_functions_and_methods_store_values_not_coroutines():
    async def scenario():
        assert await async_classes("chess") == ["chess", 1]
        assert await async_classes("chess") == ["chess", 1]
        assert await Clubs("a").aclasses(2) == "a-2"
        assert await Clubs("a").aclasses(2) == "a-2"
        assert await async_classes.refresh("chess") == ["chess", 2]
        assert await async_classes("chess") == ["chess", 2]
        caches.close_all()  # as request_finished does at the end of an ASGI request

    asyncio.run(scenario())
    assert calls["async"] == 2 and calls["amethod"] == 1
    envelope = caches["default"].get(async_classes.key("chess"))
    assert pickle.loads(envelope[4]) == ["chess", 2]
    assert inspect.iscoroutinefunction(async_classes)


def test_invalidate_drops_one_entry_and_invalidate_all_every_entry():
    club_classes("chess")
    club_classes("go")
    club_classes.invalidate("chess")
    club_classes("chess")
    club_classes("go")
    assert calls["club_classes"] == 3
    club_classes.invalidate_all()
    club_classes("chess")
    club_classes("go")
    assert calls["club_classes"] == 5
    assert returns(1) == 1 and returns(1) == 1
    assert calls["returns"] == 1


def test_refresh_recomputes_stores_and_returns():
    assert club_classes("chess")[0]["n"] == 1
    assert club_classes.refresh("chess")[0]["n"] == 2
    assert club_classes("chess")[0]["n"] == 2


def test_reset_makes_every_entry_unreachable():
    club_classes("chess")
    returns(3)
    cachedcall.reset()
    club_classes("chess")
    returns(3)
    assert calls["club_classes"] == 2 and calls["returns"] == 2


def test_timeout_zero_does_not_store_and_none_never_expires():
    @cached(timeout=0)
    def zero(x):
        calls["zero"] += 1
        return x

    @cached(timeout=None)
    def forever(x):
        calls["forever"] += 1
        return x

    zero(1)
    zero(1)
    forever(1)
    forever(1)
    assert calls["zero"] == 2 and calls["forever"] == 1


def test_short_timeout_expires():
    import time

    @cached(timeout=1)
    def short(x):
        calls["short"] += 1
        return x

    short(1)
    short(1)
    time.sleep(2.1)
    short(1)
    assert calls["short"] == 2


def test_unless_skips_storing_chosen_results():
    @cached(timeout=60, unless=lambda result: result is None)
    def find(x):
        calls["find"] += 1
        return None if x < 0 else x

    find(-1)
    find(-1)
    find(1)
    find(1)
    assert calls["find"] == 3


def test_key_option_as_names_and_as_callable():
    @cached(timeout=60, key=["club"])
    def by_club(club, request_id):
        calls["by_club"] += 1
        return club

    @cached(timeout=60, key=lambda club, **kw: club.lower())
    def by_lower(club, verbose=False):
        calls["by_lower"] += 1
        return club

    by_club("chess", 1)
    by_club("chess", 2)
    by_lower("Chess")
    by_lower("CHESS", verbose=True)
    assert calls["by_club"] == 1 and calls["by_lower"] == 1


def test_version_and_prefix_separate_entries():
    def make(**options):
        @cached(timeout=60, **options)
        def compute(x):
            calls[repr(options)] += 1
            return x

        return compute

    v1, v2 = make(version=1), make(version=2)
    v1(1)
    v2(1)
    assert v1.key(1) != v2.key(1)
    shared_a, shared_b = make(prefix="shared"), make(prefix="shared")
    shared_a(1)
    shared_b(1)
    assert calls[repr({"prefix": "shared"})] == 1  # same namespace: one entry
    assert calls[repr({"version": 1})] == 1 and calls[repr({"version": 2})] == 1


def test_cache_option_uses_another_alias():
    @cached(timeout=60, cache="other")
    def elsewhere(x):
        calls["elsewhere"] += 1
        return x

    elsewhere(1)
    elsewhere(1)
    assert calls["elsewhere"] == 1
    assert caches["other"].get(elsewhere.key(1)) is not None
    assert caches["default"].get(elsewhere.key(1)) is None


def test_timedelta_and_float_timeouts_are_accepted():
    @cached(datetime.timedelta(minutes=1))
    def td(x):
        calls["td"] += 1
        return x

    @cached(1.5)
    def fl(x):
        calls["fl"] += 1
        return x

    td(1), td(1), fl(1), fl(1)
    assert calls["td"] == 1 and calls["fl"] == 1


def test_bare_decorator_uses_settings_timeout(settings):
    settings.CACHEDCALL = {"TIMEOUT": 0}

    @cached
    def bare(x):
        calls["bare"] += 1
        return x

    bare(1)
    bare(1)
    assert calls["bare"] == 2  # TIMEOUT 0: nothing stored
    settings.CACHEDCALL = {}
    bare(1)
    bare(1)
    assert calls["bare"] == 3  # the alias default (300 s)


def test_wrong_arguments_raise_the_functions_own_type_error():
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        club_classes("chess", nope=1)
    with pytest.raises(TypeError, match="missing 1 required positional argument"):
        club_classes()
    assert calls["club_classes"] == 0


def _plain(x):
    return x


class _Owner:
    def method(self, x):
        return x

    @classmethod
    def klass(cls, x):
        return x

    @staticmethod
    def static(x):
        return x


async def _coroutine(x):
    return x


@pytest.mark.parametrize(
    "target",
    [
        _plain,
        _coroutine,
        _Owner.__dict__["method"],
        _Owner.__dict__["klass"],
        _Owner.__dict__["static"],
        _Owner().method,
        _Owner.klass,
        len,
        functools.partial(_plain, 1),
    ],
    ids=[
        "function",
        "coroutine",
        "method",
        "classmethod",
        "staticmethod",
        "bound",
        "bound-class",
        "builtin",
        "partial",
    ],
)
def test_our_binding_is_the_one_wrapt_derives(target):
    # A contract with wrapt: cachedcall derives the binding itself (to build the function's
    # cache before its proxy) and must agree with what FunctionWrapper computes.
    import wrapt

    from cachedcall.decorators import binding_of

    assert binding_of(target) == wrapt.FunctionWrapper(target, lambda *a: None)._self_binding


square = cached(timeout=60)(lambda x: x * x)
cube = cached(timeout=60)(lambda x: x * x * x)


def _power(n):
    @cached(timeout=60)
    def power(x):
        return x**n

    return power


def test_two_lambdas_and_two_closures_of_one_factory_never_share_entries():
    assert square(3) == 9 and cube(3) == 27 and square(3) == 9 and cube(3) == 27
    assert square.key(3) != cube.key(3)
    two, three = _power(2), _power(3)
    assert two(3) == 9 and three(3) == 27 and two(3) == 9
    assert two.key(3) != three.key(3)
    assert _power(2).key(3) == two.key(3)  # the same closure value: the same entries


def _applying(func):
    @cached(timeout=60)
    def applied(x):
        return func(x)

    return applied


def _guarded(lock):
    @cached(timeout=60)
    def guarded(x):
        with lock:
            return [x, id(lock)]

    return guarded


def test_closures_over_functions_key_by_the_function_and_over_unkeyable_values_never_share():
    import threading

    # A function closed over is named as it would be if decorated: stable across processes.
    assert _applying(abs).key(-3) != _applying(str).key(-3)
    assert _applying(abs).key(-3) == _applying(abs).key(-3)
    assert _applying(lambda x: x + 1).key(1) != _applying(lambda x: x + 2).key(1)
    assert _applying(abs)(-3) == 3 and _applying(str)(-3) == "-3"
    # A lock has no stable key: each closure over one gets entries of its own.
    first, second = threading.Lock(), threading.Lock()
    one, other = _guarded(first), _guarded(second)
    assert one.key(1) != other.key(1)
    assert one(1) == [1, id(first)] and other(1) == [1, id(second)]
    assert _guarded(first).key(1) != one.key(1)  # even for the same lock: one per decoration


def test_functions_decorated_at_run_time_do_not_accumulate():
    import gc

    from cachedcall.function import registry

    gc.collect()
    before = len(registry)
    for n in range(2000):
        _power(n)(1)
    gc.collect()
    assert len(registry) - before < 10


@pytest.mark.parametrize("timeout", [0.5, 1.5, 10**10])
def test_a_timeout_means_the_same_on_every_backend(backend_name, timeout):
    # Django truncates 0.5 to 0 ("do not store") on memcached and Redis, and 10**10 overflows
    # memcached's expiry: cachedcall rounds up to whole seconds and caps at 30 days.
    @cached(timeout=timeout)
    def stamped(x):
        calls["stamped"] += 1
        return x

    stamped(1)
    stamped(1)
    assert calls["stamped"] == 1


@pytest.mark.parametrize(
    ("timeout", "memcached", "elsewhere"),
    [(0.5, 1, 1), (1.5, 2, 2), (60, 60, 60), (10**10, 30 * 24 * 3600, 10**10), (None, None, None)],
)
def test_timeouts_round_up_to_whole_seconds_and_are_capped_at_30_days_on_memcached(
    timeout, memcached, elsewhere
):
    from cachedcall.inspection import backend_seconds

    caches_ = {
        "default": dict(servers.LOCMEM),
        "mc": {"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache", "LOCATION": "127.0.0.1:1"},
    }
    with override_settings(CACHES=caches_):
        assert backend_seconds(timeout, "mc") == memcached
        assert backend_seconds(timeout, "default") == elsewhere


def test_a_fractional_timeout_is_the_next_whole_second_on_redis(redis_server):
    import redis

    with override_settings(CACHES={"default": servers.redis_config(redis_server)}):

        @cached(timeout=1.5)
        def stamped(x):
            return x

        stamped(1)
        made = caches["default"].make_key(stamped.key(1))
        assert redis.Redis(port=redis_server.port).ttl(made) == 2  # Django alone: 1
        caches["default"].close()


def test_an_entry_written_under_another_django_version_is_a_quiet_miss(backend_name, cachedcall_log):
    from cachedcall import entry

    @cached(timeout=60)
    def versioned(x):
        calls["versioned"] += 1
        return x

    versioned(1)
    key = versioned.key(1)
    written = caches["default"].get(key)
    assert written[0] == entry.FORMAT == (3, django.__version__)
    caches["default"].set(key, ((3, "4.1.0"), *written[1:]), 60)  # as an older Django wrote it
    assert versioned(1) == 1 and calls["versioned"] == 2  # a miss, recomputed and overwritten
    assert versioned(1) == 1 and calls["versioned"] == 2  # then a hit
    assert not [r for r in cachedcall_log.records if r.levelno >= logging.WARNING]
