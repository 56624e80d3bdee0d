"""The documentation's code, run as written, and its reference, checked complete.

Every ``.. code-block:: python`` (and ``pycon``) block of ``docs/`` is tested one of three ways:

- a *recipe*: a block between ``# DOCS: <page> <name>`` and ``# /DOCS`` in this module, run
  here as the test (or test class) it is, appears verbatim in that page;
- an *executed* block: each page's other blocks run in order, in one namespace, as a
  module ``app.views`` would (``pycon`` blocks through doctest), with the suite's ``Club``,
  ``ClubClass`` and ``Tag`` models, a club ``chess`` with a class ``openings`` and a club
  ``go`` without classes; a block that defines ``test_*`` functions of no argument has
  them called;
- an *illustrative* block, preceded by a ``.. illustrative: <why>`` comment, is not run;
  :data:`ILLUSTRATIVE` lists them all, so a new one is a decision.

The last tests check that the reference names every public name, setting, check id and
event outcome, so the documentation cannot fall behind the code.
"""

from __future__ import annotations

import ast
import datetime
import doctest
import re
import textwrap
from pathlib import Path
from typing import NamedTuple

import pytest
from django.test import TestCase
from django.test import TransactionTestCase

import cachedcall
from cachedcall import cached
from cachedcall.testing import record
from tests.testapp.models import Club
from tests.testapp.models import ClubClass
from tests.testapp.models import Tag

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


# DOCS: howto/testing.rst function
@cached(timeout=600, depends_on=[Club])
def club_names():
    return sorted(Club.objects.values_list("name", flat=True))


# /DOCS


# DOCS: howto/testing.rst TestCase
class ClubNamesTests(TestCase):
    def test_a_new_club_is_read_at_once_then_cached(self):
        club_names()
        Club.objects.create(name="chess")  # in the test's transaction: counts as committed
        with record() as events:
            self.assertEqual(club_names(), ["chess"])  # miss: the fresh rows, stored
            self.assertEqual(club_names(), ["chess"])  # hit
        events.assert_counts(club_names, miss=1, hit=1)

    def test_the_previous_tests_rows_are_gone(self):
        self.assertEqual(club_names(), [])  # its entries went stale with its rollback


# /DOCS


# DOCS: howto/testing.rst TransactionTestCase
class CommittedClubTests(TransactionTestCase):
    def test_a_committed_club_is_cached(self):
        Club.objects.create(name="go")  # a real commit: bumped after it
        with record() as events:
            self.assertEqual(club_names(), ["go"])
            self.assertEqual(club_names(), ["go"])
        events.assert_counts(club_names, miss=1, hit=1)
        # The flush after each test makes every entry stale for the next one.


# /DOCS


# DOCS: howto/testing.rst pytest
@pytest.mark.django_db  # the db fixture: a transaction per test, as TestCase
def test_with_db(cachedcall_events):
    Club.objects.create(name="shogi")
    assert club_names() == ["shogi"]
    assert club_names() == ["shogi"]
    cachedcall_events.assert_counts(club_names, miss=1, hit=1)


@pytest.mark.django_db(transaction=True)  # transactional_db: real commits, then a flush
def test_with_transactional_db(cachedcall_events):
    Club.objects.create(name="xiangqi")
    assert club_names() == ["xiangqi"]
    assert club_names() == ["xiangqi"]
    cachedcall_events.assert_counts(club_names, miss=1, hit=1)


# /DOCS


# DOCS: howto/testing.rst fixtures
def test_the_undecorated_function_and_the_switch(db, cachedcall_disabled):
    Club.objects.create(name="chess")
    assert club_names.__wrapped__() == ["chess"]  # no cache involved
    with record() as events:
        assert club_names() == ["chess"]  # the fixture switched the cache off
    events.assert_counts(club_names, disabled=1)


def test_an_empty_namespace(db, cachedcall_enabled, cachedcall_isolated, cachedcall_events):
    assert club_names() == []  # nothing an earlier test stored is visible
    cachedcall_events.assert_counts(club_names, miss=1)


@pytest.mark.cachedcall(enabled=False)
def test_the_marker_switches_it_off(db, cachedcall_events):
    club_names()
    cachedcall_events.assert_counts(club_names, disabled=1)


# /DOCS


# DOCS: howto/operations.rst subscribe
def test_a_subscription_sees_every_call(db):
    import cachedcall

    seen = []
    with cachedcall.subscribe(seen.append):  # or keep the Subscription; .unsubscribe()
        club_names()
        club_names()
    assert [e.outcome for e in seen if e.is_call] == ["miss", "hit"]
    assert seen[-1].dependencies[-1].endswith(":v:testapp.club")  # the counters it checked


# /DOCS


# DOCS: howto/operations.rst prometheus
def test_calls_are_exported_to_prometheus(db):
    from prometheus_client import CollectorRegistry

    from cachedcall.contrib.prometheus import export

    registry = CollectorRegistry()
    exporter = export(registry)  # once, e.g. in AppConfig.ready(); exporter.close() undoes it
    club_names()
    club_names()
    labels = {"function": "tests.test_docs_examples.club_names", "outcome": "hit"}
    assert registry.get_sample_value("cachedcall_calls_total", labels) == 1
    exporter.close()


# /DOCS

#: Every block that is not run, as (page, first line of its code): each is shown for its
#: shape (a model of the reader's own app, objects only a running site has).
ILLUSTRATIVE = [
    ("explanation/model-versions.rst", "from cachedcall import CachedCallManager"),
    ("explanation/model-versions.rst", "from cachedcall import bump"),
]


class Block(NamedTuple):
    page: str
    line: int
    language: str
    code: str
    illustrative: bool


def _pages() -> list[str]:
    return sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.rst") if "_build" not in p.parts)


def _blocks(page: str) -> list[Block]:
    lines = (DOCS / page).read_text().splitlines()
    found = []
    for number, line in enumerate(lines):
        match = re.fullmatch(r"\.\. code-block:: (python|pycon)", line)
        if not match:
            continue
        before = [text for text in lines[:number] if text.strip()]
        illustrative = bool(before) and before[-1].startswith(".. illustrative:")
        body = []
        for text in lines[number + 1 :]:
            if text.strip() and not text.startswith("   "):
                break
            body.append(text)
        code = textwrap.dedent("\n".join(body)).strip("\n") + "\n"
        found.append(Block(page, number + 1, match.group(1), code, illustrative))
    return found


def _recipes() -> list[tuple[str, str, str]]:
    source = Path(__file__).read_text()
    found = re.findall(r"# DOCS: (\S+) (\S+)\n(.*?)# /DOCS\n", source, flags=re.S)
    return [(page, name, body.strip("\n") + "\n") for page, name, body in found]


def _is_recipe(block: Block) -> bool:
    return any(page == block.page and body == block.code for page, _, body in _recipes())


BLOCKS = [block for page in _pages() for block in _blocks(page)]
EXECUTED_PAGES = sorted({b.page for b in BLOCKS if not b.illustrative and not _is_recipe(b)})


def test_every_recipe_is_in_its_page_as_written():
    assert [(page, name) for page, name, _ in _recipes()] == [
        ("howto/testing.rst", "function"),
        ("howto/testing.rst", "TestCase"),
        ("howto/testing.rst", "TransactionTestCase"),
        ("howto/testing.rst", "pytest"),
        ("howto/testing.rst", "fixtures"),
        ("howto/operations.rst", "subscribe"),
        ("howto/operations.rst", "prometheus"),
    ]
    for page, name, body in _recipes():
        shown = [b.code for b in _blocks(page)]
        assert body in shown, f"docs/{page}'s {name} recipe differs from tests/test_docs_examples.py"


def test_every_python_block_is_a_recipe_run_or_listed_as_illustrative():
    illustrative = [(b.page, b.code.splitlines()[0]) for b in BLOCKS if b.illustrative]
    assert illustrative == ILLUSTRATIVE
    recipes = [b for b in BLOCKS if _is_recipe(b)]
    executed = [b for b in BLOCKS if not b.illustrative and not _is_recipe(b)]
    assert len(recipes) == len(_recipes())
    # Every block is one of the three; the executed ones are run by the next test.
    assert len(recipes) + len(executed) + len(illustrative) == len(BLOCKS)
    assert len(executed) > 10 * len(illustrative)


def _prelude(page: str) -> dict[str, object]:
    from django.core.cache import caches

    caches["default"].delete("club_page_classes")  # the tutorial's hand-written key
    chess = Club.objects.create(name="chess")
    go = Club.objects.create(name="go")
    ClubClass.objects.create(club=chess, name="openings", start_time=datetime.time(18))
    return {
        "__name__": "app.views",
        "__file__": f"docs/{page}",
        "Club": Club,
        "ClubClass": ClubClass,
        "Tag": Tag,
        "chess": chess,
        "go": go,
    }


def _run_tests_defined(code: str, namespace: dict[str, object]) -> None:
    for node in ast.parse(code).body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test") and not node.args.args:
            namespace[node.name]()  # type: ignore[operator]


@pytest.mark.parametrize("page", EXECUTED_PAGES)
def test_the_python_blocks_of_each_page_run_in_order(db, page):
    namespace = _prelude(page)
    for block in _blocks(page):
        if block.illustrative or _is_recipe(block):
            continue
        where = f"docs/{page}:{block.line}"
        if block.language == "pycon":
            test = doctest.DocTestParser().get_doctest(block.code, namespace, where, where, block.line)
            flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
            runner = doctest.DocTestRunner(optionflags=flags)
            runner.run(test, clear_globs=False)
            assert runner.failures == 0, f"{where}: the session's output differs (above)"
            continue
        exec(compile(block.code, where, "exec"), namespace)
        _run_tests_defined(block.code, namespace)


# --- the reference is complete --------------------------------------------------------------


def _read(page: str) -> str:
    return (DOCS / page).read_text()


def test_every_public_name_is_documented_with_an_example_that_runs():
    api = _read("reference/api.rst")
    for name in cachedcall.__all__:
        match = re.search(rf"^\.\. auto\w+:: cachedcall\.{name}\n", api, flags=re.M)
        assert match, f"reference/api.rst does not document cachedcall.{name}"
        section = api[match.end() :]
        following = re.search(r"^\.\. auto\w+::", section, flags=re.M)
        section = section[: following.start() if following else None]
        assert ".. code-block:: python" in section, f"cachedcall.{name} has no example"
        assert name in section.split(".. code-block:: python", 1)[1], f"cachedcall.{name}'s example"
    assert "reference/api.rst" in EXECUTED_PAGES


def test_the_testing_and_contrib_names_are_documented():
    from cachedcall import pytest_plugin
    from cachedcall import testing
    from cachedcall.contrib import prometheus
    from tests import toolbar_settings

    # The toolbar's modules are imported under its settings, never before the toolbar was
    # first installed (tests/toolbar_settings.py says why).
    with toolbar_settings.overridden():
        from cachedcall.contrib import debug_toolbar

    reference = _read("reference/testing.rst")
    for name in testing.__all__:
        assert f"cachedcall.testing.{name}" in reference or f".. class:: {name}()" in reference
    fixtures = [name for name in vars(pytest_plugin) if name.startswith("cachedcall_")]
    assert fixtures == [
        "cachedcall_disabled",
        "cachedcall_enabled",
        "cachedcall_isolated",
        "cachedcall_events",
    ]
    for name in fixtures:
        assert f".. autofunction:: cachedcall.pytest_plugin.{name}" in reference
        assert f"``{name}``" in _read("howto/testing.rst") or name in _read("howto/testing.rst")
    contrib = _read("reference/contrib.rst")
    for name in prometheus.__all__:
        assert name in contrib
    for name in debug_toolbar.__all__:
        assert f"cachedcall.contrib.debug_toolbar.{name}" in contrib


def test_every_setting_is_documented():
    from cachedcall import conf

    page = _read("reference/settings.rst")
    for key in conf._KNOWN:
        assert f'"{key}":' in page, f"the settings example lacks {key}"
        assert re.search(rf"^``{key}``\n    ", page, flags=re.M), (
            f"reference/settings.rst: no entry for {key}"
        )


def test_every_check_id_is_documented():
    source = (ROOT / "cachedcall" / "checks.py").read_text()
    ids = sorted(set(re.findall(r'id="(cachedcall\.[EW]\d{3})"', source)))
    assert len(ids) >= 9
    page = _read("reference/checks.rst")
    for check in ids:
        assert re.search(rf"^``{re.escape(check)}``\n    ", page, flags=re.M), f"{check} is not documented"


def test_every_event_outcome_is_documented():
    from cachedcall import events

    page = _read("reference/events.rst")
    assert len(events.OUTCOMES) == 9
    for outcome in events.OUTCOMES:
        assert re.search(rf"^``{outcome}``\s", page, flags=re.M), f"the outcome {outcome} is not documented"


def test_the_readmes_first_screen_sets_up_and_links_and_its_examples_run():
    readme = (ROOT / "README.rst").read_text()
    first_screen = "\n".join(readme.splitlines()[:24])
    for shown in (
        "pip install cachedcall",
        'INSTALLED_APPS = [..., "cachedcall"]',
        "https://cachedcall.readthedocs.io",
    ):
        assert shown in first_screen
    assert "python -m pytest" in readme  # the test command .ci/run calls the README's
    examples = re.findall(r"\.\. code-block:: python\n\n(.*?)(?:\n\n(?=\S)|\Z)", readme, flags=re.S)
    assert len(examples) == 2
    front = [block.code for block in _blocks("index.rst")]
    for example in examples:
        assert textwrap.dedent(example).strip("\n") + "\n" in front, (
            "the README's example is not docs/index.rst's"
        )
