"""Bumping versions: now, or after the outermost commit; and the signal receivers.

A bump requested inside ``transaction.atomic()`` is registered as a robust ``on_commit``
callback, so it runs exactly once after the outermost commit and never after a rollback
(Django drops callbacks of rolled-back savepoints); at commit it runs before every other
callback, so a failing callback registered by someone else cannot stop it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db import connections
from django.db import models

from cachedcall import backend
from cachedcall import conf
from cachedcall.keys import pk_token
from cachedcall.versions import dependency_keys
from cachedcall.versions import label
from cachedcall.versions import normalize
from cachedcall.versions import scope_key
from cachedcall.versions import shapes
from cachedcall.versions import write_keys

__all__ = ["bump", "reset"]

logger = logging.getLogger("cachedcall")

# Counters whose bump failed (backend down). Until a retry succeeds, calls that depend on
# them bypass the cache in this process, so the failed bump cannot turn into a stale read.
dirty: set[str] = set()
_dirty_lock = threading.Lock()
_local = threading.local()


class _Pending:
    """One bump waiting for a commit on one database alias."""

    __slots__ = ("hooks", "key", "using")

    def __init__(self, key: str, using: str, hooks: list[Any]) -> None:
        self.key = key
        self.using = using
        self.hooks = hooks

    def __call__(self) -> None:
        pending = _pending()
        if pending.get(self.key) is self:
            del pending[self.key]
        bump_now([self.key])

    def alive(self) -> bool:
        """Whether our callback is still queued (not run, not dropped by a rollback)."""
        hooks = connections[self.using].run_on_commit
        if hooks is self.hooks:
            return True
        if any(entry[1] is self for entry in hooks):
            self.hooks = hooks
            return True
        return False


ROW_LIMIT = 100


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


def _row_counts(hooks: list[Any]) -> dict[str, int]:
    # Counts are per transaction: Django gives the connection a new run_on_commit list at
    # every commit and rollback, so the list's identity tells one transaction from the next.
    held: tuple[list[Any], dict[str, int]] | None = getattr(_local, "rows", None)
    if held is None or held[0] is not hooks:
        held = _local.rows = (hooks, {})
    return held[1]


def _pending() -> dict[str, _Pending]:
    pending: dict[str, _Pending] | None = getattr(_local, "pending", None)
    if pending is None:
        pending = _local.pending = {}
    return pending


def pending_keys() -> dict[str, _Pending]:
    """This thread's keys whose bump waits for a commit (stale records pruned lazily)."""
    return getattr(_local, "pending", None) or {}


def is_pending(key: str) -> bool:
    record = pending_keys().get(key)
    if record is None:
        return False
    if record.alive():
        return True
    _pending().pop(key, None)
    return False


def request(keys: Iterable[str], using: str | None) -> None:
    """Bump ``keys`` now, or after the outermost commit if ``using`` is in a transaction."""
    connection = connections[using or DEFAULT_DB_ALIAS]
    if not connection.in_atomic_block:
        bump_now(keys)
        return
    if type(connection.run_on_commit) is not _Hooks:
        connection.run_on_commit = _Hooks(connection.run_on_commit)
    pending = _pending()
    rows = _row_counts(connection.run_on_commit)
    for key in keys:
        record = pending.get(key)
        if record is not None and record.alive():
            continue
        model = _row_model(key)
        if model is not None:
            # Past ROW_LIMIT rows of one model in a transaction, its epoch (read by every
            # row and scope dependency of the model) replaces further row bumps, so a large
            # delete costs a bounded number of bumps and does not flood the cache.
            count = rows[model] = rows.get(model, 0) + 1
            if count > ROW_LIMIT:
                key = model + ":*"
                record = pending.get(key)
                if record is not None and record.alive():
                    continue
        record = _Pending(key, connection.alias, connection.run_on_commit)
        connection.on_commit(record, robust=True)
        pending[key] = record


def bump_now(keys: Iterable[str]) -> bool:
    """Advance ``keys`` in the counters alias; remember failures as dirty."""
    alias = conf.get().counters_cache
    cache = backend.cache_for(alias)
    ok = True
    for key in keys:
        if backend.incr(cache, alias, key):
            if dirty:
                with _dirty_lock:
                    dirty.discard(key)
        else:
            ok = False
            with _dirty_lock:
                if key not in dirty:
                    logger.warning(
                        "cachedcall: could not bump %r; calls depending on it bypass the "
                        "cache in this process until a retry succeeds.",
                        key,
                    )
                dirty.add(key)
    return ok


_retried = [0.0]


def retry_dirty(keys: Iterable[str]) -> bool:
    """Retry failed bumps among ``keys``; return True when none of them is dirty any more.

    Dirty counters the call does not read are retried too, at most once a second, so they
    settle as soon as the backend answers rather than when a reader happens to need them.
    """
    stuck = [k for k in keys if k in dirty]
    now = time.monotonic()
    if stuck:
        if not bump_now(stuck):
            return False
    elif now - _retried[0] < 1.0:
        return True
    _retried[0] = now
    if dirty:
        bump_now(list(dirty))
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


# --- signal receivers ---------------------------------------------------------------------------


def _ignored(model: type[models.Model]) -> bool:
    meta = model._meta
    return meta.label_lower in conf.get().ignore_models or (
        meta.concrete_model is not None and meta.concrete_model._meta.label_lower in conf.get().ignore_models
    )


def on_pre_save(
    sender: type[models.Model],
    instance: models.Model,
    raw: bool = False,
    using: str | None = None,
    update_fields: Any = None,
    **kwargs: Any,
) -> None:
    # An update can move a row out of a scope: read the scope values it had, so the old
    # scopes are bumped too. Skipped when no scope column can change.
    if instance.pk is None or _ignored(sender):
        return
    meta = sender._meta
    if instance._state.adding and meta.pk is not None and meta.pk.has_default():
        return  # Django inserts without looking: there is no old row.
    model = meta.concrete_model
    assert model is not None
    wanted: dict[type[models.Model], list[tuple[str, ...]]] = {}
    for cls in (model, *model._meta.get_parent_list()):
        for names in shapes(cls):
            # Read the stored values when the row may leave the scope (the columns are
            # written) or when we do not know which scope it is in (a deferred column).
            deferred = any(n not in instance.__dict__ for n in names)
            written = update_fields is None or any(
                n in update_fields or n.removesuffix("_id") in update_fields for n in names
            )
            if deferred or written:
                wanted.setdefault(cls, []).append(names)
    if not wanted:
        return
    old: dict[tuple[str, ...], tuple[Any, ...]] = {}
    for cls, cls_shapes in wanted.items():
        columns = sorted({n for names in cls_shapes for n in names})
        row = cls._base_manager.using(using).filter(pk=instance.pk).values(*columns).first()
        if row is not None:
            for names in cls_shapes:
                old[names] = tuple(row[n] for n in names)
    instance.__dict__["_cachedcall_old"] = old


def on_post_save(
    sender: type[models.Model], instance: models.Model, using: str | None = None, **kwargs: Any
) -> None:
    old = instance.__dict__.pop("_cachedcall_old", None)
    if _ignored(sender):
        return
    request(write_keys(instance, conf.get().key_prefix, old), using)


def on_post_delete(
    sender: type[models.Model], instance: models.Model, using: str | None = None, **kwargs: Any
) -> None:
    if _ignored(sender):
        return
    request(write_keys(instance, conf.get().key_prefix), using)


def on_m2m_changed(
    sender: type[models.Model],
    instance: models.Model,
    action: str,
    model: type[models.Model],
    pk_set: set[Any] | None,
    using: str | None = None,
    **kwargs: Any,
) -> None:
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    prefix = conf.get().key_prefix
    through = sender
    keys: list[str] = []
    for cls in (type(instance), model, through):
        if not _ignored(cls):
            keys.append(f"{prefix}:v:{cls._meta.concrete_model._meta.label_lower}")  # type: ignore[union-attr]
    if not _ignored(type(instance)):
        keys.extend(write_keys(instance, prefix))
    if not _ignored(model):
        lbl = label(model)
        # The related rows' own columns did not change, but their set of partners did.
        keys.extend(f"{prefix}:v:{lbl}:{pk_token(pk)}" for pk in pk_set or ())
    # The through rows came or went: bump the through model's foreign-key scopes.
    for field in through._meta.concrete_fields:
        if not field.is_relation:
            continue
        related = field.related_model
        if not isinstance(related, type):
            continue
        if isinstance(instance, related):
            pks = [instance.pk]
        elif issubclass(model, related):
            pks = list(pk_set or ())
        else:
            continue
        lbl = label(through)
        keys.extend(scope_key(prefix, lbl, (field.attname,), (normalize(field, pk),)) for pk in pks)
    request(dict.fromkeys(keys), using)
