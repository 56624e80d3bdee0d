"""cachedcall.bumps: its state functions, and the gate on Django's run_on_commit list."""

from __future__ import annotations

import importlib
import logging
import time
from collections import Counter

import pytest
from asgiref.sync import async_to_sync
from django.core.cache import caches
from django.db import connections
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteWrapper
from django.test import override_settings

from cachedcall import bumps
from cachedcall import cached
from cachedcall import health
from cachedcall import oncommit
from cachedcall import where
from cachedcall.versions import write_keys
from tests import names
from tests import servers
from tests.savepoints import rolled_back
from tests.testapp.models import ClubClass

calls: Counter[str] = Counter()

TABLE = names.key("v:testapp.clubclass")


@cached(timeout=600, depends_on=lambda club: [club, where(ClubClass, club=club)])
def club_classes(club):
    calls[club.name] += 1
    return [club.name, *ClubClass.objects.filter(club=club).order_by("name").values_list("name", flat=True)]


@cached(timeout=600, depends_on=[ClubClass])
def all_classes():
    calls["all"] += 1
    return sorted(ClubClass.objects.values_list("name", flat=True))


@cached(timeout=600, depends_on=[ClubClass])
async def all_classes_async():
    calls["async"] += 1
    return sorted([name async for name in ClubClass.objects.values_list("name", flat=True)])


def _version():
    return caches["default"].get(TABLE)


def _dead_counters():
    """The counters alias pointing at a memcached that is not running: every bump fails."""
    dead = servers.memcached(servers.free_port())  # never started
    return override_settings(CACHES={"default": servers.memcached_config(dead)})


# --- the gate ------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["django.db.backends.sqlite3.base", "django.db.backends.postgresql.base"])
def test_the_gate_is_open_on_the_installed_django(module):
    # The contract: if a Django upgrade changes how run_on_commit is kept, this fails,
    # and _Hooks and _Pending.alive() need a look before the gate is trusted again.
    # psycopg is in the test extra: an ImportError here is a broken install.
    wrapper = importlib.import_module(module).DatabaseWrapper
    assert oncommit.probe(BaseDatabaseWrapper) is None
    assert oncommit.probe(wrapper) is None


def test_the_gate_of_the_default_connection_is_memoized(monkeypatch, cachedcall_log):
    monkeypatch.setattr(oncommit, "_gates", {})
    default = connections["default"]
    assert oncommit.gate(default) is True
    assert oncommit.gate(default) is True
    assert oncommit._gates == {type(default): True}
    assert not [r for r in cachedcall_log.records if "on_commit() callbacks" in r.getMessage()]


def _drain_by_iterating(self):
    current, self.run_on_commit = self.run_on_commit, []
    for _, func, _robust in current:
        func()


def _drain_from_the_end(self):
    current, self.run_on_commit = self.run_on_commit, []
    while current:
        current.pop()[1]()


def _drain_in_place(self):
    while self.run_on_commit:
        self.run_on_commit.pop(0)[1]()


def _store_dicts(self, func, robust=False):
    self.run_on_commit.append({"sids": set(self.savepoint_ids), "func": func, "robust": robust})


def _savepoint_rollback_in_place(self, sid):
    self.run_on_commit[:] = [e for e in self.run_on_commit if sid not in e[0]]


def _rollback_in_place(self):
    self.run_on_commit.clear()


def _needs_a_database(self):
    raise RuntimeError("no connection")


@pytest.mark.parametrize(
    ("method", "replacement", "reason"),
    [
        ("run_and_clear_commit_hooks", _drain_by_iterating, "pop(0)"),
        ("run_and_clear_commit_hooks", _drain_from_the_end, "pop(0)"),
        ("run_and_clear_commit_hooks", _drain_in_place, "pop(0)"),
        ("on_commit", _store_dicts, "tuples"),
        ("savepoint_rollback", _savepoint_rollback_in_place, "savepoint rollback"),
        ("rollback", _rollback_in_place, "a rollback"),
        ("validate_no_atomic_block", _needs_a_database, "raised"),
    ],
)
def test_the_gate_closes_on_a_django_that_keeps_the_list_otherwise(
    monkeypatch, cachedcall_log, method, replacement, reason
):
    changed = type("DatabaseWrapper", (SQLiteWrapper,), {method: replacement})
    monkeypatch.setattr(oncommit, "_gates", {})
    assert reason in oncommit.probe(changed)
    fake = object.__new__(changed)
    assert oncommit.gate(fake) is False
    assert oncommit.gate(fake) is False
    lines = [r for r in cachedcall_log.records if "on_commit() callbacks" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO  # once, not per call
    assert reason in lines[0].getMessage()


@pytest.mark.usefixtures("backend_name")
@pytest.mark.django_db(transaction=True)
def test_with_the_gate_open_our_bump_runs_before_a_failing_callback(clubs):
    chess, _ = clubs
    assert oncommit.gate(connections["default"])
    table = _version()

    def broken():
        raise RuntimeError("someone else's callback")

    with pytest.raises(RuntimeError), transaction.atomic():
        transaction.on_commit(broken)  # not robust, and registered before our bump
        ClubClass.objects.create(club=chess, name="after-broken")
        assert type(connections["default"].run_on_commit) is oncommit.Hooks
    assert _version() == table + 1
    assert club_classes(chess) == ["chess", "after-broken", "openings"]


# --- with the gate closed, the public API alone (test_versions runs the transaction tests
# under both gates: the commit_gate fixture) ----------------------------------------------------


@pytest.mark.usefixtures("backend_name", "commit_gate")
@pytest.mark.django_db(transaction=True)
def test_a_key_written_again_after_its_savepoint_rolled_back_still_bumps(clubs):
    # The bump queued in the savepoint is dropped. Without the gate we cannot see that, so
    # the second write must queue its own bump rather than trust the first.
    chess, _ = clubs
    assert club_classes(chess) == ["chess", "openings"]
    with transaction.atomic():
        rolled_back(lambda: ClubClass.objects.create(club=chess, name="rolled-back"))
        ClubClass.objects.create(club=chess, name="kept")
    assert club_classes(chess) == ["chess", "kept", "openings"]


@pytest.mark.usefixtures("backend_name", "commit_gate")
@pytest.mark.django_db(transaction=True)
def test_a_bump_queued_before_a_rolled_back_savepoint_stays_queued(clubs):
    chess, _ = clubs
    all_classes()
    table = _version()
    with transaction.atomic():
        ClubClass.objects.create(club=chess, name="kept")
        rolled_back(lambda: ClubClass.objects.create(club=chess, name="rolled-back"))
        assert bumps.is_pending(TABLE)  # Django replaced the list; our record is still in it
        assert all_classes() == ["joseki", "kept", "openings"]  # read your writes: bypassed
    assert _version() == table + 1
    assert all_classes() == ["joseki", "kept", "openings"]
    assert calls["all"] == 3


# --- has_pending, is_dirty, dirty_keys, forget ----------------------------------------------------


@pytest.mark.usefixtures("backend_name")
@pytest.mark.django_db(transaction=True)
def test_has_pending_inside_a_transaction_until_the_commit(clubs):
    chess, _ = clubs
    assert not bumps.has_pending()
    with transaction.atomic():
        assert not bumps.has_pending()
        ClubClass.objects.create(club=chess, name="x")
        assert bumps.has_pending() and bumps.is_pending(TABLE)
    assert not bumps.has_pending() and not bumps.is_pending(TABLE)


@pytest.mark.usefixtures("backend_name")
@pytest.mark.django_db(transaction=True)
def test_after_a_rollback_is_pending_prunes_what_has_pending_still_saw(clubs):
    chess, _ = clubs
    with pytest.raises(ValueError), transaction.atomic():
        written = ClubClass.objects.create(club=chess, name="x")
        raise ValueError
    keys = write_keys(written, names.prefix())
    assert bumps.has_pending()  # cheap and conservative: the records are still there
    assert not any([bumps.is_pending(key) for key in keys])  # each pruned
    assert not bumps.has_pending()


@pytest.mark.usefixtures("backend_name")
@pytest.mark.django_db(transaction=True)
def test_an_async_call_inside_the_writers_atomic_block_sees_its_pending_bump(clubs):
    # async_to_sync runs the coroutine in another thread, whose queries come back to this
    # one (thread-sensitive): it reads this transaction's rows, so it must bypass the cache,
    # neither serving the entry stored before the write nor storing what it read.
    chess, _ = clubs
    assert async_to_sync(all_classes_async)() == ["joseki", "openings"]
    with pytest.raises(ValueError), transaction.atomic():
        ClubClass.objects.create(club=chess, name="x")
        assert async_to_sync(all_classes_async)() == ["joseki", "openings", "x"]
        assert async_to_sync(all_classes_async)() == ["joseki", "openings", "x"]
        raise ValueError
    assert calls["async"] == 3  # both calls inside the block computed
    assert async_to_sync(all_classes_async)() == ["joseki", "openings"]  # the first entry
    assert calls["async"] == 3


def _wait_clean(within=5.0):
    deadline = time.monotonic() + within
    while bumps.is_dirty() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_is_dirty_and_dirty_keys_until_the_retry_thread_lands_them():
    assert not bumps.is_dirty() and bumps.dirty_keys() == []
    with _dead_counters():
        assert bumps.bump_now([names.key("v:b"), names.key("v:a")]) is False
        assert bumps.is_dirty()
        assert bumps.dirty_keys() == [names.key("v:a"), names.key("v:b")]
        # A call reading one of them bypasses, without retrying in the caller's thread.
        errors = health.errors["default"]
        assert bumps.bypass([names.key("v:a")]) == "error"
        assert bumps.bypass([names.key("v:c")]) is None  # not dirty: nothing to bypass for
        assert health.errors["default"] == errors
    _wait_clean()  # the default alias answers again: the retry thread lands both
    assert not bumps.is_dirty() and bumps.dirty_keys() == []


def test_a_failing_store_is_asked_once_per_bump_not_once_per_counter():
    keys = [names.key(f"v:testapp.club:{n}") for n in range(5)]
    with _dead_counters():
        assert bumps.bump_now(keys) is False
        assert health.errors["default"] == 1  # one failed incr; the other four never sent
        assert bumps.dirty_keys() == sorted(keys)  # all five wait for the retry thread
        assert health.bump_failures["default"] == 5
    _wait_clean()
    assert not bumps.is_dirty()


def test_forget_clears_failed_bumps():
    with _dead_counters():
        bumps.bump_now([names.key("v:a")])
        assert bumps.is_dirty()
        bumps.forget()
        assert not bumps.is_dirty() and bumps.dirty_keys() == []
        assert bumps.bypass([names.key("v:a")]) is None


@pytest.mark.usefixtures("backend_name")
@pytest.mark.django_db(transaction=True)
def test_forget_drops_this_threads_records_but_the_queued_bump_still_runs(clubs):
    chess, _ = clubs
    table = _version()
    with transaction.atomic():
        ClubClass.objects.create(club=chess, name="x")
        assert bumps.has_pending()
        bumps.forget()
        assert not bumps.has_pending() and not bumps.is_pending(TABLE)
    assert _version() == table + 1
