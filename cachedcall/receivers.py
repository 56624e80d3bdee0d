"""The signal receivers: saves, deletes and many-to-many changes request their bumps.

``apps.py`` connects them. Each receiver works out which counters a write touches (see
:mod:`cachedcall.versions`) and hands them to :func:`cachedcall.bumps.request`, which bumps
them now or after the outermost commit.

Writes that reach other tables (m2m partners, the ends of a through row, children Django
updates or deletes without a signal) are :mod:`cachedcall.relations`'.

Process state: none at module level. Between ``pre_save`` and ``post_save`` of one save,
the scope values the row had are kept on the instance, as ``_cachedcall_old`` in its
``__dict__``; ``post_save`` pops them. Between ``pre_clear`` and ``post_clear`` of one
``clear()``, the partners' pks are kept there as ``_cachedcall_cleared`` (by through model).
"""

from __future__ import annotations

from typing import Any

from django.db import models

from cachedcall import conf
from cachedcall import relations
from cachedcall.bumps import request
from cachedcall.keys import pk_token
from cachedcall.versions import label
from cachedcall.versions import loaded
from cachedcall.versions import normalize
from cachedcall.versions import scope_key
from cachedcall.versions import shapes
from cachedcall.versions import write_keys

__all__: list[str] = []


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
    prefix = conf.get().key_prefix
    keys = write_keys(instance, prefix, old)
    if relations.through_ends(sender):
        # A through row written directly: its two ends' sets of partners changed.
        keys.extend(relations.end_keys(sender, loaded(instance), old, prefix))
    request(dict.fromkeys(keys), using)


def on_post_delete(
    sender: type[models.Model], instance: models.Model, using: str | None = None, **kwargs: Any
) -> None:
    if _ignored(sender):
        return
    prefix = conf.get().key_prefix
    keys = write_keys(instance, prefix)
    if relations.through_ends(sender):
        keys.extend(relations.end_keys(sender, loaded(instance), None, prefix))
    model = sender._meta.concrete_model
    assert model is not None
    # What the deletion collector changed without a signal: SET_NULL children, auto-created
    # through rows; derived from the models, no query.
    keys.extend(relations.delete_keys(model, prefix))
    request(dict.fromkeys(keys), using)


def on_m2m_changed(
    sender: type[models.Model],
    instance: models.Model,
    action: str,
    model: type[models.Model],
    pk_set: set[Any] | None,
    using: str | None = None,
    **kwargs: Any,
) -> None:
    if action == "pre_clear":
        # post_clear names no partners (pk_set is None): read them while the rows exist.
        cleared = instance.__dict__.setdefault("_cachedcall_cleared", {})
        cleared[sender] = relations.cleared_partners(sender, instance, model, using)
        return
    if action == "post_clear":
        pk_set = set(instance.__dict__.get("_cachedcall_cleared", {}).pop(sender, ()))
    elif action not in ("post_add", "post_remove"):
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
