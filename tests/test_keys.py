"""Key building: binding, typed encoding, digests, and what cannot be keyed."""

from __future__ import annotations

import datetime
import decimal
import enum
import os
import subprocess
import sys
import uuid

import pytest
from django.utils.translation import gettext_lazy
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from cachedcall import UnkeyableArgument
from cachedcall import cached
from cachedcall.keys import encode
from cachedcall.keys import pk_token
from tests import names
from tests.testapp.models import Club
from tests.testapp.models import ClubClass


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Size(enum.IntEnum):
    SMALL = 1


@cached(timeout=60)
def two(a, b=2):
    return a


@cached(timeout=60)
def one(a):
    return a


@cached(timeout=60)
def varargs(*args, **kwargs):
    return args


@cached(timeout=60)
def kwonly(a, /, b, *, c=3):
    return a


# Calls that must share one entry: arguments are bound to the signature, defaults applied.
EQUIVALENT = [
    (two, [((1, 2), {}), ((1,), {"b": 2}), ((), {"a": 1, "b": 2}), ((), {"b": 2, "a": 1}), ((1,), {})]),
    (varargs, [((1,), {"x": 1, "y": 2}), ((1,), {"y": 2, "x": 1})]),
    (kwonly, [((1, 2), {}), ((1,), {"b": 2}), ((1,), {"b": 2, "c": 3})]),
    (one, [(({"x": 1, "y": 2},), {}), (({"y": 2, "x": 1},), {})]),
    (one, [(({1, 2, 3},), {}), (({3, 2, 1},), {})]),
    (one, [(("x",), {}), ((gettext_lazy("x"),), {})]),
    (one, [((0.0,), {}), ((-0.0,), {})]),
    (one, [((decimal.Decimal("1.0"),), {}), ((decimal.Decimal("1"),), {})]),
]


@pytest.mark.parametrize(("func", "calls"), EQUIVALENT)
def test_equivalent_calls_share_a_key(func, calls):
    keys = {func.key(*args, **kwargs) for args, kwargs in calls}
    assert len(keys) == 1, keys


DISTINCT = [
    ("1 1.0 True '1' b'1' Decimal('1')", [1, 1.0, True, "1", b"1", decimal.Decimal("1")]),
    ("0 False None '' 0.0 () [] {} set()", [0, False, None, "", 0.0, (), [], {}, set()]),
    ("delimiters", [("a:b", "c"), ("a", "b:c"), ("a", "b", "c"), "a:b:c"]),
    ("length prefixes", [("ab", "c"), ("a", "bc"), ("abc",)]),
    ("containers", [(1, 2), [1, 2], {1, 2}, frozenset({1, 2}), {1: 2}]),
    ("nesting", [((1,), 2), (1, (2,)), ((1, 2),)]),
    (
        "dates",
        [
            datetime.date(2024, 1, 2),
            datetime.datetime(2024, 1, 2),
            datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc),
            "2024-01-02",
        ],
    ),
    ("times", [datetime.time(10, 0), datetime.timedelta(hours=10), datetime.time(10, 0, 1)]),
    ("enums", [Color.RED, Color.BLUE, 1, Size.SMALL, "RED"]),
    ("uuid", [uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=1).hex]),
    ("dict vs pairs", [{"a": 1}, (("a", 1),), [("a", 1)]]),
    ("str vs bytes", ["é", "é".encode(), b"\xe9"]),
]


@pytest.mark.parametrize(("label", "values"), DISTINCT, ids=[d[0] for d in DISTINCT])
def test_different_typed_arguments_get_different_keys(label, values):
    keys = [one.key(v) for v in values]
    assert len(set(keys)) == len(values), list(zip(values, keys, strict=True))


def test_two_functions_with_equal_arguments_do_not_share_keys():
    assert one.key(1) != two.key(1, 2)


@pytest.mark.django_db
def test_model_instances_key_by_label_and_pk_without_a_query(django_assert_num_queries):
    club = Club.objects.create(name="chess")
    other = Club.objects.create(name="go")
    again = Club.objects.get(pk=club.pk)
    with django_assert_num_queries(0):
        assert one.key(club) == one.key(again)
        assert one.key(club) != one.key(other)
        assert one.key(club) != one.key(club.pk)
        assert one.key(Club) != one.key(ClubClass)


@pytest.mark.django_db
def test_unsaved_instances_and_querysets_are_refused_naming_the_parameter():
    with pytest.raises(UnkeyableArgument, match=r"parameter 'a'.*not saved.*key="):
        one.key(Club(name="x"))
    with pytest.raises(UnkeyableArgument, match=r"parameter 'b'.*QuerySet"):
        two.key(1, Club.objects.all())
    with pytest.raises(TypeError):  # UnkeyableArgument refines TypeError
        one(object())


def test_objects_with_cache_key_and_plain_objects():
    class Point:
        def __init__(self, x):
            self.x = x

        def __cache_key__(self):
            return ("point", self.x)

    assert one.key(Point(1)) == one.key(Point(1))
    assert one.key(Point(1)) != one.key(Point(2))
    assert one.key(Point(1)) != one.key(("point", 1))
    with pytest.raises(UnkeyableArgument, match=r"parameter .a.: values of type object"):
        one.key(object())
    with pytest.raises(UnkeyableArgument, match="function"):
        one.key(lambda: 1)


def test_keys_are_short_printable_ascii_even_for_huge_arguments():
    key = one.key("x" * 100_000 + "\N{SNOWMAN} \x00")
    assert key.startswith(names.key("one:"))
    assert len(key) <= 64 and key.isascii() and key.isprintable() and " " not in key


def test_keys_stay_short_with_the_longest_prefix_and_name(settings):
    settings.CACHEDCALL = {"KEY_PREFIX": "p" * 32}

    @cached(timeout=1)
    def a_function_name_that_is_much_longer_than_forty_characters_in_all(x):
        return x

    key = a_function_name_that_is_much_longer_than_forty_characters_in_all.key("x" * 10_000)
    # The test run's namespace (".test", ".test.gw0" under xdist) adds its own length.
    suffix = len(names.prefix()) - 32
    assert suffix <= len(".test.gw99")
    assert len(key) - suffix == 32 + 1 + 40 + 1 + 24 == 98


def test_keys_do_not_depend_on_hash_seed():
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='tests.settings'; django.setup();"
        "from tests.test_keys import one; print(one.key(({'a', 'b', 'c'}, {'x': 1, 'y': frozenset('pq')})))"
    )
    outputs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": os.getcwd()}
        outputs.add(
            subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            ).stdout
        )
    assert len(outputs) == 1


# --- properties ------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | st.decimals(allow_nan=False)
    | st.uuids()
    | st.dates()
    | st.datetimes()
    | st.times()
    | st.timedeltas()
    | st.sampled_from(Color)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        | st.frozensets(st.integers() | st.text(max_size=5), max_size=4)
    ),
    max_leaves=12,
)


def _canonical(v):
    # What the key must distinguish: the type at every level and the value.
    if isinstance(v, enum.Enum):
        return ("enum", type(v).__qualname__, v.name)
    if isinstance(v, float):
        return ("float", v + 0.0)
    if isinstance(v, decimal.Decimal):
        return ("decimal", v.normalize())
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, tuple(_canonical(i) for i in v))
    if isinstance(v, dict):
        return ("dict", frozenset((_canonical(k), _canonical(i)) for k, i in v.items()))
    if isinstance(v, frozenset):
        return ("frozenset", frozenset(_canonical(i) for i in v))
    return (type(v).__name__, v)


@settings(max_examples=300, deadline=None)
@given(values)
def test_equal_calls_give_equal_keys(value):
    assert one.key(value) == one.key(value)
    assert encode(value) == encode(value)


@settings(max_examples=500, deadline=None)
@given(values, values)
def test_different_typed_arguments_give_different_keys(a, b):
    if _canonical(a) != _canonical(b):
        assert encode(a) != encode(b)
        assert one.key(a) != one.key(b)


@settings(max_examples=200, deadline=None)
@given(values, st.text(max_size=300))
def test_every_key_is_valid_for_memcached(value, prefix):
    @cached(timeout=1, prefix=prefix or "p")
    def func(a):
        return a

    key = func.key(value)
    full = f"a-long-django-key-prefix:1:{key}"
    assert len(full.encode()) <= 250
    assert all(33 <= ord(c) <= 126 for c in full), full


def test_safe_strings_and_other_str_subclasses_key_apart_from_str():
    from django.utils.safestring import mark_safe

    class Slug(str):
        pass

    html = "<b>bold</b>"
    assert encode(mark_safe(html)) != encode(html)
    assert encode(Slug("chess")) != encode("chess")
    assert encode(mark_safe(html)) == encode(mark_safe(html))


def test_the_key_memo_never_keeps_a_long_argument_alive():
    import tracemalloc

    from cachedcall.decorators import function_cache

    @cached(timeout=60)
    def length(text):
        return len(text)

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(200):
            length.key(str(i) * 500_000)  # ~1 MB each
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < 5_000_000, after - before  # not ~200 MB
    fc = function_cache(length)
    assert fc.key_memo == {}
    length.key("short")
    assert list(fc.key_memo) == [("short",)]


def test_secret_primary_keys_never_appear_in_counter_keys(settings):
    # A token as primary key (DRF's authtoken; sessions with a custom IGNORE_MODELS): anyone
    # who can list the cache's keys must not read it there.
    from django.contrib.sessions.models import Session

    from cachedcall.versions import dependency_keys
    from cachedcall.versions import write_keys

    settings.CACHEDCALL = {"IGNORE_MODELS": []}
    secret = "s3cr3t-t0ken-abcdef"
    row = Session(session_key=secret)
    keys = write_keys(row, "cc") + dependency_keys([row], "cc", "test")
    assert keys and not any(secret in key for key in keys)
    assert write_keys(Session(session_key=secret), "cc") == write_keys(row, "cc")  # stable


@pytest.mark.django_db
def test_counter_keys_name_no_primary_key_or_field_value_in_clear(clubs):
    from cachedcall.versions import write_keys
    from tests.testapp.models import ClubClass

    chess, _ = clubs
    lesson = ClubClass.objects.get(club=chess)
    keys = write_keys(lesson, "p")
    # Its table, its row, and its scope by club: neither pk appears, only digests.
    assert "p:v:testapp.clubclass" in keys
    for key in keys:
        tail = key.split(":", 3)[3:] or [""]
        assert str(lesson.pk) not in tail[0].split("#")[0], key
        assert f"={chess.pk}" not in key and not tail[0].isdigit(), key
    assert pk_token(lesson.pk) != pk_token(str(lesson.pk)) != pk_token(chess.pk)
    assert pk_token(1) != pk_token(True) != pk_token(1.0)  # the memo keys by type too
