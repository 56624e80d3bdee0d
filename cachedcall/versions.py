"""Model, row and scoped versions: what a call depends on, and which counters name it.

Four kinds of counter live in the counters alias (``CACHEDCALL["VERSIONS_CACHE"]``, else
the values alias), all prefixed by ``CACHEDCALL["KEY_PREFIX"]``:

``v:<label>``                 table version: bumped by any change to any row of the model.
``v:<label>:*``               epoch: bumped when rows changed that nobody can name (an
                              explicit ``bump(Model)``, ``QuerySet.update()``); every row
                              and scope dependency of the model reads it too.
``v:<label>:#<digest>``       row version: a saved instance, or ``where(Model, pk=...)``.
``v:<label>:<field>=#<digest>`` scoped version.

Primary keys and field values appear only as digests (:func:`cachedcall.keys.pk_token`).

What a writer bumps is derived from the models alone (every foreign key is a scope, so is
every generic foreign key's content type and object id pair, plus ``CACHEDCALL["SCOPES"]``),
so a process that never imported a reader bumps what it needs.

A lazy object (``request.user``) counts as the object it wraps: we read its ``__class__``
and attributes, which it proxies, never its ``type()`` or ``__dict__``.

Process state: the scopes derived per model (``_shapes``), dropped when ``CACHEDCALL``
changes and by :func:`forget`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.core.signals import setting_changed
from django.db import models

from cachedcall import conf
from cachedcall.exceptions import InvalidDependency
from cachedcall.keys import pk_token

__all__ = ["where"]

_shapes: dict[type[models.Model], tuple[tuple[str, ...], ...]] = {}
#: The names of a where() that is a row version (no field can be called "pk").
_ROW: tuple[str, ...] = ("pk",)


def label(model: type[models.Model]) -> str:
    return model._meta.concrete_model._meta.label_lower  # type: ignore[union-attr]


def _describe(item: object) -> tuple[str, str]:
    """Name ``item`` for an error message, and hint at the fix: without running it (a
    QuerySet), and alike for a lazy object and the object it wraps (they proxy
    ``__class__``, ``str()`` and attributes)."""
    cls = item.__class__
    if isinstance(item, models.QuerySet):
        name = item.model.__name__
        return f"a QuerySet of {item.model._meta.label}", (
            f" A QuerySet is no dependency: use its model ({name}) or where({name}, field=value) "
            "with the equalities it filters on."
        )
    if isinstance(item, models.Model):
        return f"a {item._meta.label} instance", f" For its row: where({cls.__name__}, pk=...)."
    if getattr(item, "is_anonymous", False) is True:
        hint = " An AnonymousUser has no row: depend on request.user only when request.user.is_authenticated."
    else:
        hint = ""
    if cls.__module__ == "builtins":
        text = str(item)
        return f"{text if len(text) <= 40 else text[:39] + '…'} ({cls.__name__})", hint
    return f"a {cls.__module__}.{cls.__qualname__}", hint


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
        what, hint = _describe(item)
        raise InvalidDependency(
            f"{where_}: {what} is not a model class, an 'app_label.ModelName' label, a saved "
            f"model instance or cachedcall.where(...).{hint}"
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
    # A generic foreign key is a foreign key spread over two columns: one scope of both. A
    # multi-table child has its parent's too (Django copies private fields to children).
    for field in model._meta.private_fields:
        if _is_generic_fk(field):
            result.append(tuple(sorted(f.attname for f in _generic_columns(model, field))))
    for shape in conf.get().scopes.get(label(model), ()):
        where_ = "settings.CACHEDCALL['SCOPES']"
        names_t = tuple(sorted(f.attname for name in shape for f in _columns(model, name, where_)))
        if names_t not in result:
            result.append(names_t)
    return tuple(result)


def _is_generic_fk(field: object) -> bool:
    # None exists before its module is imported, which raises without the contenttypes app.
    module = sys.modules.get("django.contrib.contenttypes.fields")
    return module is not None and isinstance(field, module.GenericForeignKey)


def _generic_columns(model: type[models.Model], gfk: Any) -> tuple[Any, Any]:
    """The content type foreign key and the object id field of a generic foreign key."""
    return model._meta.get_field(gfk.ct_field), model._meta.get_field(gfk.fk_field)


def _columns(model: type[models.Model], name: str, where_: str) -> tuple[Any, ...]:
    """The concrete fields ``name`` stands for: its own, or a generic foreign key's two."""
    field = _concrete_field(model, name, where_)
    return _generic_columns(model, field) if _is_generic_fk(field) else (field,)


def _concrete_field(model: type[models.Model], name: str, where_: str) -> Any:
    """The concrete field (or generic foreign key) called ``name``; ``pk`` is the pk."""
    if name == "pk":
        return model._meta.pk
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
    if (not getattr(field, "concrete", False) or field.many_to_many) and not _is_generic_fk(field):
        raise InvalidDependency(
            f"{where_}: {model._meta.label}.{name} is not a concrete column; scopes take the "
            "model's own fields (a foreign key by instance or pk)."
        )
    return field


def normalize(field: Any, value: Any) -> Any:
    """Return the value a scope is keyed by: a foreign key's raw pk, run through to_python."""
    target = field.target_field if field.is_relation else field
    return target.to_python(value)


def _raw(model: type[models.Model], field: Any, name: str, value: Any, where_: str) -> Any:
    """Return the normalized value of ``name=value``: an instance stands for its pk (of the
    row itself, or of the row a foreign key points to)."""
    if isinstance(value, models.Model):
        if field.primary_key and isinstance(value, model):
            attname = "pk"
        elif field.is_relation and isinstance(value, field.related_model):
            attname = field.target_field.attname
        else:
            wanted = field.related_model if field.is_relation else model if field.primary_key else None
            what = wanted.__name__ if wanted else "plain value"
            raise InvalidDependency(f"{where_}: {name}= takes a {what}, not a {value.__class__.__name__}.")
        if value.pk is None:
            raise InvalidDependency(f"{where_}: {name}= is an unsaved instance.")
        value = getattr(value, attname)
    try:
        return normalize(field, value)
    except ValidationError as exc:
        raise InvalidDependency(f"{where_}: {name}={value!r}: {exc.messages[0]}") from None


def _generic_pairs(model: type[models.Model], gfk: Any, value: Any, where_: str) -> list[tuple[str, Any]]:
    """``content_object=obj``: the (attname, value) pairs of the content type and object id
    a generic foreign key set to ``obj`` stores."""
    if not isinstance(value, models.Model):
        raise InvalidDependency(f"{where_}: {gfk.name}= takes a model instance, not {_describe(value)[0]}.")
    if value.pk is None:
        raise InvalidDependency(f"{where_}: {gfk.name}= is an unsaved instance.")
    from django.contrib.contenttypes.models import ContentType

    # As GenericForeignKey.__set__ does. The content types framework caches the lookup, so
    # this queries once per model and process, not per call.
    manager = ContentType.objects.db_manager(value._state.db)
    ct = manager.get_for_model(value, for_concrete_model=gfk.for_concrete_model)
    ct_field, id_field = _generic_columns(model, gfk)
    return [
        (ct_field.attname, normalize(ct_field, ct.pk)),
        (id_field.attname, _raw(model, id_field, gfk.fk_field, value.pk, where_)),
    ]


def scope_key(prefix: str, lbl: str, names: tuple[str, ...], values: tuple[Any, ...]) -> str:
    """A scope counter's key: its fields by name, its values only as a digest (a foreign
    key's value can be a secret primary key)."""
    return f"{prefix}:v:{lbl}:{'&'.join(names)}={pk_token(values)}"


class where:  # noqa: N801 - reads as a function in depends_on lists
    """A scoped version: the rows of ``model`` whose fields equal the given values.

    ``where(ClubClass, club=club)`` goes stale when a ``ClubClass`` of that club is created,
    deleted, or changed into or out of the club. Foreign keys and generic foreign keys (the
    content type and object id pair) are scopes of their own; other fields must be declared
    in ``CACHEDCALL["SCOPES"]`` so that every writing process knows to bump them. A lone
    primary key, ``where(Club, pk=1)``, is that row's version, as the instance would be.

    :param model: a model class or ``"app_label.ModelName"``.
    :param fields: equalities on the model's own concrete fields; a foreign key or the
        primary key takes an instance or a pk, a generic foreign key a saved instance.
    """

    __slots__ = ("_key", "model", "names", "values")

    def __init__(self, model: type[models.Model] | str, /, **fields: Any) -> None:
        if not isinstance(model, str) and not (isinstance(model, type) and issubclass(model, models.Model)):
            what, hint = _describe(model)
            raise InvalidDependency(
                f"where() takes a model class or an 'app_label.ModelName' label first, not {what}.{hint}"
            )
        where_ = f"where({model if isinstance(model, str) else model.__name__}, ...)"
        self.model = resolve_model(model, where_)
        self._key: tuple[str, list[str]] | None = None
        if not fields:
            raise InvalidDependency(f"{where_}: give at least one field=value equality.")
        pk = self.model._meta.pk
        assert pk is not None
        if len(fields) == 1:
            name, value = next(iter(fields.items()))
            if name in ("pk", pk.name, pk.attname):
                # A row: every save and delete of it bumps its row version, no scope needed.
                self.names, self.values = _ROW, (_raw(self.model, pk, name, value, where_),)
                return
        pairs = []
        for name, value in fields.items():
            field = _concrete_field(self.model, name, where_)
            if _is_generic_fk(field):
                pairs.extend(_generic_pairs(self.model, field, value, where_))
            else:
                pairs.append((field.attname, _raw(self.model, field, name, value, where_)))
        pairs.sort()
        self.names = tuple(n for n, _ in pairs)
        self.values = tuple(v for _, v in pairs)
        if len(set(self.names)) < len(self.names):
            raise InvalidDependency(f"{where_}: a column is given twice: {', '.join(self.names)}.")
        if self.names not in shapes(self.model):
            declared = [", ".join(s) for s in shapes(self.model)] or ["none"]
            raise InvalidDependency(
                f"{where_}: no writer bumps the scope ({', '.join(self.names)}) of "
                f"{self.model._meta.label}. A lone pk, each foreign key and each generic foreign "
                "key are scopes by themselves; declare others in settings: CACHEDCALL['SCOPES'] = "
                f"{{{self.model._meta.label!r}: [{self.names!r}]}}. Declared now: {'; '.join(declared)}."
            )

    def _own_key(self, prefix: str, lbl: str) -> str:
        if self.names == _ROW:
            return f"{prefix}:v:{lbl}:{pk_token(self.values[0])}"
        return scope_key(prefix, lbl, self.names, self.values)

    def keys(self, prefix: str) -> list[str]:
        """The counters a call depending on this reads: the row or scope, and the epoch."""
        cached = self._key
        if cached is None or cached[0] != prefix:
            lbl = label(self.model)
            cached = self._key = (prefix, [self._own_key(prefix, lbl), f"{prefix}:v:{lbl}:*"])
        return cached[1]

    def bump_keys(self, prefix: str) -> list[str]:
        """The counters ``bump(this)`` advances: the row or scope and the table, of the model
        and of each concrete parent (a child's row is also a row of each parent, same pk)."""
        out = [self.keys(prefix)[0]]
        for cls in (self.model, *self.model._meta.get_parent_list()):
            lbl = label(cls)
            out.append(f"{prefix}:v:{lbl}")
            if cls is not self.model and (self.names == _ROW or self.names in shapes(cls)):
                out.append(self._own_key(prefix, lbl))
        return out

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={v!r}" for n, v in zip(self.names, self.values, strict=True))
        return f"where({self.model._meta.label}, {fields})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, where):
            return NotImplemented
        return (self.model, self.names, self.values) == (other.model, other.names, other.values)

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
                    f"{where_}: {item.__class__.__name__} instance is not saved (its pk is None)."
                )
            lbl = label(resolve_model(item.__class__, where_))
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
    model = instance._meta.concrete_model
    assert model is not None
    values = loaded(instance)
    keys: list[str] = []
    for cls in (model, *model._meta.get_parent_list()):
        lbl = label(cls)
        keys.append(f"{prefix}:v:{lbl}")
        if instance.pk is not None:
            keys.append(f"{prefix}:v:{lbl}:{pk_token(instance.pk)}")
        for names in shapes(cls):
            new = current_values(values, cls, names)
            if new is not None:
                keys.append(scope_key(prefix, lbl, names, new))
            before = old.get(names) if old else None
            if before is not None and before != new:
                keys.append(scope_key(prefix, lbl, names, before))
    return keys


def loaded(instance: models.Model) -> Mapping[str, Any]:
    """The instance's loaded values by attname. A lazy object has a ``__dict__`` of its own:
    read through the attributes it proxies, leaving out deferred ones (reading one queries)."""
    if type(instance) is instance.__class__:
        return instance.__dict__
    deferred = instance.get_deferred_fields()
    names = [f.attname for f in instance._meta.concrete_fields if f.attname not in deferred]
    return {name: getattr(instance, name) for name in names}


def current_values(
    loaded: Mapping[str, Any], model: type[models.Model], names: tuple[str, ...]
) -> tuple[Any, ...] | None:
    """The normalized values of ``names`` in ``loaded`` (see :func:`loaded`), or ``None``."""
    values = []
    for name in names:
        field = model._meta.get_field(name)
        try:
            raw = loaded[name]
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
