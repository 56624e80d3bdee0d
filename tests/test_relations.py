"""Writes that reach other tables: m2m ``clear()``, through rows written directly or deleted
by a cascade, and the children Django updates without signals (``SET_NULL`` and kin)."""

from __future__ import annotations

from collections import Counter

import pytest
from django.db import connection
from django.db import transaction
from django.test.utils import CaptureQueriesContext
from django.test.utils import isolate_apps

from cachedcall import cached
from cachedcall import where
from tests.testapp.models import Club
from tests.testapp.models import ClubClass
from tests.testapp.models import Coach
from tests.testapp.models import Membership
from tests.testapp.models import Person
from tests.testapp.models import Tag

pytestmark = [pytest.mark.usefixtures("backend_name"), pytest.mark.django_db(transaction=True)]

calls: Counter[str] = Counter()


# Each reader depends on the row it is asked about, as the README suggests for "the partners
# of this row": m2m changes bump the rows at both ends.
@cached(timeout=600, depends_on=lambda cc: [cc])
def tags_of(cc):
    calls["tags_of"] += 1
    return sorted(cc.tags.values_list("name", flat=True))


@cached(timeout=600, depends_on=lambda tag: [tag])
def classes_of(tag):
    calls["classes_of"] += 1
    return sorted(tag.classes.values_list("name", flat=True))


@cached(timeout=600, depends_on=lambda club: [club])
def members_of(club):
    return sorted(club.members.values_list("name", flat=True))


@cached(timeout=600, depends_on=lambda person: [person])
def clubs_of(person):
    return sorted(person.clubs.values_list("name", flat=True))


@cached(timeout=600, depends_on=lambda person: [person])
def friends_of(person):
    return sorted(person.friends.values_list("name", flat=True))


@cached(timeout=600, depends_on=lambda club: [where(Coach, home=club)])
def coaches_at(club):
    return sorted(Coach.objects.filter(home=club).values_list("name", flat=True))


@cached(timeout=600, depends_on=[Coach])
def homeless_coaches():
    return sorted(Coach.objects.filter(home=None, guest=None, former=None).values_list("name", flat=True))


@cached(timeout=600, depends_on=lambda coach_pk: [where(Coach, pk=coach_pk)])
def clubs_of_coach(coach_pk):
    coach = Coach.objects.get(pk=coach_pk)
    return [coach.home_id, coach.guest_id, coach.former_id]


@pytest.fixture
def tagged(clubs):
    chess, _ = clubs
    openings = ClubClass.objects.get(name="openings")
    blitz, endgame = Tag.objects.create(name="blitz"), Tag.objects.create(name="endgame")
    openings.tags.add(blitz, endgame)
    return openings, blitz, endgame


@pytest.mark.parametrize("side", ["forward", "reverse"])
def test_clear_bumps_the_partners_it_removed(tagged, side):
    openings, blitz, endgame = tagged
    assert tags_of(openings) == ["blitz", "endgame"]
    assert classes_of(blitz) == ["openings"] == classes_of(endgame)
    if side == "forward":
        openings.tags.clear()  # post_clear names no tags: each tag's entry must go stale
        assert classes_of(blitz) == [] == classes_of(endgame)
        assert tags_of(openings) == []
    else:
        blitz.classes.clear()  # the class's entry must go stale
        assert tags_of(openings) == ["endgame"]
        assert classes_of(blitz) == []


def test_set_with_clear_bumps_the_old_partners(tagged):
    openings, blitz, endgame = tagged
    assert classes_of(blitz) == ["openings"]
    openings.tags.set([endgame], clear=True)
    assert classes_of(blitz) == []
    assert classes_of(endgame) == ["openings"]


def test_clear_inside_a_transaction_bumps_after_the_commit(tagged):
    openings, blitz, _ = tagged
    assert classes_of(blitz) == ["openings"]
    with transaction.atomic():
        openings.tags.clear()
    assert classes_of(blitz) == []


def test_clear_costs_one_query_more_than_djangos_own(tagged):
    from django.db.models import signals

    from cachedcall import receivers

    openings, blitz, endgame = tagged

    def clear_queries():
        with CaptureQueriesContext(connection) as queries:
            openings.tags.clear()
        openings.tags.add(blitz, endgame)
        return len(queries)

    ours = clear_queries()
    signals.m2m_changed.disconnect(dispatch_uid="cachedcall.m2m_changed")
    try:
        theirs = clear_queries()
    finally:
        signals.m2m_changed.connect(receivers.on_m2m_changed, dispatch_uid="cachedcall.m2m_changed")
    assert ours == theirs + 1  # the partners' ids, read at pre_clear


def test_a_symmetrical_clear_bumps_both_directions():
    ann, bob, cid = (Person.objects.create(name=n) for n in ("ann", "bob", "cid"))
    ann.friends.add(bob)
    cid.friends.add(ann)
    assert friends_of(bob) == ["ann"] == friends_of(cid)
    ann.friends.clear()
    assert friends_of(bob) == [] == friends_of(cid)


def test_through_rows_written_directly_bump_both_ends(clubs):
    chess, go = clubs
    ann = Person.objects.create(name="ann")
    assert members_of(chess) == [] and clubs_of(ann) == []
    row = Membership.objects.create(person=ann, club=chess)
    assert members_of(chess) == ["ann"] and clubs_of(ann) == ["chess"]
    assert members_of(go) == []
    row.club = go  # moves between clubs: both the old and the new end go stale
    row.save()
    assert members_of(chess) == [] and members_of(go) == ["ann"]
    row.delete()
    assert members_of(go) == [] and clubs_of(ann) == []


def test_deleting_a_row_bumps_the_partners_of_its_auto_created_through_rows(tagged):
    openings, blitz, _ = tagged
    assert tags_of(openings) == ["blitz", "endgame"]
    blitz.delete()  # the collector deletes the through rows and sends no signal for them
    assert tags_of(openings) == ["endgame"]
    assert classes_of(Tag.objects.get(name="endgame")) == ["openings"]
    openings.delete()
    assert classes_of(Tag.objects.get(name="endgame")) == []


def test_deleting_a_row_bumps_the_partners_of_its_custom_through_rows(clubs):
    chess, _ = clubs
    ann = Person.objects.create(name="ann")
    Membership.objects.create(person=ann, club=chess)
    assert members_of(chess) == ["ann"]
    ann.delete()  # cascades to the membership, which sends post_delete
    assert members_of(chess) == []


@pytest.mark.parametrize("field", ["home", "guest", "former"])
def test_children_set_null_default_or_callable_on_delete_go_stale(clubs, field):
    chess, go = clubs
    coach = Coach.objects.create(name="kim", **{field: chess})
    assert homeless_coaches() == []
    assert clubs_of_coach(coach.pk).count(chess.pk) == 1
    if field == "home":
        assert coaches_at(chess) == ["kim"] and coaches_at(go) == []
    with transaction.atomic():
        chess.delete()  # one signal-less UPDATE of the coach
    assert homeless_coaches() == ["kim"]
    assert clubs_of_coach(coach.pk) == [None, None, None]


def test_what_a_delete_reaches_is_derived_from_the_models_without_a_query(django_assert_num_queries):
    from cachedcall.relations import delete_keys

    with django_assert_num_queries(0):
        keys = delete_keys(Club, "p")
    # The coaches (SET_NULL, SET_DEFAULT, SET()): table and epoch. Memberships (a custom
    # through) and classes (CASCADE) send their own post_delete: nothing here.
    assert keys == ["p:v:testapp.coach", "p:v:testapp.coach:*"]
    assert set(delete_keys(Tag, "p")) == {
        "p:v:testapp.clubclass_tags",
        "p:v:testapp.clubclass_tags:*",
        "p:v:testapp.clubclass",
        "p:v:testapp.clubclass:*",
    }


@isolate_apps("tests.testapp")
def test_database_level_actions_reach_on_through_database_cascades():
    from django.db import models

    from cachedcall.relations import delete_keys

    # Django 6.1's database-level actions, where it has them; before, the Python ones
    # whose children Django loads (CASCADE) or updates without a signal (SET_NULL).
    db_cascade = getattr(models, "DB_CASCADE", models.CASCADE)
    db_set_null = getattr(models, "DB_SET_NULL", models.SET_NULL)

    class Root(models.Model):
        class Meta:
            app_label = "testapp"

        pass

    class Branch(models.Model):
        class Meta:
            app_label = "testapp"

        root = models.ForeignKey(Root, on_delete=db_cascade)

    class Leaf(models.Model):
        class Meta:
            app_label = "testapp"

        branch = models.ForeignKey(Branch, on_delete=db_set_null, null=True)

    keys = delete_keys(Root, "p")
    if hasattr(models, "DB_CASCADE"):
        # The database deletes the branches and nulls their leaves: no signal for either.
        assert keys == [
            "p:v:testapp.branch",
            "p:v:testapp.branch:*",
            "p:v:testapp.leaf",
            "p:v:testapp.leaf:*",
        ]
    else:
        # Branches are loaded and send post_delete; deleting one reaches its leaves.
        assert keys == []
        assert delete_keys(Branch, "p") == ["p:v:testapp.leaf", "p:v:testapp.leaf:*"]
