"""The reader functions: each one SQL statement, cached with the ``depends_on`` the README
recommends for what it reads.

Each function runs exactly one ``SELECT`` (PostgreSQL gives a statement one snapshot), so
its result is the answer of one committed database state: that is what lets the checker
compare a result with the states that held during the call (see :mod:`benchmarks.race.check`).
Results are lists of ids (and names or roles), ordered in SQL.

:data:`FUNCTIONS` lists, per function, its arguments and its ``depends_on``. The
declarations follow the README: the row and the scope for "the children of a parent"
(``[club, where(ClubClass, club=club)]`` in its first example), a scope alone as in its
``cached_view`` example, a table for a count. For the partners of one object through a
many-to-many relation the README gives no example; its table of writes says that ``add``,
``remove``, ``clear`` and a custom through row bump "both ends' rows" and "the through
model's scopes", so both are used: the row with the through scope, and (``_by_row``) the
row alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.race.app.models import Adopted
from benchmarks.race.app.models import Child
from benchmarks.race.app.models import Defaulted
from benchmarks.race.app.models import Member
from benchmarks.race.app.models import Membership
from benchmarks.race.app.models import Orphan
from benchmarks.race.app.models import Parent
from benchmarks.race.app.models import Tag
from cachedcall import cached
from cachedcall import where

#: The argument pools: ids of rows that exist, or existed and may come back.
PARENTS = (1, 2, 3, 4, 5)
TAGS = (1, 2, 3, 4)
MEMBERS = (1, 2, 3, 4)
#: The size of the padding of ``children_blob`` (the eviction scenario's large values).
PAD = 30_000

TagLink = Parent.tags.through


def children(p: int) -> Any:
    return list(Child.objects.filter(parent_id=p).order_by("id").values_list("id", "name"))


def children_blob(p: int) -> Any:
    return {"children": children(p), "pad": "x" * PAD}


def child_count() -> Any:
    return Child.objects.count()


def orphans(p: int | None) -> Any:
    # parent_id=None is "IS NULL": the rows SET_NULL leaves behind.
    return list(Orphan.objects.filter(parent_id=p).order_by("id").values_list("id", flat=True))


def orphan_count() -> Any:
    return Orphan.objects.filter(parent__isnull=True).count()


def defaulted(p: int) -> Any:
    return list(Defaulted.objects.filter(parent_id=p).order_by("id").values_list("id", flat=True))


def adopted(p: int) -> Any:
    return list(Adopted.objects.filter(parent_id=p).order_by("id").values_list("id", flat=True))


def tag_ids(p: int) -> Any:
    return list(Tag.objects.filter(parents=p).order_by("id").values_list("id", flat=True))


def tag_parents(t: int) -> Any:
    return list(Parent.objects.filter(tags=t).order_by("id").values_list("id", flat=True))


def member_roles(p: int) -> Any:
    return list(
        Member.objects.filter(memberships__parent_id=p).order_by("id").values_list("id", "memberships__role")
    )


def member_parents(m: int) -> Any:
    return list(Parent.objects.filter(members=m).order_by("id").values_list("id", flat=True))


@dataclass(frozen=True)
class Function:
    """One reader function: the plain function, its argument tuples, its ``depends_on``."""

    name: str
    plain: Callable[..., Any]
    args: tuple[tuple[Any, ...], ...]
    depends_on: Any


def _one(pool: tuple[Any, ...]) -> tuple[tuple[Any, ...], ...]:
    return tuple((x,) for x in pool)


FUNCTIONS = {
    f.name: f
    for f in (
        Function(
            "children", children, _one(PARENTS), lambda p: [where(Parent, pk=p), where(Child, parent=p)]
        ),
        Function(
            "children_blob",
            children_blob,
            _one(PARENTS),
            lambda p: [where(Parent, pk=p), where(Child, parent=p)],
        ),
        Function("child_count", child_count, ((),), [Child]),
        Function("orphans", orphans, _one((*PARENTS, None)), lambda p: [where(Orphan, parent=p)]),
        Function("orphan_count", orphan_count, ((),), [Orphan]),
        Function("defaulted", defaulted, _one(PARENTS), lambda p: [where(Defaulted, parent=p)]),
        Function("adopted", adopted, _one(PARENTS), lambda p: [where(Adopted, parent=p)]),
        Function(
            "tag_ids", tag_ids, _one(PARENTS), lambda p: [where(Parent, pk=p), where(TagLink, parent=p)]
        ),
        Function("tag_parents", tag_parents, _one(TAGS), lambda t: [where(Tag, pk=t), where(TagLink, tag=t)]),
        Function(
            "member_roles",
            member_roles,
            _one(PARENTS),
            lambda p: [where(Parent, pk=p), where(Membership, parent=p)],
        ),
        Function(
            "member_parents",
            member_parents,
            _one(MEMBERS),
            lambda m: [where(Member, pk=m), where(Membership, member=m)],
        ),
        Function("tag_ids_by_row", tag_ids, _one(PARENTS), lambda p: [where(Parent, pk=p)]),
        Function("tag_parents_by_row", tag_parents, _one(TAGS), lambda t: [where(Tag, pk=t)]),
        Function("member_parents_by_row", member_parents, _one(MEMBERS), lambda m: [where(Member, pk=m)]),
    )
}


def build(names: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """Decorate each ``(function name, cache alias)``: one ``@cached`` function per pair."""
    out: dict[tuple[str, str], Any] = {}
    for name, alias in names:
        function = FUNCTIONS[name]
        out[name, alias] = cached(
            timeout=3600, cache=alias, prefix=f"race.{name}.{alias}", depends_on=function.depends_on
        )(function.plain)
    return out
