"""where(): rows by primary key, generic foreign keys, and what it refuses."""

from __future__ import annotations

from collections import Counter

import pytest
from django.contrib.contenttypes.models import ContentType
from django.test import override_settings

from cachedcall import InvalidDependency
from cachedcall import bump
from cachedcall import cached
from cachedcall import where
from cachedcall.keys import pk_token
from cachedcall.versions import dependency_keys
from cachedcall.versions import shapes
from tests import names
from tests.testapp.models import Club
from tests.testapp.models import ClubClass
from tests.testapp.models import PinnedItem
from tests.testapp.models import Place
from tests.testapp.models import Restaurant
from tests.testapp.models import Tag
from tests.testapp.models import TaggedItem

calls: Counter[str] = Counter()

pytestmark = pytest.mark.django_db(transaction=True)
behavioural = pytest.mark.usefixtures("backend_name")


@cached(timeout=600, depends_on=lambda club: [where(Club, pk=club.pk)])
def club_row(club):
    calls[club.name] += 1
    return club.name


@cached(timeout=600, depends_on=[Club])
def all_clubs():
    calls["all"] += 1
    return sorted(Club.objects.values_list("name", flat=True))


@cached(timeout=600, depends_on=lambda club: [where(ClubClass, club=club)])
def classes_of(club):
    calls[f"classes:{club.name}"] += 1
    return sorted(ClubClass.objects.filter(club=club).values_list("name", flat=True))


@cached(timeout=600, depends_on=lambda club: [where(TaggedItem, content_object=club)])
def tags_of(club):
    calls[f"tags:{club.name}"] += 1
    ct = ContentType.objects.get_for_model(Club)
    items = TaggedItem.objects.filter(content_type=ct, object_id=club.pk)
    return sorted(items.values_list("tag__name", flat=True))


def _ct():
    return ContentType.objects.get_for_model(Club)


# --- a lone primary key is the row version ----------------------------------------------------


@pytest.mark.parametrize("form", ["pk=instance", "pk=pk", "id=pk", "id=str"])
def test_a_lone_primary_key_is_the_row_version_of_the_saved_instance(clubs, form):
    chess, _ = clubs
    name, value = form.split("=")
    value = {"instance": chess, "pk": chess.pk, "str": str(chess.pk)}[value]
    scope = where(Club, **{name: value})
    assert scope.keys(names.prefix()) == [
        names.key(f"v:testapp.club:{pk_token(chess.pk)}"),
        names.key("v:testapp.club:*"),
    ]
    assert dependency_keys([scope], "p", "test") == dependency_keys([chess], "p", "test")


def test_rows_of_multi_table_children_and_parents(clubs):
    bistro = Restaurant.objects.create(name="bistro")
    as_place = Place.objects.get(pk=bistro.pk)
    assert dependency_keys([where(Restaurant, pk=bistro)], "p", "t") == dependency_keys([bistro], "p", "t")
    assert where(Restaurant, place_ptr=as_place) == where(Restaurant, pk=bistro.pk)
    assert dependency_keys([where(Place, pk=bistro)], "p", "t") == dependency_keys([as_place], "p", "t")


@behavioural
def test_a_row_where_goes_stale_when_that_row_is_saved_or_deleted(clubs):
    chess, go = clubs
    club_row(chess), club_row(go), club_row(chess)
    assert calls == {"chess": 1, "go": 1}
    chess.save()
    club_row(chess), club_row(go)
    assert calls == {"chess": 2, "go": 1}
    Club.objects.get(pk=go.pk).delete()
    club_row(chess), club_row(go)
    assert calls == {"chess": 2, "go": 2}


def test_a_primary_key_among_other_fields_keeps_the_scope_rules(clubs):
    with pytest.raises(InvalidDependency, match=r"no writer bumps the scope \(id, name\)"):
        where(Club, pk=1, name="chess")
    with override_settings(CACHEDCALL={"SCOPES": {"testapp.Club": [("pk", "name")]}}):
        assert where(Club, pk=1, name="chess") == where(Club, id="1", name="chess")


def test_row_wheres_have_a_repr_equality_and_hash(clubs):
    chess, go = clubs
    forms = [where(Club, pk=chess), where(Club, pk=chess.pk), where(Club, id=str(chess.pk))]
    assert repr(forms[0]) == f"where(testapp.Club, pk={chess.pk})"
    assert forms[0] == forms[1] == forms[2] and len(set(forms)) == 1
    assert where(Club, pk=go) != forms[0]
    assert where(Club, pk=chess.pk) != where(ClubClass, club=chess.pk)
    assert where(Club, pk=chess) != chess


def test_a_row_where_takes_a_row_of_its_model_or_a_pk(clubs):
    with pytest.raises(InvalidDependency, match="pk= takes a Club, not a Tag"):
        where(Club, pk=Tag.objects.create(name="t"))
    with pytest.raises(InvalidDependency, match="pk= is an unsaved instance"):
        where(Club, pk=Club(name="unsaved"))
    with pytest.raises(InvalidDependency, match="id='x'"):
        where(Club, id="x")


# --- bump(where(...)) ---------------------------------------------------------------------


@behavioural
def test_bump_of_a_row_where_bumps_that_row_and_the_table(clubs):
    chess, go = clubs
    club_row(chess), club_row(go), all_clubs(), classes_of(chess)
    bump(where(Club, pk=chess.pk))
    club_row(chess), club_row(go), all_clubs(), classes_of(chess)
    assert calls == {"chess": 2, "go": 1, "all": 2, "classes:chess": 1}


@behavioural
def test_bump_of_a_scope_bumps_it_and_the_table_but_not_the_other_scopes(clubs):
    chess, go = clubs

    @cached(timeout=600, depends_on=["testapp.ClubClass"])
    def every_class():
        calls["every"] += 1
        return ClubClass.objects.count()

    classes_of(chess), classes_of(go), every_class()
    bump(where(ClubClass, club=go))
    classes_of(chess), classes_of(go), every_class()
    assert calls == {"classes:chess": 1, "classes:go": 2, "every": 2}


@behavioural
def test_bump_of_a_childs_row_or_scope_bumps_the_parents_too(clubs):
    chess, go = clubs
    bistro = Restaurant.objects.create(name="bistro")

    @cached(timeout=600, depends_on=lambda place: [place])
    def place_name(place):
        calls[place.name] += 1
        return place.name

    @cached(timeout=600, depends_on=lambda club: [where(PinnedItem, content_object=club)])
    def pinned_of(club):
        calls[f"pinned:{club.name}"] += 1
        return PinnedItem.objects.filter(object_id=club.pk).count()

    place_name(Place.objects.get(pk=bistro.pk)), tags_of(chess), tags_of(go), pinned_of(chess)
    bump(where(Restaurant, pk=bistro.pk))  # a restaurant's row is also a row of Place
    bump(where(PinnedItem, content_object=chess))  # ... and its scope one of TaggedItem
    place_name(Place.objects.get(pk=bistro.pk)), tags_of(chess), tags_of(go), pinned_of(chess)
    assert calls == {"bistro": 2, "tags:chess": 2, "tags:go": 1, "pinned:chess": 2}


# --- a generic foreign key is a scope by itself -------------------------------------------------


def test_the_content_type_and_object_id_pair_is_a_scope_of_the_model_and_its_children():
    assert ("content_type_id", "object_id") in shapes(TaggedItem)
    assert ("content_type_id", "object_id") in shapes(PinnedItem)
    assert ("tag_id",) in shapes(TaggedItem)


def test_where_on_a_generic_foreign_key_needs_no_declaration(clubs, django_assert_num_queries):
    chess, _ = clubs
    ct = _ct()
    by_pair = where(TaggedItem, content_type=ct, object_id=chess.pk)
    assert by_pair == where(TaggedItem, content_type=ct.pk, object_id=str(chess.pk))
    assert by_pair.keys(names.prefix())[0] == names.key(
        f"v:testapp.taggeditem:content_type_id&object_id={pk_token((ct.pk, chess.pk))}"
    )
    with django_assert_num_queries(0):  # the content types framework caches the lookup
        assert where(TaggedItem, content_object=chess) == by_pair


def test_content_object_takes_a_saved_instance(clubs):
    with pytest.raises(InvalidDependency, match="content_object= is an unsaved instance"):
        where(TaggedItem, content_object=Club(name="unsaved"))
    with pytest.raises(InvalidDependency, match=r"content_object= takes a model instance, not 5 \(int\)"):
        where(TaggedItem, content_object=5)
    with pytest.raises(InvalidDependency, match="given twice"):
        where(TaggedItem, content_object=Club.objects.first(), object_id=1)


@behavioural
def test_saving_and_deleting_a_tagged_item_makes_only_its_objects_entries_stale(clubs):
    chess, go = clubs
    blitz = Tag.objects.create(name="blitz")
    tags_of(chess), tags_of(go)
    item = TaggedItem.objects.create(content_object=chess, tag=blitz)
    assert tags_of(chess) == ["blitz"]
    assert tags_of(go) == []
    assert calls == {"tags:chess": 2, "tags:go": 1}
    item.tag = Tag.objects.create(name="rapid")
    item.save()
    assert tags_of(chess) == ["rapid"]
    tags_of(go)
    assert calls == {"tags:chess": 3, "tags:go": 1}
    item.delete()
    assert tags_of(chess) == []
    tags_of(go)
    assert calls == {"tags:chess": 4, "tags:go": 1}


@behavioural
def test_moving_a_tagged_item_to_another_object_bumps_both(clubs):
    chess, go = clubs
    item = TaggedItem.objects.create(content_object=chess, tag=Tag.objects.create(name="blitz"))
    tags_of(chess), tags_of(go)
    item.content_object = go
    item.save()
    assert tags_of(chess) == []
    assert tags_of(go) == ["blitz"]
    assert calls == {"tags:chess": 2, "tags:go": 2}


@behavioural
def test_a_multi_table_child_bumps_its_own_and_its_parents_pair(clubs):
    chess, go = clubs

    @cached(timeout=600, depends_on=lambda club: [where(PinnedItem, content_object=club)])
    def pinned_of(club):
        calls[f"pinned:{club.name}"] += 1
        return PinnedItem.objects.filter(object_id=club.pk).count()

    tags_of(chess), tags_of(go), pinned_of(chess), pinned_of(go)
    PinnedItem.objects.create(content_object=chess, tag=Tag.objects.create(name="blitz"), rank=1)
    assert pinned_of(chess) == 1
    assert tags_of(chess) == ["blitz"]
    tags_of(go), pinned_of(go)
    assert calls == {"tags:chess": 2, "tags:go": 1, "pinned:chess": 2, "pinned:go": 1}


@behavioural
@override_settings(CACHEDCALL={"SCOPES": {"testapp.TaggedItem": [("content_object", "tag")]}})
def test_a_generic_foreign_key_in_a_declared_scope(clubs):
    chess, _ = clubs
    blitz, rapid = Tag.objects.create(name="blitz"), Tag.objects.create(name="rapid")

    @cached(timeout=600, depends_on=lambda club, tag: [where(TaggedItem, content_object=club, tag=tag)])
    def tagged(club, tag):
        calls[tag.name] += 1
        return TaggedItem.objects.filter(object_id=club.pk, tag=tag).count()

    tagged(chess, blitz), tagged(chess, rapid)
    TaggedItem.objects.create(content_object=chess, tag=blitz)
    assert tagged(chess, blitz) == 1
    assert tagged(chess, rapid) == 0
    assert calls == {"blitz": 2, "rapid": 1}


# --- what where() refuses -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: Club.objects.filter(name="chess"),
            r"not a QuerySet of testapp\.Club\. .*its model \(Club\)",
        ),
        (
            lambda: Club.objects.create(name="rook"),
            r"not a testapp\.Club instance\. .*where\(Club, pk=\.\.\.\)",
        ),
        (lambda: 5, r"not 5 \(int\)\.$"),
        (lambda: None, r"not None \(NoneType\)\.$"),
        (lambda: Counter, r"not <class 'collections\.Counter'> \(type\)\.$"),
    ],
)
def test_where_of_anything_but_a_model_class_or_label_is_refused(make, message, django_assert_num_queries):
    first = make()
    with django_assert_num_queries(0), pytest.raises(InvalidDependency) as info:  # no QuerySet runs
        where(first, name="chess")
    assert str(info.value).startswith("where() takes a model class or an 'app_label.ModelName' label first")
    assert info.match(message)


def test_a_queryset_in_depends_on_is_refused_without_running_it(django_assert_num_queries):
    @cached(timeout=60, depends_on=lambda: [Club.objects.all()])
    def clubs_page():
        return 1

    with (
        django_assert_num_queries(0),
        pytest.raises(InvalidDependency, match="a QuerySet of testapp.Club is not"),
    ):
        clubs_page()
