"""cached_view: request-aware keys, model versions, and nothing served to the wrong person."""

from __future__ import annotations

import asyncio

import pytest
from django.contrib.auth.models import User
from django.test import AsyncClient
from django.test import Client
from django.test import RequestFactory
from django.test import override_settings
from django.utils import translation

import cachedcall
from cachedcall import InvalidOption
from cachedcall import cached_view
from cachedcall.testing import record
from tests import views
from tests.testapp.models import Club
from tests.testapp.models import ClubClass

pytestmark = [pytest.mark.usefixtures("backend_name"), pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _reset():
    views.ran.clear()


def get(path, client=None, **extra):
    return (client or Client()).get(path, **extra)


def test_second_get_is_a_hit_with_the_same_response():
    first, second = get("/plain/"), get("/plain/")
    assert first.content == second.content == b"plain 1"
    assert views.ran["plain"] == 1
    assert "Age" in second.headers and "Age" not in first.headers


def test_query_string_in_canonical_order_and_values_separate_entries():
    assert get("/plain/?a=1&b=2").content == get("/plain/?b=2&a=1").content
    get("/plain/?a=2&b=1")
    assert views.ran["plain"] == 2


def test_head_after_get_is_served_without_a_body():
    get("/plain/")
    response = Client().head("/plain/")
    assert response.status_code == 200 and response.content == b""
    assert views.ran["plain"] == 1


def test_head_first_is_not_stored_for_get():
    with record() as events:
        Client().head("/plain/")
    assert events.filter(views.plain, "refused")[0].reason.startswith("HEAD response")
    get("/plain/")
    assert views.ran["plain"] == 2


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_other_methods_are_never_read_or_stored(method):
    get("/plain/")
    with record() as events:
        getattr(Client(), method)("/plain/")
    assert views.ran["plain"] == 2
    assert events.filter(views.plain, "refused")[0].reason == f"method {method.upper()}"


def test_a_saved_class_shows_up_while_another_clubs_page_stays_a_hit():
    chess, go = Club.objects.create(name="chess"), Club.objects.create(name="go")
    ClubClass.objects.create(club=chess, name="openings")
    get(f"/clubs/{chess.pk}/"), get(f"/clubs/{go.pk}/")
    ClubClass.objects.create(club=chess, name="endgames")
    assert get(f"/clubs/{chess.pk}/").content == b"club_page 3 endgames,openings"
    assert get(f"/clubs/{go.pk}/").content == b"club_page 2"
    assert views.ran["club_page"] == 3


@pytest.mark.parametrize(("code", "stored"), [(200, True), (404, True), (500, False), (301, False)])
def test_only_listed_status_codes_are_stored(code, stored):
    with record() as events:
        get(f"/status/{code}/"), get(f"/status/{code}/")
    assert views.ran["status"] == (1 if stored else 2)
    if not stored:
        assert events.filter(views.status, "refused")[0].reason == f"status {code}"


def _refusal(path, **extra):
    with record() as events:
        get(path, **extra), get(path, **extra)
    refused = events.filter(outcome="refused")
    assert refused, str(events)
    return refused[0].reason


def test_responses_setting_a_cookie_are_not_stored():
    assert _refusal("/cookie/") == "response sets cookies (flavour)"
    assert views.ran["sets_cookie"] == 2


def test_responses_using_the_csrf_token_are_not_stored():
    assert "CSRF" in _refusal("/csrf/")
    assert views.ran["uses_csrf"] == 2


@pytest.mark.parametrize(
    "value",
    ["private", "Private", "PRIVATE", "max-age=60, private", "no-store", "No-Cache", " no-cache ,public"],
)
def test_private_cache_control_in_any_case_is_not_stored(value):
    reason = _refusal(f"/cache-control/?value={value}")
    assert reason.startswith("Cache-Control: ")
    assert views.ran["cache_control"] == 2


def test_public_cache_control_is_stored():
    get("/cache-control/?value=public, max-age=60"), get("/cache-control/?value=public, max-age=60")
    assert views.ran["cache_control"] == 1


@pytest.mark.parametrize("value", ["*", " * ", "Accept, *", "*,Cookie"])
def test_vary_star_with_any_whitespace_is_not_stored(value):
    assert _refusal(f"/vary/?value={value}") == "Vary: *"


def test_vary_headers_are_learned_and_keyed_absent_differs_from_empty():
    path = "/vary/?value=X-Flavour"
    # The first response teaches the view its Vary header and is stored under a key that
    # already includes the header's value.
    assert get(path, HTTP_X_FLAVOUR="vanilla").content == b"vary 1 vanilla"
    assert get(path, HTTP_X_FLAVOUR="vanilla").content == b"vary 1 vanilla"
    assert get(path, HTTP_X_FLAVOUR="chocolate").content == b"vary 2 chocolate"
    assert get(path).content == b"vary 3 none"
    assert get(path, HTTP_X_FLAVOUR="").content == b"vary 4"
    assert get(path).content == b"vary 3 none"


def test_header_values_are_delimiter_safe():
    assert get("/headers/", HTTP_X_A="ab", HTTP_X_B="c").content == b"headers 1 ab|c"
    assert get("/headers/", HTTP_X_A="a", HTTP_X_B="bc").content == b"headers 2 a|bc"
    assert get("/headers/", HTTP_X_A="ab", HTTP_X_B="c").content == b"headers 1 ab|c"


def test_streaming_responses_are_not_stored():
    assert _refusal("/streaming/") == "streaming response"


def test_template_responses_are_rendered_and_stored():
    first, second = get("/template/"), get("/template/")
    assert first.content == second.content == b"<p>rendered 1</p>\n"
    assert views.ran["template"] == 1


def test_requests_with_authorization_bypass():
    reason = _refusal("/plain/", HTTP_AUTHORIZATION="Bearer x")
    assert reason == "request carries Authorization"
    assert views.ran["plain"] == 2


def test_two_users_never_see_each_others_page():
    alice = User.objects.create_user("alice", password="pw")
    bob = User.objects.create_user("bob", password="pw")
    a, b, anon = Client(), Client(), Client()
    a.force_login(alice)
    b.force_login(bob)
    assert get("/whoami/", anon).content == b"whoami 1 anonymous"
    assert get("/whoami/", a).content == b"whoami 2 alice"  # bypassed: not the anonymous page
    assert get("/whoami/", b).content == b"whoami 3 bob"
    assert get("/whoami/", anon).content == b"whoami 1 anonymous"  # anonymous still cached
    with record() as events:
        get("/whoami/", a)
    assert events.filter(views.whoami, "refused")[0].reason.startswith("authenticated user")
    # per_user: each user has entries of their own, keyed by pk and session auth hash
    assert get("/whoami-per-user/", a).content == b"whoami_per_user 1 alice"
    assert get("/whoami-per-user/", b).content == b"whoami_per_user 2 bob"
    assert get("/whoami-per-user/", a).content == b"whoami_per_user 1 alice"
    assert get("/whoami-per-user/", anon).content == b"whoami_per_user 3 anonymous"
    alice.set_password("new")  # a new session auth hash: the old entries are unreachable
    alice.save()
    a.force_login(alice)
    assert get("/whoami-per-user/", a).content == b"whoami_per_user 4 alice"


def test_a_view_reading_the_session_varies_on_the_cookie():
    one, two = Client(), Client()
    session = one.session
    session["flavour"] = "mint"
    session.save()
    one.cookies["sessionid"] = session.session_key
    assert get("/session/", one).content == b"session_flavour 1 mint"
    assert get("/session/", two).content == b"session_flavour 2 none"
    assert get("/session/", one).content == b"session_flavour 1 mint"  # keyed on its Cookie
    assert get("/session/", two).content == b"session_flavour 2 none"
    assert views.ran["session_flavour"] == 2


def test_the_active_language_is_in_the_key():
    factory = RequestFactory()
    with translation.override("en"):
        assert views.language(factory.get("/language/")).content == b"language 1 en"
    with translation.override("fr"):
        assert views.language(factory.get("/language/")).content == b"language 2 fr"
    with translation.override("en"):
        assert views.language(factory.get("/language/")).content == b"language 1 en"


@override_settings(USE_X_FORWARDED_HOST=True)
def test_x_forwarded_host_never_poisons_another_hosts_entry():
    assert (
        get("/host/", HTTP_HOST="a.example", HTTP_X_FORWARDED_HOST="b.example").content == b"host 1 b.example"
    )
    assert get("/host/", HTTP_HOST="a.example").content == b"host 2 a.example"
    assert get("/host/", HTTP_HOST="b.example").content == b"host 1 b.example"
    assert get("/host/", HTTP_HOST="evil.example").status_code == 400  # DisallowedHost, as Django


def test_a_served_entry_is_a_faithful_copy():
    first, second = get("/faithful/"), get("/faithful/")
    assert views.ran["faithful"] == 1
    assert second.status_code == first.status_code == 200
    assert second.content == first.content == "é".encode("latin-1")
    assert second.charset == "latin-1"
    for header in ("Content-Type", "X-Custom", "Content-Length"):
        assert second[header] == first[header]
    assert int(second["Age"]) >= 0


def test_async_views():
    async def scenario():
        client = AsyncClient()
        first = await client.get("/async/")
        second = await client.get("/async/")
        return first.content, second.content

    assert asyncio.run(scenario()) == (b"async 1", b"async 1")


def test_class_based_views_with_method_decorator_and_as_view():
    assert get("/class-based/").content == get("/class-based/").content == b"class_based 1"
    assert get("/as-view/").content == get("/as-view/").content == b"as_view 1"
    from cachedcall.function import registry

    assert sum(core.name.endswith("ClassBased.get") for core in registry) == 1  # one core, reused


def test_composes_with_djangos_own_decorators():
    assert get("/composed-vary/", HTTP_X_FLAVOUR="mint").content == b"composed_vary 1 mint"
    assert get("/composed-vary/", HTTP_X_FLAVOUR="lime").content == b"composed_vary 2 lime"
    assert get("/composed-vary/", HTTP_X_FLAVOUR="mint").content == b"composed_vary 1 mint"
    assert _refusal("/composed-never/").startswith("Cache-Control: ")
    assert views.ran["composed_never"] == 2


def test_switch_and_fail_open_apply():
    with cachedcall.disabled():
        get("/plain/"), get("/plain/")
    assert views.ran["plain"] == 2


def test_bad_options_and_targets():
    with pytest.raises(InvalidOption, match="vary_on must be a list of header names"):
        cached_view(vary_on="Cookie")(lambda request: None)
    with pytest.raises(InvalidOption, match="statuses must be a list of HTTP status codes"):
        cached_view(statuses=[999])(lambda request: None)
    with pytest.raises(InvalidOption, match="unknown option.*'key'"):
        cached_view(key=["x"])
    with pytest.raises(InvalidOption, match=r"decorate AsView.as_view\(\)"):
        cached_view(60)(views.AsView)
