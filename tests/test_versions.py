"""Model versions: entries go stale when the rows they were built from change."""

from __future__ import annotations

import datetime
import threading
from collections import Counter

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.models import User
from django.core.cache import caches
from django.core.management import call_command
from django.db import connection
from django.db import transaction
from django.test import RequestFactory
from django.test import override_settings
from django.utils.functional import SimpleLazyObject

import cachedcall
from cachedcall import InvalidDependency
from cachedcall import bump
from cachedcall import cached
from cachedcall import oncommit
from cachedcall import where
from cachedcall.bumps import bump_now
from cachedcall.versions import dependency_keys
from cachedcall.versions import write_keys
from tests import counting
from tests import names
from tests.savepoints import rolled_back
from tests.testapp.models import Club
from tests.testapp.models import ClubClass
from tests.testapp.models import Place
from tests.testapp.models import Restaurant
from tests.testapp.models import Tag

calls: Counter[str] = Counter()

pytestmark = [pytest.mark.usefixtures("backend_name"), pytest.mark.django_db(transaction=True)]


@cached(timeout=600, depends_on=[ClubClass])
def all_classes():
    calls["all"] += 1
    return sorted(ClubClass.objects.values_list("name", flat=True))


@cached(timeout=600, depends_on=lambda club: [club, where(ClubClass, club=club)])
def club_classes(club):
    calls[club.name] += 1
    return [club.name, *ClubClass.objects.filter(club=club).order_by("name").values_list("name", flat=True)]


@cached(timeout=600, depends_on=["testapp.Tag", ClubClass.tags.through])
def tag_names():
    calls["tags"] += 1
    return sorted(Tag.objects.values_list("name", flat=True))


@cached(timeout=600, depends_on=[Place])
def places():
    calls["places"] += 1
    return Place.objects.count()


def test_table_version_any_row_change_makes_the_entry_stale(clubs):
    chess, _ = clubs
    assert all_classes() == ["joseki", "openings"]
    assert all_classes() == ["joseki", "openings"]
    ClubClass.objects.create(club=chess, name="endgames")
    assert all_classes() == ["endgames", "joseki", "openings"]
    assert calls["all"] == 2


def test_scoped_and_row_versions_touch_only_their_club(clubs):
    chess, go = clubs
    club_classes(chess), club_classes(go)
    ClubClass.objects.create(club=chess, name="tactics")
    assert club_classes(chess) == ["chess", "openings", "tactics"]
    assert club_classes(go) == ["go", "joseki"]
    assert calls == {"chess": 2, "go": 1}
    chess.name = "chess"  # a row save, even without a visible change
    chess.save()
    club_classes(chess), club_classes(go)
    assert calls == {"chess": 3, "go": 1}


def test_moving_a_row_between_scopes_bumps_both(clubs):
    chess, go = clubs
    club_classes(chess), club_classes(go)
    moved = ClubClass.objects.get(name="openings")
    moved.club = go
    moved.save()
    assert club_classes(chess) == ["chess"]
    assert club_classes(go) == ["go", "joseki", "openings"]
    assert calls == {"chess": 2, "go": 2}


def test_deferred_scope_field_saved_with_update_fields(clubs):
    chess, go = clubs
    club_classes(chess), club_classes(go)
    row = ClubClass.objects.only("name").get(name="openings")
    row.name = "openings2"
    row.save(update_fields=["name"])
    assert club_classes(chess) == ["chess", "openings2"]
    assert club_classes(go) == ["go", "joseki"]


def test_delete_and_cascade(clubs):
    chess, go = clubs
    all_classes(), club_classes(go)
    ClubClass.objects.get(name="openings").delete()
    assert all_classes() == ["joseki"]
    go_id = go.pk
    Club.objects.get(pk=go_id).delete()  # cascades to its classes
    assert all_classes() == []
    assert calls["all"] == 3


def test_many_to_many_changes_from_both_sides(clubs):
    openings = ClubClass.objects.get(name="openings")
    blitz = Tag.objects.create(name="blitz")
    assert tag_names() == ["blitz"]
    before = calls["all"], calls["tags"]
    all_classes()
    for change in (
        lambda: openings.tags.add(blitz),
        lambda: openings.tags.remove(blitz),
        lambda: blitz.classes.add(openings),
        lambda: blitz.classes.clear(),
        lambda: openings.tags.set([blitz]),
        lambda: openings.tags.clear(),
    ):
        tag_names(), all_classes()
        n_tags, n_all = calls["tags"], calls["all"]
        change()
        tag_names(), all_classes()
        assert (calls["tags"], calls["all"]) == (n_tags + 1, n_all + 1)
    assert before[1] == 1


def test_loaddata_raw_saves_bump():
    assert all_classes() == []
    call_command("loaddata", "tests/fixtures/one_class.json", verbosity=0)
    assert all_classes() == ["loaded"]


def test_multi_table_inheritance_bumps_the_parent_table():
    assert places() == 0
    Restaurant.objects.create(name="bistro")
    assert places() == 1


def _version(key_suffix):
    return caches["default"].get(names.key(f"v:{key_suffix}"))


def test_bumps_wait_for_the_outermost_commit_and_happen_once_per_key(clubs, counted, commit_gate):
    chess, _ = clubs
    all_classes()
    table = _version("testapp.clubclass")
    counting.calls.clear()
    with transaction.atomic():
        for i in range(3):
            ClubClass.objects.create(club=chess, name=f"c{i}")
        with transaction.atomic():
            ClubClass.objects.create(club=chess, name="nested")
        ours = type(connection.run_on_commit) is oncommit.Hooks
        assert ours == (commit_gate == "gate-open")  # closed: Django's own list, untouched
        assert _version("testapp.clubclass") == table  # nothing before the commit
    assert _version("testapp.clubclass") == table + 1  # once, not four times
    # table + 4 rows + one scope (club_id=chess), each bumped exactly once
    assert counting.calls["incr"] == 6
    assert all_classes()[:3] == ["c0", "c1", "c2"]


@pytest.mark.usefixtures("commit_gate")
def test_no_bump_after_rollback_including_savepoints(clubs):
    chess, go = clubs
    club_classes(chess), club_classes(go)
    table = _version("testapp.clubclass")
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        ClubClass.objects.create(club=chess, name="never")
        _ = 1 / 0
    assert _version("testapp.clubclass") == table
    with transaction.atomic():
        ClubClass.objects.create(club=go, name="kept")
        rolled_back(lambda: ClubClass.objects.create(club=chess, name="rolled-back"))
    assert _version("testapp.clubclass") == table + 1
    assert club_classes(chess) == ["chess", "openings"]
    assert calls["chess"] == 1  # its scope was only touched inside the rolled-back savepoint
    assert club_classes(go) == ["go", "joseki", "kept"]


def test_a_failing_foreign_on_commit_callback_does_not_stop_our_bump(clubs):
    chess, _ = clubs
    all_classes()

    def broken():
        raise RuntimeError("someone else's callback")

    with pytest.raises(RuntimeError), transaction.atomic():
        transaction.on_commit(broken)
        ClubClass.objects.create(club=chess, name="after-broken")
    assert "after-broken" in all_classes()


@pytest.mark.usefixtures("commit_gate")
def test_read_your_writes_inside_a_transaction(clubs):
    chess, _ = clubs
    club_classes(chess)
    with transaction.atomic():
        ClubClass.objects.create(club=chess, name="pending")
        assert club_classes(chess) == ["chess", "openings", "pending"]
        assert club_classes(chess) == ["chess", "openings", "pending"]
        assert calls["chess"] == 3  # bypassed: computed, neither read nor stored
    club_classes(chess)
    club_classes(chess)
    assert calls["chess"] == 4


def test_writes_while_switched_off_still_bump(clubs):
    chess, _ = clubs
    all_classes()
    with cachedcall.disabled():
        ClubClass.objects.create(club=chess, name="quiet")
    assert "quiet" in all_classes()


def _close_thread_connections():
    # Each thread has its own backend instance; Django's RedisCache.close() leaves its pool
    # to the garbage collector, which warns about the open sockets. Disconnect them here.
    backend = caches["default"]
    pools = getattr(getattr(backend, "_cache", None), "_pools", None)
    for pool in (pools or {}).values():
        pool.disconnect()
    backend.close()


def test_counter_race_advances_exactly(backend_name):
    bump_now([names.key("v:race")])
    start = caches["default"].get(names.key("v:race"))
    barrier = threading.Barrier(20)

    def worker():
        barrier.wait()
        for _ in range(50):
            bump_now([names.key("v:race")])
        _close_thread_connections()

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert caches["default"].get(names.key("v:race")) == start + 1000


def test_an_evicted_counter_is_a_miss_and_never_revives_old_entries(clubs):
    all_classes()
    old = _version("testapp.clubclass")
    caches["default"].delete(names.key("v:testapp.clubclass"))  # as an eviction would
    all_classes()
    assert calls["all"] == 2
    new = _version("testapp.clubclass")
    assert new is not None and new != old and new > 1_000  # random seed, not 1


def test_a_hit_is_one_round_trip_whatever_it_depends_on(clubs, counted):
    chess, _ = clubs

    @cached(timeout=60, depends_on=lambda club: [Club, ClubClass, Tag, club, where(ClubClass, club=club)])
    def heavy(club):
        return club.name

    heavy(chess)
    heavy(chess)  # counters now exist
    counting.calls.clear()
    heavy(chess)
    assert dict(counting.calls) == {"get_many": 1}
    heavy.invalidate(chess)
    counting.calls.clear()
    heavy(chess)
    assert dict(counting.calls) == {"get_many": 1, "set": 1}  # a miss: read, write


def test_invalid_dependencies_are_refused_clearly(clubs):
    chess, _ = clubs
    with pytest.raises(InvalidDependency, match="is not a model class"):
        cached(depends_on=[object()])(lambda: 1)
    with pytest.raises(InvalidDependency, match="'testapp.Nope' names no installed model"):
        cached(depends_on=["testapp.Nope"])(lambda: 1)

    @cached(key=lambda club: "one", depends_on=lambda club: [club])
    def needs_saved(club):
        return 1

    with pytest.raises(InvalidDependency, match="not saved"):
        needs_saved(Club(name="unsaved"))
    with pytest.raises(InvalidDependency, match="has no field 'nope'; its fields are id, club"):
        where(ClubClass, nope=1)
    with pytest.raises(
        InvalidDependency, match=r"no writer bumps the scope \(weekday\).*CACHEDCALL\['SCOPES'\]"
    ):
        where(ClubClass, weekday=1)
    with pytest.raises(InvalidDependency, match="lookup through a relation"):
        where(ClubClass, club__name="chess")
    with pytest.raises(InvalidDependency, match="takes a Club, not a Tag"):
        where(ClubClass, club=Tag.objects.create(name="t"))
    with pytest.raises(InvalidDependency, match="at least one"):
        where(ClubClass)


def test_where_accepts_an_instance_or_a_pk_alike(clubs):
    chess, _ = clubs
    assert (
        where(ClubClass, club=chess)
        == where(ClubClass, club=chess.pk)
        == where(ClubClass, club_id=str(chess.pk))
    )


@override_settings(CACHEDCALL={"SCOPES": {"testapp.ClubClass": [("club", "weekday")]}})
def test_declared_multi_field_scopes(clubs):
    chess, _ = clubs

    @cached(timeout=60, depends_on=lambda club, day: [where(ClubClass, club=club, weekday=day)])
    def on_day(club, day):
        calls[f"day{day}"] += 1
        return list(ClubClass.objects.filter(club=club, weekday=day).values_list("name", flat=True))

    on_day(chess, 1), on_day(chess, 2)
    ClubClass.objects.create(club=chess, name="monday", weekday=1)
    assert on_day(chess, 1) == ["monday"]
    assert on_day(chess, 2) == []
    assert calls == {"day1": 2, "day2": 1}


def test_explicit_bump_for_writes_without_signals(clubs):
    chess, go = clubs
    club_classes(chess), club_classes(go), all_classes()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE testapp_clubclass SET name = 'raw'")
    assert club_classes(chess) == ["chess", "openings"]  # stale, as expected without a bump
    bump(ClubClass)  # a whole table: every row and scope of it too
    assert club_classes(chess) == ["chess", "raw"]
    assert club_classes(go) == ["go", "raw"]
    assert all_classes() == ["raw", "raw"]
    Club.objects.filter(pk=chess.pk).update(name="chess")  # CachedCallManager not on Club
    bump(chess)
    club_classes(chess)
    bump(where(ClubClass, club=go))
    club_classes(go)
    bump("testapp.ClubClass")
    all_classes()
    assert calls == {"chess": 3, "go": 3, "all": 3}


def test_queryset_mixin_bumps_update_bulk_create_bulk_update_and_delete(clubs):
    chess, go = clubs
    for write in (
        lambda: ClubClass.objects.filter(club=chess).update(weekday=3),
        lambda: ClubClass.objects.bulk_create([ClubClass(club=chess, name="bulk")]),
        lambda: (
            ClubClass.objects.bulk_update([ClubClass.objects.get(name="joseki")], ["club"])
            if not ClubClass.objects.filter(name="joseki").update(club=chess)
            else None
        ),
        lambda: ClubClass.objects.filter(name="bulk").delete(),
    ):
        club_classes(chess), all_classes()
        before = calls["chess"], calls["all"]
        write()
        club_classes(chess), all_classes()
        assert (calls["chess"], calls["all"]) == (before[0] + 1, before[1] + 1)


@pytest.mark.usefixtures("commit_gate")
def test_a_large_delete_bumps_each_key_once(clubs, counted):
    chess, _ = clubs
    ClubClass.objects.bulk_create([ClubClass(club=chess, name=f"n{i}") for i in range(1000)])
    table = _version("testapp.clubclass")
    counting.calls.clear()
    ClubClass.objects.filter(club=chess).delete()
    assert _version("testapp.clubclass") == table + 1
    # 100 rows, then the model's epoch instead of the other 901; one scope; the table; and
    # what the rows' silent deletes of their tag links reach (cachedcall.relations): the
    # through model's table and epoch, and the partner Tag's.
    assert counting.calls["incr"] == 100 + 1 + 1 + 1 + 4


def test_reset_does_not_touch_other_applications_keys(clubs):
    caches["default"].set("someone-elses-key", "theirs", None)
    all_classes()
    cachedcall.reset()
    all_classes()
    assert calls["all"] == 2
    assert caches["default"].get("someone-elses-key") == "theirs"


def test_the_seed_club_page_shows_a_new_class_right_after_it_is_saved(clubs):
    chess, _ = clubs

    def club_page(clubname):
        club = Club.objects.get(name=clubname)
        return "\n".join(club_classes(club))

    assert club_page("chess") == "chess\nopenings"
    assert club_page("chess") == "chess\nopenings"
    ClubClass.objects.create(club=chess, name="zugzwang", start_time=datetime.time(18))
    assert club_page("chess") == "chess\nopenings\nzugzwang"


# --- lazy objects (request.user) are the object they wrap -----------------------------------


def _lazy(obj):
    return SimpleLazyObject(lambda: obj)


def test_a_lazy_object_and_the_object_it_wraps_give_the_same_key(clubs):
    chess, _ = clubs

    @cached(timeout=60)
    def name_of(club):
        return club.name

    assert name_of.key(_lazy(chess)) == name_of.key(chess)


def test_request_user_in_depends_on_is_the_row_of_the_user(clubs):
    alice = User.objects.create(username="alice")
    bob = User.objects.create(username="bob")

    @cached(timeout=60, key=lambda request: request.user.pk, depends_on=lambda request: [request.user])
    def profile(request):
        calls[request.user.username] += 1
        return request.user.username

    def request_of(user):
        request = RequestFactory().get("/")
        request.user = SimpleLazyObject(lambda: User.objects.get(pk=user.pk))  # as the middleware
        return request

    assert dependency_keys([_lazy(alice)], "p", "test") == dependency_keys([alice], "p", "test")
    profile(request_of(alice)), profile(request_of(alice)), profile(request_of(bob))
    assert calls == {"alice": 1, "bob": 1}
    alice.save()
    profile(request_of(alice)), profile(request_of(bob))
    assert calls == {"alice": 2, "bob": 1}


def test_a_lazy_anonymous_user_is_refused_exactly_like_the_anonymous_user():
    @cached(timeout=60, key=lambda user: "one", depends_on=lambda user: [user])
    def page(user):
        return 1

    errors = []
    for user in (AnonymousUser(), _lazy(AnonymousUser())):
        with pytest.raises(InvalidDependency) as info:
            page(user)
        errors.append(str(info.value))
    assert errors[0] == errors[1]
    assert "AnonymousUser is not a model class" in errors[0]
    assert "request.user.is_authenticated" in errors[0]


def test_bump_of_a_lazy_instance_bumps_its_row_table_and_scopes(clubs):
    chess, go = clubs
    openings = ClubClass.objects.get(name="openings")
    assert write_keys(_lazy(openings), "p") == write_keys(openings, "p")
    club_classes(chess), club_classes(go), all_classes()
    bump(_lazy(openings))  # its scope club_id=chess, its row, the table
    club_classes(chess), club_classes(go), all_classes()
    assert calls == {"chess": 2, "go": 1, "all": 2}
    bump(_lazy(chess))
    club_classes(chess), club_classes(go)
    assert calls == {"chess": 3, "go": 1, "all": 2}


def test_a_lazy_instance_with_deferred_fields_is_read_without_a_query(clubs, django_assert_num_queries):
    real = ClubClass.objects.only("name").get(name="openings")
    lazy = _lazy(ClubClass.objects.only("name").get(name="openings"))
    assert lazy.pk == real.pk  # evaluates it: the query that loads it is not ours
    with django_assert_num_queries(0):
        assert write_keys(lazy, "p") == write_keys(real, "p")
    assert not any("club_id=" in key for key in write_keys(lazy, "p"))  # unknown: left to pre_save
