"""Bumping versions: now, or after the outermost commit; and retrying the bumps that failed.

A bump requested inside ``transaction.atomic()`` is registered as a robust ``on_commit``
callback, so it runs exactly once after the outermost commit and never after a rollback
(Django drops callbacks of rolled-back savepoints); at commit it runs before every other
callback, so a failing callback registered by someone else cannot stop it (the ordering,
and seeing whether a bump is still queued, are :mod:`cachedcall.oncommit`'s, behind its
gate). Inside a test case's own transaction, bumps happen at once
(:mod:`cachedcall.testworld`).

Process state, all of it reset by :func:`forget`:

- ``_dirty`` (under ``_dirty_lock``): counters whose bump failed; calls that depend on
  one bypass the cache here until a retry succeeds, so a lost bump serves nothing stale.
  :mod:`cachedcall.retries` retries them from a thread of its own.
- ``_pending_bumps`` (a context variable): bumps waiting for a commit, by key; pruned
  lazily. A context variable rather than a thread-local because asgiref carries contexts
  across its hops: an ``async`` function run by ``async_to_sync()`` inside the writer's
  ``atomic()`` block runs in another thread, yet its queries come back to the writer's
  connection and read its uncommitted rows, so it must see the writer's pending bumps and
  bypass. A plain thread starts with a context of its own, as it had a thread-local.
- ``_row_counts_var`` (a context variable): row bumps per model in this transaction
  (:data:`ROW_LIMIT`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db import connections
from django.db import models

from cachedcall import backend
from cachedcall import conf
from cachedcall import health
from cachedcall import near
from cachedcall import oncommit
from cachedcall import repeats
from cachedcall import retries
from cachedcall import testworld
from cachedcall.versions import dependency_keys
from cachedcall.versions import write_keys

__all__ = ["bump", "reset"]

logger = logging.getLogger("cachedcall")

ROW_LIMIT = 100

_dirty: set[str] = set()
_dirty_lock = threading.Lock()
_pending_bumps: ContextVar[dict[str, _Pending] | None] = ContextVar("cachedcall_pending", default=None)
_row_counts_var: ContextVar[tuple[object, dict[str, int]] | None] = ContextVar(
    "cachedcall_rows", default=None
)


# --- what the other modules and the testing helpers may ask ---------------------------------


def unsettled() -> bool:
    """Whether a call may have to bypass: a failed bump, a pending one, or one owed to a
    test's transaction. One cheap call for the hit path; :func:`bypass` tells."""
    return bool(_dirty) or testworld.active or bool(_pending_bumps.get())


def bypass(keys: list[str]) -> str | None:
    """Why a call reading ``keys`` must bypass the cache (``"error"``: a bump of one of them
    failed and its retry too; ``"pending"``: one waits for a commit), or ``None``."""
    # Counted here, where it is decided (stats()["bypassed"]); only calls that bypass pay.
    # Not retried here: in a partition a retry costs this caller a socket timeout, and the
    # retry thread lands the bump within retries.LONGEST of the store answering again.
    if _dirty and not _dirty.isdisjoint(keys):
        retries.wake()  # running already, unless a test's forget() stopped it
        health.count(health.bypassed, "error")
        return "error"
    if has_pending() and any_pending(keys):
        health.count(health.bypassed, "pending")
        return "pending"
    return None


def has_pending() -> bool:
    """Whether this thread may have a bump waiting for a commit (cheap, for the hit path).

    It may say True of a record a rollback dropped; :func:`is_pending` tells for sure.
    """
    return bool(_pending_bumps.get()) or testworld.watching()


def any_pending(keys: Iterable[str]) -> bool:
    """Whether a bump of any of ``keys`` waits for a commit in this thread.

    First repeats the bumps made inside a test's transaction that has been rolled back
    since (:func:`testworld.settle`), so that nothing computed from its rows is read.
    """
    testworld.settle(bump_now)
    return any(is_pending(key) for key in keys)


def is_pending(key: str) -> bool:
    """Whether a bump of ``key`` waits for a commit in this thread (prunes a stale record)."""
    pending = _pending_bumps.get()
    record = pending.get(key) if pending else None
    if record is None:
        return False
    if record.alive():
        connection = record.connection
        if not testworld.in_test_world(connection):
            return True
        # The block it waited for is done and only the test's own blocks are open: in the
        # test's world that is a commit.
        record()
        testworld.watch(connection, [key])
        return False
    _pending().pop(key, None)
    return False


def is_dirty() -> bool:
    """Whether a bump failed in this process and waits for a retry; cheap, for the hit path."""
    return bool(_dirty)


def dirty_keys() -> list[str]:
    """The counters whose bump failed and waits for a retry, sorted."""
    with _dirty_lock:
        return sorted(_dirty)


def forget() -> None:
    """Forget failed bumps, and this context's pending bumps and row counts.

    The bumps owed to a test's rolled-back transaction (:mod:`cachedcall.testworld`) are
    made, not forgotten: forgetting them would let entries computed from its rows be read.

    For the testing helpers. Callbacks queued in an open transaction still run at its
    commit; only our records of them go. Other threads keep theirs.
    """
    with _dirty_lock:
        _dirty.clear()
    _pending_bumps.set(None)
    _row_counts_var.set(None)
    # Not forgotten: the bumps owed to test blocks rolled back since are made now, and those
    # owed to blocks still open (a TestCase's class block) stay owed.
    testworld.settle(bump_now)


# --- bumps after the commit ----------------------------------------------------------------


class _Pending:
    """One bump waiting for a commit on one database alias.

    ``hooks`` is the ``run_on_commit`` list it went into, or ``None`` when the gate is
    closed. Then one key may have several records queued, since we cannot see which of them
    a rollback dropped; they share ``ran``, so the first of them to run bumps, once.
    """

    __slots__ = ("connection", "hooks", "key", "ran")
    #: What :class:`oncommit.Hooks` moves to the front at commit.
    is_bump = True

    def __init__(self, key: str, connection: Any, hooks: list[Any] | None, ran: list[bool]) -> None:
        # The connection itself, not its alias: a reader in another thread (an async
        # function run by async_to_sync) looks up another connection under that alias.
        self.key, self.connection, self.hooks, self.ran = key, connection, hooks, ran

    def __call__(self) -> None:
        if self.hooks is None:
            if self.ran[0]:
                return
            self.ran[0] = True
            _row_counts_var.set(None)  # a commit: the next transaction counts its rows afresh
        pending = _pending()
        record = pending.get(self.key)
        if record is not None and record.ran is self.ran:  # with the gate, "record is self"
            del pending[self.key]
        bump_now([self.key])

    def alive(self) -> bool:
        """Whether our callback may still run (not run yet, not dropped by a rollback)."""
        connection = self.connection
        if self.hooks is None:
            # We cannot see the queue: until it runs, it counts as queued while a transaction
            # is open. Only reads trust that (they bypass); request() queues another record.
            return not self.ran[0] and connection.in_atomic_block
        hooks = connection.run_on_commit
        if hooks is self.hooks:
            return True
        if any(entry[1] is self for entry in hooks):
            self.hooks = hooks
            return True
        return False


def _row_model(key: str) -> str | None:
    """Return ``prefix:v:label`` for a row key, ``None`` for any other key."""
    parts = key.split(":")
    if len(parts) == 4 and parts[1] == "v" and "=" not in parts[3] and parts[3] != "*":
        return ":".join(parts[:3])
    return None


def _row_counts(transaction: object) -> dict[str, int]:
    # Counts are per transaction. With the gate open, Django gives the connection a new
    # run_on_commit list at every commit and rollback, so the list's identity tells one
    # transaction from the next. Else the token is None and a commit running one of our
    # bumps restarts the counts; counts left by a rollback only bring the epoch sooner.
    held = _row_counts_var.get()
    if held is None or held[0] is not transaction:
        held = (transaction, {})
        _row_counts_var.set(held)
    return held[1]


def _pending() -> dict[str, _Pending]:
    pending = _pending_bumps.get()
    if pending is None:
        pending = {}
        _pending_bumps.set(pending)
    return pending


def _flag_for(record: _Pending | None, hooks: list[Any] | None) -> list[bool] | None:
    """The ``ran`` flag a new record of this key gets, or ``None`` when it needs none."""
    if record is None or not record.alive():
        return [False]
    if record.hooks is not None:
        return None  # the gate saw it queued: it will run
    # Without the gate a savepoint rollback may have dropped it while the transaction goes
    # on, so queue another; one without the gate too shares its flag, to bump once.
    return record.ran if hooks is None else [False]


def request(keys: Iterable[str], using: str | None) -> None:
    """Bump ``keys`` now, or after the outermost commit if ``using`` is in a transaction."""
    connection = connections[using or DEFAULT_DB_ALIAS]
    if not connection.in_atomic_block:
        bump_now(keys)
        return
    if testworld.in_test_world(connection):
        keys = list(keys)
        testworld.settle(bump_now)
        bump_now(keys)
        testworld.watch(connection, keys)
        return
    hooks: list[Any] | None = None
    if oncommit.gate(connection):
        if type(connection.run_on_commit) is not oncommit.Hooks:
            connection.run_on_commit = oncommit.Hooks(connection.run_on_commit)
        hooks = connection.run_on_commit
    pending = _pending()
    rows = _row_counts(hooks)
    for key in keys:
        ran = _flag_for(pending.get(key), hooks)
        if ran is None:
            continue
        model = _row_model(key)
        if model is not None:
            # Past ROW_LIMIT rows of one model in a transaction, its epoch (read by every
            # row and scope dependency of the model) replaces further row bumps, so a large
            # delete costs a bounded number of bumps and does not flood the cache.
            count = rows[model] = rows.get(model, 0) + 1
            if count > ROW_LIMIT:
                key = model + ":*"
                ran = _flag_for(pending.get(key), hooks)
                if ran is None:
                    continue
        record = _Pending(key, connection, hooks, ran)
        connection.on_commit(record, robust=True)
        pending[key] = record


# --- bumping now, and retrying ---------------------------------------------------------------


def bump_now(keys: Iterable[str], *, repeat: bool = True) -> bool:
    """Advance ``keys`` in every alias that holds counters; remember failures as dirty.

    A key is dirty until it advanced in all of them: a retry advances it again in those
    that answered the first time, which only costs their entries a recomputation. With
    ``CACHEDCALL["REPLICA_LAG"]`` set, the keys are bumped once more after that lag
    (:mod:`cachedcall.repeats`), unless ``repeat`` is false (that repeat itself).
    """
    settings = conf.get()
    stores = [backend.store(alias) for alias in settings.counter_aliases]
    if settings.replica_lag and repeat:
        keys = list(keys)
        repeats.later(keys, settings.replica_lag)
    ok = True
    # A store that failed once is not asked again in this call: in a partition each try
    # costs a socket timeout, and a save bumps several counters. Its keys go dirty at once,
    # for the retry thread.
    failed: set[str] = set()
    for key in keys:
        advanced = True
        for store in stores:
            if store.alias in failed:
                advanced = False
            elif not store.incr(key):
                failed.add(store.alias)
                advanced = False
            else:
                # This process reads its own bump at once, without waiting for the push.
                near.changed(store.alias, key)
        if advanced:
            if _dirty:
                with _dirty_lock:
                    _dirty.discard(key)
        else:
            ok = False
            with _dirty_lock:
                new = key not in _dirty
                _dirty.add(key)
            if new:
                # During an outage the alias's one WARNING has said it; this failure is
                # counted with it (stats()["bump_failures"]) rather than logged again.
                health.bump_failures[stores[0].alias] += 1
                if not any(health.is_down(store.alias) for store in stores):
                    logger.warning(
                        "cachedcall: could not bump %r; calls depending on it bypass the "
                        "cache in this process until a retry succeeds.",
                        key,
                    )
    if not ok:
        retries.wake()
    return ok


def bump(*items: Any, using: str | None = None) -> None:
    """Mark data as changed, for writes that send no signals (``update()``, raw SQL).

    Each item is a model class or ``"app_label.ModelName"`` (every row of it), a saved
    instance, lazy ones such as ``request.user`` included (that row, its current scopes
    and its table), or a :class:`cachedcall.where` scope or row (it and its table).
    Inside ``transaction.atomic(using=...)`` the bump happens after the outermost commit.

    :param items: what changed.
    :param using: the database alias whose transaction the bump follows (default
        ``"default"``).
    """
    from cachedcall.versions import where

    prefix = conf.get().key_prefix
    keys: list[str] = []
    for item in items:
        if isinstance(item, models.Model):
            dependency_keys([item], prefix, "bump()")  # validates: saved, not ignored
            keys.extend(write_keys(item, prefix))
        elif isinstance(item, where):
            # Its own counter and the table, not the epoch: that would make every row and
            # scope of the model stale, not only this one.
            keys.extend(item.bump_keys(prefix))
        else:
            found = dependency_keys([item], prefix, "bump()")
            keys.extend(found)
            keys.append(found[0] + ":*")  # a whole table: every row and scope of it too
    request(dict.fromkeys(keys), using)


def reset() -> None:
    """Make every entry cachedcall wrote unreachable, in one step and without a flush.

    It advances one global generation that every read checks; other keys in the same
    memcached or Redis are untouched.
    """
    settings = conf.get()
    bump_now([f"{settings.key_prefix}:G"])
