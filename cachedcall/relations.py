"""What a write changes beyond its own row: m2m partners, the ends of through rows, and the
rows Django changes without a signal when their parent is deleted.

The receivers (:mod:`cachedcall.receivers`) bump a row's table, row and scopes. Three kinds
of change reach other tables, and for two of them Django sends no signal:

- **The ends of a through row.** Adding ``Tag`` 5 to ``ClubClass`` 1 changes both rows' sets
  of partners. ``m2m_changed`` says so; a custom through model written directly
  (``Membership.objects.create(...)``, ``membership.delete()``) sends only its own
  ``post_save`` / ``post_delete``, so :func:`end_keys` bumps the two ends from there.
- **Through rows deleted with a partner.** Deleting a ``Tag`` makes the deletion collector
  delete its rows of an *auto-created* through model, and Django sends no signal for
  auto-created models. The partners' ids are not known without a query, so the partner
  model's epoch stands for them (one bump, no query; it makes every row and scope
  dependency of the partner model stale), with the through model's table and epoch.
- **Children updated or deleted without signals.** ``on_delete=SET_NULL``, ``SET_DEFAULT``
  and ``SET(...)`` make the collector run one signal-less ``UPDATE`` on the children; a
  database-level action (Django 6.1's ``DB_CASCADE``, ``DB_SET_NULL``, ``DB_SET_DEFAULT``)
  leaves the change to the database. The children's table and epoch are bumped (no query),
  and for ``DB_CASCADE`` the same again for what deleting those children reaches.

What a delete reaches this way is derived once per model from its relations
(:func:`delete_keys`); ``CASCADE`` children of non-auto-created models need nothing here:
the collector loads them and sends their ``post_delete``.

Process state: the keys derived per model (``_reach``) and the m2m relations per through
model (``_ends``), dropped when ``CACHEDCALL`` changes and by :func:`forget`.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

from django.core.signals import setting_changed
from django.db import models

from cachedcall import conf
from cachedcall.keys import pk_token
from cachedcall.versions import label

__all__: list[str] = []

#: ``on_delete`` handlers that change no child row (or refuse the delete).
_UNCHANGED = {models.PROTECT, models.RESTRICT, models.DO_NOTHING}
#: Django 6.1's database-level cascade (absent before it).
_DB_CASCADE = getattr(models, "DB_CASCADE", None)

_reach: dict[type[models.Model], tuple[str, ...]] = {}
_ends: dict[type[models.Model], tuple[tuple[str, type[models.Model]], ...]] = {}


def _ignored(model: type[models.Model]) -> bool:
    return label(model) in conf.get().ignore_models


def _table_and_epoch(model: type[models.Model]) -> list[str]:
    # Unprefixed: the prefix is added per call, so a KEY_PREFIX change needs no new plan.
    lbl = label(model)
    return [f"v:{lbl}", f"v:{lbl}:*"]


def delete_keys(model: type[models.Model], prefix: str) -> list[str]:
    """The counters that deleting a row of ``model`` bumps beyond the row's own: its
    signal-less children and its auto-created through rows (see the module docstring)."""
    found = _reach.get(model)
    if found is None:
        found = _reach[model] = tuple(dict.fromkeys(_reached(model, set())))
    return [f"{prefix}:{key}" for key in found]


def _reached(model: type[models.Model], seen: set[type[models.Model]]) -> Iterable[str]:
    seen.add(model)
    for cls in (model, *model._meta.get_parent_list()):
        for field in cls._meta.get_fields(include_hidden=True):
            if field.many_to_many:
                yield from _through_deleted(cls, field)
            elif field.auto_created and not field.concrete and (field.one_to_many or field.one_to_one):
                yield from _children(field, seen)


def _through_deleted(model: type[models.Model], field: Any) -> Iterable[str]:
    # A forward ManyToManyField or the reverse ManyToManyRel of one.
    m2m = field if isinstance(field, models.ManyToManyField) else field.field
    through = m2m.remote_field.through
    if not (isinstance(through, type) and issubclass(through, models.Model)):
        return
    if not through._meta.auto_created or _ignored(through):
        return  # a custom through model's rows send post_delete: end_keys() covers them
    yield from _table_and_epoch(through)
    partner = m2m.related_model if m2m.model is model or issubclass(model, m2m.model) else m2m.model
    if isinstance(partner, type) and not _ignored(partner):
        yield from _table_and_epoch(partner)


def _children(rel: Any, seen: set[type[models.Model]]) -> Iterable[str]:
    child = rel.related_model
    on_delete = rel.on_delete
    if on_delete is models.CASCADE or on_delete in _UNCHANGED:
        return
    if not (isinstance(child, type) and issubclass(child, models.Model)):
        return
    if child._meta.auto_created:
        return  # a through model's foreign keys cascade; _through_deleted() covers them
    if not _ignored(child):
        yield from _table_and_epoch(child)
    if _DB_CASCADE is not None and on_delete is _DB_CASCADE and child not in seen:
        # The database deletes the children without Django: what deleting them reaches
        # is reached too (their own children; database actions only, as Django requires).
        yield from _reached(child, seen)


def through_ends(through: type[models.Model]) -> tuple[tuple[str, type[models.Model]], ...]:
    """The foreign keys of ``through`` that are the two ends of a many-to-many relation, as
    ``(attname, related model)``; empty for a model that is no through model."""
    found = _ends.get(through)
    if found is None:
        found = _ends[through] = tuple(_find_ends(through))
    return found


def _find_ends(through: type[models.Model]) -> Iterable[tuple[str, type[models.Model]]]:
    from django.apps import apps

    names: set[str] = set()
    for model in apps.get_models():
        for m2m in model._meta.local_many_to_many:
            if m2m.remote_field.through is through:
                names.update((m2m.m2m_field_name(), m2m.m2m_reverse_field_name()))
    for name in sorted(names):
        field: Any = through._meta.get_field(name)
        related = field.related_model
        if isinstance(related, type) and issubclass(related, models.Model) and not _ignored(related):
            yield field.attname, related


def end_keys(
    through: type[models.Model],
    loaded: Mapping[str, Any],
    old: Mapping[tuple[str, ...], tuple[Any, ...]] | None,
    prefix: str,
) -> list[str]:
    """The counters a write of a through row bumps at its two ends: each end's table and
    row, now and (for an update that moved the row) before, as ``m2m_changed`` would."""
    keys: list[str] = []
    for attname, related in through_ends(through):
        lbl = label(related)
        keys.append(f"{prefix}:v:{lbl}")
        for value in (loaded.get(attname), (old or {}).get((attname,), (None,))[0]):
            if value is not None:
                keys.append(f"{prefix}:v:{lbl}:{pk_token(value)}")
    return keys


def cleared_partners(
    through: type[models.Model], instance: models.Model, model: type[models.Model], using: str | None
) -> list[Any]:
    """The pks of the partners ``instance`` has in ``through`` (one query), read before a
    ``clear()``: Django's ``post_clear`` does not name them."""
    own = instance._meta.concrete_model
    sources = [a for a, rel in through_ends(through) if own is not None and issubclass(own, rel)]
    targets = [a for a, rel in through_ends(through) if issubclass(model, rel)]
    found: set[Any] = set()
    for source in sources:
        # A relation to the same model has both ends on one model: the partner is whichever
        # end is not this row (a symmetrical one is cleared in both directions).
        for target in targets:
            if target != source:
                rows = through._base_manager.using(using).filter(**{source: instance.pk})
                found.update(rows.values_list(target, flat=True))
    return sorted(found, key=repr)


def forget() -> None:
    """Drop what was derived per model."""
    _reach.clear()
    _ends.clear()


def _reset(*, setting: str, **kwargs: object) -> None:
    if setting == "CACHEDCALL":
        forget()


setting_changed.connect(_reset, dispatch_uid="cachedcall.relations.reset")
