"""Model, row and scoped versions: what a call depends on, and which counters name it.

Four kinds of counter live in the counters alias (``CACHEDCALL["VERSIONS_CACHE"]``, else
the values alias), all prefixed by ``CACHEDCALL["KEY_PREFIX"]``:

``v:<label>``                 table version: bumped by any change to any row of the model.
``v:<label>:*``               epoch: bumped when rows changed that nobody can name (an
                              explicit ``bump(Model)``, ``QuerySet.update()``); every row
                              and scope dependency of the model reads it too.
``v:<label>:<pk>``            row version.
``v:<label>:<field>=<value>`` scoped version (a digest when the values are not short ints).

What a writer bumps is derived from the models alone (every foreign key is a scope, plus
``CACHEDCALL["SCOPES"]``), so a process that never imported a reader bumps what it needs.

Process state: the scopes derived per model (``_shapes``), dropped when ``CACHEDCALL``
changes and by :func:`forget`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.core.signals import setting_changed
from django.db import models

from cachedcall import conf
from cachedcall.exceptions import InvalidDependency
from cachedcall.keys import digest
from cachedcall.keys import encode
from cachedcall.keys import pk_token

__all__ = ["where"]

_shapes: dict[type[models.Model], tuple[tuple[str, ...], ...]] = {}


def label(model: type[models.Model]) -> str:
    return model._meta.concrete_model._meta.label_lower  # type: ignore[union-attr]


def resolve_model(item: object, where_: str) -> type[models.Model]:
    """Return the concrete model named by a class or an ``"app_label.ModelName"`` label."""
    if isinstance(item, str):
        from django.apps import apps

        try:
            model = apps.get_model(item)
        except (LookupError, ValueError) as exc:
            raise InvalidDependency(f"{where_}: {item!r} names no installed model ({exc}).") from None
    elif isinstance(item, type) and issubclass(item, models.Model):
        model = item
    else:
        raise InvalidDependency(
            f"{where_}: {item!r} is not a model class, an 'app_label.ModelName' label, a saved "
            "model instance or cachedcall.where(...)."
        )
    concrete: type[models.Model] | None = model._meta.concrete_model
    assert concrete is not None
    if label(concrete) in conf.get().ignore_models:
        raise InvalidDependency(
            f"{where_}: {concrete._meta.label} is in CACHEDCALL['IGNORE_MODELS'], so writes to "
            "it bump no version; remove it from that list to depend on it."
        )
    return concrete


def shapes(model: type[models.Model]) -> tuple[tuple[str, ...], ...]:
    """Return the scopes (tuples of sorted attnames) that writes of ``model`` bump."""
    found = _shapes.get(model)
    if found is None:
        found = _shapes[model] = _compute_shapes(model)
    return found


def _compute_shapes(model: type[models.Model]) -> tuple[tuple[str, ...], ...]:
    result: list[tuple[str, ...]] = []
    for field in model._meta.concrete_fields:
        if ((field.is_relation and field.many_to_one) or field.one_to_one) and not field.primary_key:
            result.append((field.attname,))
    for shape in conf.get().scopes.get(label(model), ()):
        names = []
        for name in shape:
            field = _concrete_field(model, name, "settings.CACHEDCALL['SCOPES']")
            names.append(field.attname)
        names_t = tuple(sorted(names))
        if names_t not in result:
            result.append(names_t)
    return tuple(result)


def _concrete_field(model: type[models.Model], name: str, where_: str) -> Any:
    if "__" in name:
        raise InvalidDependency(
            f"{where_}: {name!r} is a lookup through a relation; scopes take the model's own "
            f"fields only, e.g. where({model.__name__}, {name.split('__')[0]}=...)."
        )
    try:
        field = model._meta.get_field(name)
    except Exception:
        names = ", ".join(f.name for f in model._meta.concrete_fields)
        raise InvalidDependency(
            f"{where_}: {model._meta.label} has no field {name!r}; its fields are {names}."
        ) from None
    if not getattr(field, "concrete", False) or field.many_to_many:
        raise InvalidDependency(
            f"{where_}: {model._meta.label}.{name} is not a concrete column; scopes take the "
            "model's own fields (a foreign key by instance or pk)."
        )
    return field


def normalize(field: Any, value: Any) -> Any:
    """Return the value a scope is keyed by: a foreign key's raw pk, run through to_python."""
    target = field.target_field if field.is_relation else field
    return target.to_python(value)


def scope_key(prefix: str, lbl: str, names: tuple[str, ...], values: tuple[Any, ...]) -> str:
    if all(type(v) is int for v in values):
        body = "&".join(f"{n}={v}" for n, v in zip(names, values, strict=True))
        if len(body) <= 120:
            return f"{prefix}:v:{lbl}:{body}"
    return f"{prefix}:v:{lbl}:{'&'.join(names)}=#{digest(encode(values))}"


class where:  # noqa: N801 - reads as a function in depends_on lists
    """A scoped version: the rows of ``model`` whose fields equal the given values.

    ``where(ClubClass, club=club)`` goes stale when a ``ClubClass`` of that club is created,
    deleted, or changed into or out of the club. Foreign keys are scopes of their own; other
    fields must be declared in ``CACHEDCALL["SCOPES"]`` so that every writing process knows
    to bump them.

    :param model: a model class or ``"app_label.ModelName"``.
    :param fields: equalities on the model's own concrete fields; a foreign key takes an
        instance or a primary key.
    """

    __slots__ = ("_key", "model", "names", "values")

    def __init__(self, model: type[models.Model] | str, /, **fields: Any) -> None:
        where_ = f"where({model if isinstance(model, str) else model.__name__}, ...)"
        self.model = resolve_model(model, where_)
        if not fields:
            raise InvalidDependency(f"{where_}: give at least one field=value equality.")
        pairs = []
        for name, value in fields.items():
            field = _concrete_field(self.model, name, where_)
            if field.is_relation and isinstance(value, models.Model):
                if not isinstance(value, field.related_model):
                    raise InvalidDependency(
                        f"{where_}: {name}= takes a {field.related_model.__name__}, not a "
                        f"{type(value).__name__}."
                    )
                if value.pk is None:
                    raise InvalidDependency(f"{where_}: {name}= is an unsaved instance.")
                value = getattr(value, field.target_field.attname)
            try:
                value = normalize(field, value)
            except ValidationError as exc:
                raise InvalidDependency(f"{where_}: {name}={value!r}: {exc.messages[0]}") from None
            pairs.append((field.attname, value))
        pairs.sort()
        self.names = tuple(n for n, _ in pairs)
        self.values = tuple(v for _, v in pairs)
        if self.names not in shapes(self.model):
            declared = [", ".join(s) for s in shapes(self.model)] or ["none"]
            raise InvalidDependency(
                f"{where_}: no writer bumps the scope ({', '.join(self.names)}) of "
                f"{self.model._meta.label}. Foreign keys are scopes by themselves; declare others "
                f"in settings: CACHEDCALL['SCOPES'] = {{{self.model._meta.label!r}: "
                f"[{self.names!r}]}}. Declared now: {'; '.join(declared)}."
            )
        self._key: tuple[str, list[str]] | None = None

    def keys(self, prefix: str) -> list[str]:
        cached = self._key
        if cached is None or cached[0] != prefix:
            lbl = label(self.model)
            cached = self._key = (
                prefix,
                [scope_key(prefix, lbl, self.names, self.values), f"{prefix}:v:{lbl}:*"],
            )
        return cached[1]

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={v!r}" for n, v in zip(self.names, self.values, strict=True))
        return f"where({self.model._meta.label}, {fields})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, where) and (self.model, self.names, self.values) == (
            other.model,
            other.names,
            other.values,
        )

    def __hash__(self) -> int:
        return hash((self.model, self.names, self.values))


def dependency_keys(items: Iterable[Any], prefix: str, where_: str) -> list[str]:
    """Return the counter keys a call with these ``depends_on`` items must check."""
    out: list[str] = []
    for item in items:
        if isinstance(item, where):
            out.extend(item.keys(prefix))
        elif isinstance(item, models.Model):
            if item.pk is None:
                raise InvalidDependency(
                    f"{where_}: {type(item).__name__} instance is not saved (its pk is None)."
                )
            lbl = label(resolve_model(type(item), where_))
            out.append(f"{prefix}:v:{lbl}:{pk_token(item.pk)}")
            out.append(f"{prefix}:v:{lbl}:*")
        else:
            out.append(f"{prefix}:v:{label(resolve_model(item, where_))}")
    # Order-preserving de-duplication: two rows of one model share the epoch key.
    return list(dict.fromkeys(out))


def write_keys(
    instance: models.Model, prefix: str, old: dict[tuple[str, ...], tuple[Any, ...]] | None = None
) -> list[str]:
    """Return the counters a save or delete of ``instance`` bumps: table, row and scopes,
    for the model and every concrete parent (multi-table inheritance)."""
    model = type(instance)._meta.concrete_model
    assert model is not None
    keys: list[str] = []
    for cls in (model, *model._meta.get_parent_list()):
        lbl = label(cls)
        keys.append(f"{prefix}:v:{lbl}")
        if instance.pk is not None:
            keys.append(f"{prefix}:v:{lbl}:{pk_token(instance.pk)}")
        for names in shapes(cls):
            new = current_values(instance, cls, names)
            if new is not None:
                keys.append(scope_key(prefix, lbl, names, new))
            before = old.get(names) if old else None
            if before is not None and before != new:
                keys.append(scope_key(prefix, lbl, names, before))
    return keys


def current_values(
    instance: models.Model, model: type[models.Model], names: tuple[str, ...]
) -> tuple[Any, ...] | None:
    values = []
    for name in names:
        field = model._meta.get_field(name)
        try:
            raw = instance.__dict__[name]
        except KeyError:
            return None  # deferred and untouched: the old value (read in pre_save) holds
        try:
            values.append(normalize(field, raw))
        except ValidationError:
            return None
    return tuple(values)


def forget() -> None:
    """Drop the scopes derived per model."""
    _shapes.clear()


def _reset(*, setting: str, **kwargs: object) -> None:
    if setting == "CACHEDCALL":
        _shapes.clear()


setting_changed.connect(_reset, dispatch_uid="cachedcall.versions.reset")
