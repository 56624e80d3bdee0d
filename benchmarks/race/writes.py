"""The writer's operations: every kind of write Django has, on the models of ``race``.

Each operation takes the writer's seeded ``random.Random``, looks at the rows it needs
(the writer is the only process that writes, so what it reads holds until it writes) and
makes one change, returning what it did. :func:`run_block` runs one operation on its own
(autocommit), or two or three inside one ``transaction.atomic()``, sometimes with one of
them inside a savepoint that is rolled back.

Write kinds: ``create``; ``save`` (renames, and moves between foreign-key scopes, with and
without ``update_fields``); ``delete`` of one row, and of a parent, which cascades to its
children and both kinds of many-to-many rows and sets ``SET_NULL``/``SET_DEFAULT``/``SET()``
children; ``QuerySet.update()`` and ``bulk_create()`` through ``CachedCallManager``; the
many-to-many managers' ``add``/``remove``/``clear``/``set`` (also ``clear=True``) from both
sides; the through models written directly (``objects.create()``, ``row.delete()``; Django
sends no signal for an auto-created through model's rows, so those are followed by the
``bump()`` the README asks for, except in the ``_unbumped`` operations).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from django.db import connection
from django.db import models
from django.db import transaction

from benchmarks.race.app.models import Adopted
from benchmarks.race.app.models import Child
from benchmarks.race.app.models import Defaulted
from benchmarks.race.app.models import Member
from benchmarks.race.app.models import Membership
from benchmarks.race.app.models import Orphan
from benchmarks.race.app.models import Parent
from benchmarks.race.app.models import Tag
from benchmarks.race.readers import MEMBERS
from benchmarks.race.readers import PARENTS
from benchmarks.race.readers import TAGS
from benchmarks.race.readers import TagLink
from cachedcall import bump
from cachedcall import where

Op = Callable[[random.Random], str]
OPS: dict[str, Op] = {}
#: Parents 1 and 2 receive SET_DEFAULT and SET() children: never deleted.
DELETABLE_PARENTS = (3, 4, 5)
DELETABLE_TAGS = (3, 4)
DELETABLE_MEMBERS = (3, 4)
#: At most this many rows of each child model: creations turn into deletions beyond it.
CAP = 30
ROLES = ("chair", "member", "guest")
MODELS: tuple[type[models.Model], ...] = (
    Parent,
    Tag,
    Member,
    TagLink,
    Membership,
    Child,
    Orphan,
    Defaulted,
    Adopted,
)


def op(function: Op) -> Op:
    OPS[function.__name__] = function
    return function


def _ids(model: type[models.Model], **filters: object) -> list[int]:
    return list(model._default_manager.filter(**filters).order_by("pk").values_list("pk", flat=True))


def _name(rng: random.Random) -> str:
    return f"n{rng.randrange(10**6)}"


def _parents() -> list[int]:
    return _ids(Parent)


class _Rollback(Exception):
    pass


def run_block(rng: random.Random, names: list[str]) -> str:
    """One write block: an operation alone, or two or three in one transaction."""
    if rng.random() < 0.55:
        return OPS[rng.choice(names)](rng)
    parts = []
    with transaction.atomic():
        for _ in range(rng.randint(2, 3)):
            name = rng.choice(names)
            if rng.random() < 0.15:
                try:
                    with transaction.atomic():
                        parts.append(f"rolled back ({OPS[name](rng)})")
                        raise _Rollback
                except _Rollback:
                    pass
            else:
                parts.append(OPS[name](rng))
    return "atomic[" + "; ".join(parts) + "]"


def seed(rng: random.Random) -> None:
    """Empty every table and write the starting rows (ids restart, so runs compare)."""
    tables = ", ".join(connection.ops.quote_name(m._meta.db_table) for m in MODELS)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        Parent.objects.bulk_create(Parent(id=p, name=f"parent {p}") for p in PARENTS)
        Tag.objects.bulk_create(Tag(id=t, name=f"tag {t}") for t in TAGS)
        Member.objects.bulk_create(Member(id=m, name=f"member {m}") for m in MEMBERS)
        for p in PARENTS:
            Child.objects.bulk_create(Child(parent_id=p, name=_name(rng)) for _ in range(rng.randint(1, 3)))
            Orphan.objects.bulk_create(Orphan(parent_id=p) for _ in range(rng.randint(1, 2)))
            Defaulted.objects.bulk_create(Defaulted(parent_id=p) for _ in range(rng.randint(1, 2)))
            Adopted.objects.bulk_create(Adopted(parent_id=p) for _ in range(rng.randint(1, 2)))
            TagLink.objects.bulk_create(TagLink(parent_id=p, tag_id=t) for t in rng.sample(TAGS, 2))
            Membership.objects.bulk_create(
                Membership(parent_id=p, member_id=m, role=rng.choice(ROLES)) for m in rng.sample(MEMBERS, 2)
            )
        Orphan.objects.bulk_create([Orphan(parent_id=None), Orphan(parent_id=None)])


# --- children by CASCADE: create, save (rename, move), delete, update(), bulk_create() ---------


@op
def create_child(rng: random.Random) -> str:
    if Child.objects.count() >= CAP:
        return delete_child(rng)
    p = rng.choice(_parents())
    child = Child.objects.create(parent_id=p, name=_name(rng))
    return f"create child {child.pk} in {p}"


@op
def move_child(rng: random.Random) -> str:
    ids = _ids(Child)
    others = _parents()
    if not ids:
        return create_child(rng)
    child = Child.objects.get(pk=rng.choice(ids))
    old = child.parent_id
    child.parent_id = rng.choice([p for p in others if p != old] or others)
    how = rng.choice(("save()", "save(update_fields)"))
    child.save(update_fields=["parent"] if how != "save()" else None)
    return f"move child {child.pk} {old}->{child.parent_id} by {how}"


@op
def rename_child(rng: random.Random) -> str:
    ids = _ids(Child)
    if not ids:
        return create_child(rng)
    child = Child.objects.get(pk=rng.choice(ids))
    child.name = _name(rng)
    child.save(update_fields=["name"])
    return f"rename child {child.pk}"


@op
def delete_child(rng: random.Random) -> str:
    ids = _ids(Child)
    if not ids:
        return create_child(rng)
    pk = rng.choice(ids)
    Child.objects.get(pk=pk).delete()
    return f"delete child {pk}"


@op
def update_children(rng: random.Random) -> str:
    p = rng.choice(_parents())
    n = Child.objects.filter(parent_id=p).update(name=_name(rng))
    return f"update() renames {n} children of {p}"


@op
def update_move_children(rng: random.Random) -> str:
    ids = _ids(Child)
    if not ids:
        return create_child(rng)
    moved = rng.sample(ids, min(len(ids), rng.randint(1, 2)))
    p = rng.choice(_parents())
    Child.objects.filter(pk__in=moved).update(parent_id=p)
    return f"update() moves children {moved} to {p}"


@op
def bulk_create_children(rng: random.Random) -> str:
    if Child.objects.count() >= CAP:
        return delete_child(rng)
    p = rng.choice(_parents())
    made = Child.objects.bulk_create(Child(parent_id=p, name=_name(rng)) for _ in range(rng.randint(1, 3)))
    return f"bulk_create() {len(made)} children in {p}"


# --- parents: deleting one cascades, sets null, sets the default, calls SET() -----------------


@op
def delete_parent(rng: random.Random) -> str:
    present = [p for p in _parents() if p in DELETABLE_PARENTS]
    if not present:
        return recreate_parent(rng)
    p = rng.choice(present)
    Parent.objects.get(pk=p).delete()
    return f"delete parent {p}"


@op
def recreate_parent(rng: random.Random) -> str:
    missing = sorted(set(DELETABLE_PARENTS) - set(_parents()))
    if not missing:
        return delete_parent(rng)
    p = rng.choice(missing)
    Parent.objects.create(id=p, name=_name(rng))
    return f"create parent {p}"


@op
def recreate_parent_full(rng: random.Random) -> str:
    """A parent and rows of every relation to it, in one transaction."""
    missing = sorted(set(DELETABLE_PARENTS) - set(_parents()))
    if not missing:
        return delete_parent(rng)
    p = rng.choice(missing)
    with transaction.atomic():
        parent = Parent.objects.create(id=p, name=_name(rng))
        Child.objects.create(parent=parent, name=_name(rng))
        Orphan.objects.create(parent=parent)
        Defaulted.objects.create(parent=parent)
        Adopted.objects.create(parent=parent)
        parent.tags.add(*rng.sample(_ids(Tag), min(2, len(_ids(Tag)))))
        for m in rng.sample(_ids(Member), min(2, len(_ids(Member)))):
            parent.members.add(m, through_defaults={"role": rng.choice(ROLES)})
    return f"create parent {p} with a row of each relation"


def _create(model: type[models.Model], rng: random.Random, null: bool) -> str:
    if model._default_manager.count() >= CAP:
        return _delete(model, rng, null)
    choices: list[int | None] = [*_parents(), *([None] if null else [])]
    row = model._default_manager.create(parent_id=rng.choice(choices))
    return f"create {model.__name__} {row.pk} in {row.parent_id}"  # type: ignore[attr-defined]


def _move(model: type[models.Model], rng: random.Random, null: bool) -> str:
    ids = _ids(model)
    if not ids:
        return _create(model, rng, null)
    row = model._default_manager.get(pk=rng.choice(ids))
    old = row.parent_id  # type: ignore[attr-defined]
    choices = [p for p in [*_parents(), *([None] if null else [])] if p != old]
    row.parent_id = rng.choice(choices)  # type: ignore[attr-defined]
    row.save()
    return f"move {model.__name__} {row.pk} {old}->{row.parent_id}"  # type: ignore[attr-defined]


def _delete(model: type[models.Model], rng: random.Random, null: bool) -> str:
    ids = _ids(model)
    if not ids:
        return _create(model, rng, null)
    pk = rng.choice(ids)
    model._default_manager.get(pk=pk).delete()
    return f"delete {model.__name__} {pk}"


for _model, _null in ((Orphan, True), (Defaulted, False), (Adopted, False)):
    _label = _model.__name__.lower()

    def _bind(action: Callable[..., str], model: type[models.Model], null: bool) -> Op:
        return lambda rng: action(model, rng, null)

    OPS[f"create_{_label}"] = _bind(_create, _model, _null)
    OPS[f"move_{_label}"] = _bind(_move, _model, _null)
    OPS[f"delete_{_label}"] = _bind(_delete, _model, _null)


# --- the auto-created through model: the m2m manager from both sides, and the rows directly --


def _links() -> list[tuple[int, int, int]]:
    return list(TagLink.objects.order_by("pk").values_list("pk", "parent_id", "tag_id"))


@op
def tags_add(rng: random.Random) -> str:
    p, t = rng.choice(_parents()), rng.choice(_ids(Tag))
    if rng.random() < 0.5:
        Parent.objects.get(pk=p).tags.add(t)
        return f"parent {p}.tags.add({t})"
    Tag.objects.get(pk=t).parents.add(p)
    return f"tag {t}.parents.add({p})"


@op
def tags_remove(rng: random.Random) -> str:
    links = _links()
    if not links:
        return tags_add(rng)
    _, p, t = rng.choice(links)
    if rng.random() < 0.5:
        Parent.objects.get(pk=p).tags.remove(t)
        return f"parent {p}.tags.remove({t})"
    Tag.objects.get(pk=t).parents.remove(p)
    return f"tag {t}.parents.remove({p})"


@op
def tags_clear(rng: random.Random) -> str:
    if rng.random() < 0.5:
        p = rng.choice(_parents())
        Parent.objects.get(pk=p).tags.clear()
        return f"parent {p}.tags.clear()"
    t = rng.choice(_ids(Tag))
    Tag.objects.get(pk=t).parents.clear()
    return f"tag {t}.parents.clear()"


@op
def tags_set_clear(rng: random.Random) -> str:
    if rng.random() < 0.5:
        p, tags = rng.choice(_parents()), _ids(Tag)
        new = rng.sample(tags, rng.randint(0, len(tags)))
        Parent.objects.get(pk=p).tags.set(new, clear=True)
        return f"parent {p}.tags.set({new}, clear=True)"
    t, parents = rng.choice(_ids(Tag)), _parents()
    new = rng.sample(parents, rng.randint(0, len(parents)))
    Tag.objects.get(pk=t).parents.set(new, clear=True)
    return f"tag {t}.parents.set({new}, clear=True)"


@op
def tags_set(rng: random.Random) -> str:
    p, tags = rng.choice(_parents()), _ids(Tag)
    new = rng.sample(tags, rng.randint(0, len(tags)))
    Parent.objects.get(pk=p).tags.set(new)
    return f"parent {p}.tags.set({new})"


def _bump_link(p: int, t: int) -> None:
    # Django sends no signal for an auto-created through model's own rows; the README says
    # to bump by hand what the relation's add()/remove() would have: both ends' rows and the
    # through model's scopes.
    bump(where(Parent, pk=p), where(Tag, pk=t), where(TagLink, parent=p), where(TagLink, tag=t))


def _link_create(rng: random.Random, bumped: bool) -> str:
    linked = {(p, t) for _, p, t in _links()}
    free = [(p, t) for p in _parents() for t in _ids(Tag) if (p, t) not in linked]
    if not free:
        return _link_delete(rng, bumped)
    p, t = rng.choice(free)
    TagLink.objects.create(parent_id=p, tag_id=t)
    if bumped:
        _bump_link(p, t)
    return f"Parent.tags.through.objects.create(parent={p}, tag={t}){' + bump()' if bumped else ''}"


def _link_delete(rng: random.Random, bumped: bool) -> str:
    links = _links()
    if not links:
        return _link_create(rng, bumped)
    pk, p, t = rng.choice(links)
    TagLink.objects.get(pk=pk).delete()
    if bumped:
        _bump_link(p, t)
    return f"through row ({p}, {t}).delete(){' + bump()' if bumped else ''}"


@op
def link_create(rng: random.Random) -> str:
    return _link_create(rng, True)


@op
def link_delete(rng: random.Random) -> str:
    return _link_delete(rng, True)


@op
def link_create_unbumped(rng: random.Random) -> str:
    """Outside the promise (no signal, no bump): the through-auto-unbumped scenario."""
    return _link_create(rng, False)


@op
def link_delete_unbumped(rng: random.Random) -> str:
    return _link_delete(rng, False)


# --- the custom through model: the m2m manager from both sides, and the rows directly --------


def _memberships() -> list[tuple[int, int, int]]:
    return list(Membership.objects.order_by("pk").values_list("pk", "parent_id", "member_id"))


@op
def members_add(rng: random.Random) -> str:
    p, m, role = rng.choice(_parents()), rng.choice(_ids(Member)), rng.choice(ROLES)
    if rng.random() < 0.5:
        Parent.objects.get(pk=p).members.add(m, through_defaults={"role": role})
        return f"parent {p}.members.add({m})"
    Member.objects.get(pk=m).parents.add(p, through_defaults={"role": role})
    return f"member {m}.parents.add({p})"


@op
def members_remove(rng: random.Random) -> str:
    rows = _memberships()
    if not rows:
        return members_add(rng)
    _, p, m = rng.choice(rows)
    if rng.random() < 0.5:
        Parent.objects.get(pk=p).members.remove(m)
        return f"parent {p}.members.remove({m})"
    Member.objects.get(pk=m).parents.remove(p)
    return f"member {m}.parents.remove({p})"


@op
def members_clear(rng: random.Random) -> str:
    if rng.random() < 0.5:
        p = rng.choice(_parents())
        Parent.objects.get(pk=p).members.clear()
        return f"parent {p}.members.clear()"
    m = rng.choice(_ids(Member))
    Member.objects.get(pk=m).parents.clear()
    return f"member {m}.parents.clear()"


@op
def members_set_clear(rng: random.Random) -> str:
    role = {"role": rng.choice(ROLES)}
    if rng.random() < 0.5:
        p, members = rng.choice(_parents()), _ids(Member)
        new = rng.sample(members, rng.randint(0, len(members)))
        Parent.objects.get(pk=p).members.set(new, clear=True, through_defaults=role)
        return f"parent {p}.members.set({new}, clear=True)"
    m, parents = rng.choice(_ids(Member)), _parents()
    new = rng.sample(parents, rng.randint(0, len(parents)))
    Member.objects.get(pk=m).parents.set(new, clear=True, through_defaults=role)
    return f"member {m}.parents.set({new}, clear=True)"


@op
def membership_create(rng: random.Random) -> str:
    taken = {(p, m) for _, p, m in _memberships()}
    free = [(p, m) for p in _parents() for m in _ids(Member) if (p, m) not in taken]
    if not free:
        return membership_delete(rng)
    p, m = rng.choice(free)
    Membership.objects.create(parent_id=p, member_id=m, role=rng.choice(ROLES))
    return f"Membership.objects.create(parent={p}, member={m})"


@op
def membership_delete(rng: random.Random) -> str:
    rows = _memberships()
    if not rows:
        return membership_create(rng)
    pk, p, m = rng.choice(rows)
    Membership.objects.get(pk=pk).delete()
    return f"membership ({p}, {m}).delete()"


@op
def membership_role(rng: random.Random) -> str:
    rows = _memberships()
    if not rows:
        return membership_create(rng)
    row = Membership.objects.get(pk=rng.choice(rows)[0])
    row.role = rng.choice([r for r in ROLES if r != row.role])
    row.save()
    return f"membership ({row.parent_id}, {row.member_id}).role = {row.role}"


# --- the other ends of the many-to-many relations: deleting one cascades its through rows ----


def _toggle(model: type[models.Model], pool: tuple[int, ...], rng: random.Random) -> str:
    present = set(_ids(model))
    k = rng.choice(pool)
    if k in present:
        model._default_manager.get(pk=k).delete()
        return f"delete {model.__name__} {k}"
    model._default_manager.create(id=k, name=_name(rng))
    return f"create {model.__name__} {k}"


@op
def toggle_tag(rng: random.Random) -> str:
    return _toggle(Tag, DELETABLE_TAGS, rng)


@op
def toggle_member(rng: random.Random) -> str:
    return _toggle(Member, DELETABLE_MEMBERS, rng)
