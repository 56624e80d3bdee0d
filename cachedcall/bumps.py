"""Bumping versions: now, or after the outermost commit; and retrying the bumps that failed.

A bump requested inside ``transaction.atomic()`` is registered as a robust ``on_commit``
callback, so it runs exactly once after the outermost commit and never after a rollback
(Django drops callbacks of rolled-back savepoints); at commit it runs before every other
callback, so a failing callback registered by someone else cannot stop it. The ordering,
and seeing whether a bump is still queued, read Django's private ``run_on_commit`` list:
only behind a gate (:func:`_gate`); where it is closed, bumps use ``on_commit()`` alone.

Process state, all of it reset by :func:`forget` but the gate's memo:

- ``_dirty`` (under ``_dirty_lock``): counters whose bump failed; calls that depend on
  one bypass the cache here until a retry succeeds, so a lost bump serves nothing stale.
- ``_retried``: when every dirty counter was last retried (at most once a second).
- ``_local.pending`` (per thread): bumps waiting for a commit, by key; pruned lazily.
- ``_local.rows`` (per thread): row bumps per model in this transaction (:data:`ROW_LIMIT`).
- ``_gates``: per database wrapper class, whether the gate is open; it describes the
  installed code, not what happened, so :func:`forget` keeps it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db import connections
from django.db import models

from cachedcall import backend
from cachedcall import conf
from cachedcall.versions import dependency_keys
from cachedcall.versions import write_keys

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = ["bump", "reset"]

logger = logging.getLogger("cachedcall")

ROW_LIMIT = 100

_dirty: set[str] = set()
_dirty_lock = threading.Lock()
_retried = [0.0]
_local = threading.local()


# --- what the other modules and the testing helpers may ask ---------------------------------


def has_pending() -> bool:
    """Whether this thread may have a bump waiting for a commit (cheap, for the hit path).

    It may say True of a record a rollback dropped; :func:`is_pending` tells for sure.
    """
    return bool(getattr(_local, "pending", None))


def is_pending(key: str) -> bool:
    """Whether a bump of ``key`` waits for a commit in this thread (prunes a stale record)."""
    pending: dict[str, _Pending] | None = getattr(_local, "pending", None)
    record = pending.get(key) if pending else None
    if record is None or record.alive():
        return record is not None
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
    """Forget failed bumps, the retry clock, and this thread's pending bumps and row counts.

    For the testing helpers. Callbacks queued in an open transaction still run at its
    commit; only our records of them go. Other threads keep theirs.
    """
    with _dirty_lock:
        _dirty.clear()
    _retried[0] = 0.0
    _local.__dict__.clear()


# --- bumps after the commit ----------------------------------------------------------------


class _Pending:
    """One bump waiting for a commit on one database alias.

    ``hooks`` is the ``run_on_commit`` list it went into, or ``None`` when the gate is
    closed. Then one key may have several records queued, since we cannot see which of them
    a rollback dropped; they share ``ran``, so the first of them to run bumps, once.
    """

    __slots__ = ("hooks", "key", "ran", "using")

    def __init__(self, key: str, using: str, hooks: list[Any] | None, ran: list[bool]) -> None:
        self.key, self.using, self.hooks, self.ran = key, using, hooks, ran

    def __call__(self) -> None:
        if self.hooks is None:
            if self.ran[0]:
                return
            self.ran[0] = True
            _local.rows = None  # a commit: the next transaction counts its rows afresh
        pending = _pending()
        record = pending.get(self.key)
        if record is not None and record.ran is self.ran:  # with the gate, "record is self"
            del pending[self.key]
        bump_now([self.key])

    def alive(self) -> bool:
        """Whether our callback may still run (not run yet, not dropped by a rollback)."""
        connection = connections[self.using]
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


class _Hooks(list):  # type: ignore[type-arg]
    """A connection's ``run_on_commit`` list that runs our bumps first at commit.

    A non-robust callback of someone else's that raises stops every callback after it, so
    ours must run before theirs. Moving ours to the front when they are registered would
    break ``captureOnCommitCallbacks`` (it slices the list from its length at entry), so the
    order changes only when Django starts draining the list with ``pop(0)`` at commit.
    """

    _ordered = False

    def pop(self, index: Any = -1) -> Any:
        if index == 0 and not self._ordered:
            self._ordered = True
            ours = [entry for entry in self if isinstance(entry[1], _Pending)]
            if ours:
                self[:] = ours + [entry for entry in self if not isinstance(entry[1], _Pending)]
        return super().pop(index)


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
    held: tuple[object, dict[str, int]] | None = getattr(_local, "rows", None)
    if held is None or held[0] is not transaction:
        held = _local.rows = (transaction, {})
    return held[1]


def _pending() -> dict[str, _Pending]:
    pending: dict[str, _Pending] | None = getattr(_local, "pending", None)
    if pending is None:
        pending = _local.pending = {}
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
    hooks: list[Any] | None = None
    if _gate(connection):
        if type(connection.run_on_commit) is not _Hooks:
            connection.run_on_commit = _Hooks(connection.run_on_commit)
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
        record = _Pending(key, connection.alias, hooks, ran)
        connection.on_commit(record, robust=True)
        pending[key] = record


# --- the gate on Django's run_on_commit ----------------------------------------------------

_gates: dict[type[BaseDatabaseWrapper], bool] = {}
_gates_lock = threading.Lock()


def _gate(connection: BaseDatabaseWrapper) -> bool:
    """Whether ``connection``'s class keeps ``run_on_commit`` as assumed; probed once per class."""
    cls = type(connection)
    gate = _gates.get(cls)
    if gate is None:
        with _gates_lock:
            gate = _gates.get(cls)
            if gate is None:
                reason = _probe(cls)
                gate = _gates[cls] = reason is None
                if reason is not None:
                    logger.info(
                        "cachedcall: %s.%s keeps on_commit() callbacks in a way this version "
                        "does not know (%s); bumps use the public on_commit() alone, so a "
                        "failing callback registered before one can stop it.",
                        cls.__module__,
                        cls.__qualname__,
                        reason,
                    )
    return gate


def _probe(cls: type[BaseDatabaseWrapper]) -> str | None:
    """Run ``cls``'s own transaction methods on a bare instance; return what differs, or None.

    What :class:`_Pending` and :class:`_Hooks` assume: ``on_commit()`` appends ``(savepoint
    ids, func, robust)`` tuples in place; a commit puts a new list in place and drains the
    old one with ``pop(0)``; a rollback, of a savepoint too, puts a new list in place. It
    runs the code, since some installs ship no source; only the steps that need a database
    are stubbed, and a Django that needs more of the instance closes the gate by raising.
    """

    ran: list[str] = []

    class Ours(_Pending):
        __slots__ = ()

        def __call__(self) -> None:
            ran.append("ours")

    ours, a, b = Ours("", "", None, [False]), partial(ran.append, "a"), partial(ran.append, "b")
    try:

        class Probe(cls):  # type: ignore[misc,valid-type]
            validate_thread_sharing = _savepoint_rollback = _rollback = staticmethod(lambda *_: None)
            _savepoint_allowed = staticmethod(lambda: True)

        # savepoint_rollback() and rollback() refuse to run in an event loop's thread; the
        # probe touches no database, so it calls the functions they wrap.
        savepoint_rollback: Any = getattr(Probe.savepoint_rollback, "__wrapped__", Probe.savepoint_rollback)
        rollback: Any = getattr(Probe.rollback, "__wrapped__", Probe.rollback)
        db: Any = object.__new__(Probe)
        db.in_atomic_block, db.savepoint_ids = True, ["s1"]
        hooks = db.run_on_commit = _Hooks()
        db.on_commit(a)
        db.on_commit(b)
        db.on_commit(ours, robust=True)
        entry = hooks[-1] if db.run_on_commit is hooks and len(hooks) == 3 else None
        if not (type(entry) is tuple and len(entry) == 3 and entry[1] is ours and entry[2] is True):
            return "on_commit() does not append (savepoint ids, func, robust) tuples in place"
        db.savepoint_ids = ["s1", "s2"]
        db.on_commit(partial(ran.append, "dropped"))
        savepoint_rollback(db, "s2")
        if db.run_on_commit is hooks or [e[1] for e in db.run_on_commit] != [a, b, ours]:
            return "a savepoint rollback does not put a new list in place"
        hooks = db.run_on_commit = _Hooks(db.run_on_commit)
        db.in_atomic_block = False
        Probe.run_and_clear_commit_hooks(db)
        if ran != ["ours", "a", "b"] or not hooks._ordered or db.run_on_commit is hooks:
            return "a commit does not swap in a new list and drain the old one with pop(0)"
        left = db.run_on_commit = [({"s1"}, a, False)]
        rollback(db)
        if db.run_on_commit is left or db.run_on_commit:
            return "a rollback does not put a new list in place"
    except Exception as exc:
        return f"probing it raised {exc!r}"
    return None


# --- bumping now, and retrying ---------------------------------------------------------------


def bump_now(keys: Iterable[str]) -> bool:
    """Advance ``keys`` in the counters alias; remember failures as dirty."""
    alias = conf.get().counters_cache
    cache = backend.cache_for(alias)
    ok = True
    for key in keys:
        if backend.incr(cache, alias, key):
            if _dirty:
                with _dirty_lock:
                    _dirty.discard(key)
        else:
            ok = False
            with _dirty_lock:
                if key not in _dirty:
                    logger.warning(
                        "cachedcall: could not bump %r; calls depending on it bypass the "
                        "cache in this process until a retry succeeds.",
                        key,
                    )
                _dirty.add(key)
    return ok


def retry_dirty(keys: Iterable[str]) -> bool:
    """Retry failed bumps among ``keys``; return True when none of them is dirty any more.

    Dirty counters the call does not read are retried too, at most once a second, so they
    settle as soon as the backend answers rather than when a reader happens to need them.
    """
    stuck = [k for k in keys if k in _dirty]
    now = time.monotonic()
    if stuck:
        if not bump_now(stuck):
            return False
    elif now - _retried[0] < 1.0:
        return True
    _retried[0] = now
    if _dirty:
        with _dirty_lock:
            others = list(_dirty)  # a snapshot: bump_now() changes the set as it goes
        bump_now(others)
    return True


def bump(*items: Any, using: str | None = None) -> None:
    """Mark data as changed, for writes that send no signals (``update()``, raw SQL).

    Each item is a model class or ``"app_label.ModelName"`` (every row of it), a saved
    instance (that row, its scopes and its table) or a :class:`cachedcall.where` scope.
    Inside ``transaction.atomic(using=...)`` the bump happens after the outermost commit.

    :param items: what changed.
    :param using: the database alias whose transaction the bump follows (default
        ``"default"``).
    """
    prefix = conf.get().key_prefix
    keys: list[str] = []
    for item in items:
        if isinstance(item, models.Model):
            dependency_keys([item], prefix, "bump()")  # validates: saved, not ignored
            keys.extend(write_keys(item, prefix))
        else:
            found = dependency_keys([item], prefix, "bump()")
            keys.extend(found)
            if len(found) == 1:  # a whole table: every row and scope of it too
                keys.append(found[0] + ":*")
    request(dict.fromkeys(keys), using)


def reset() -> None:
    """Make every entry cachedcall wrote unreachable, in one step and without a flush.

    It advances one global generation that every read checks; other keys in the same
    memcached or Redis are untouched.
    """
    settings = conf.get()
    bump_now([f"{settings.key_prefix}:G"])
