"""Views used by tests/test_views.py; each counts how often it really ran."""

from __future__ import annotations

from collections import Counter

from django.http import HttpResponse
from django.http import StreamingHttpResponse
from django.middleware.csrf import get_token
from django.template.response import TemplateResponse
from django.utils import translation
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.vary import vary_on_headers

from cachedcall import cached_view
from cachedcall import where
from tests.testapp.models import ClubClass

ran: Counter[str] = Counter()


def _body(name: str, text: str = "") -> HttpResponse:
    ran[name] += 1
    return HttpResponse(f"{name} {ran[name]} {text}".strip())


@cached_view(600, depends_on=lambda request, club_id: [where(ClubClass, club=club_id)])
def club_page(request, club_id):
    names = ClubClass.objects.filter(club_id=club_id).order_by("name").values_list("name", flat=True)
    return _body("club_page", ",".join(names))


@cached_view(600)
def plain(request):
    return _body("plain", request.GET.urlencode())


@cached_view(600, statuses=[200, 404])
def status(request, code):
    ran["status"] += 1
    return HttpResponse(f"status {code}", status=code)


@cached_view(600)
def sets_cookie(request):
    response = _body("sets_cookie")
    response.set_cookie("flavour", "x")
    return response


@cached_view(600)
def uses_csrf(request):
    return _body("uses_csrf", get_token(request))


@cached_view(600)
def cache_control(request):
    response = _body("cache_control")
    response["Cache-Control"] = request.GET["value"]
    return response


@cached_view(600)
def vary(request):
    response = _body("vary", request.headers.get("X-Flavour", "none"))
    response["Vary"] = request.GET["value"]
    return response


@cached_view(600)
def streaming(request):
    ran["streaming"] += 1
    return StreamingHttpResponse(iter([b"a", b"b"]))


@cached_view(600)
def template(request):
    ran["template"] += 1
    return TemplateResponse(request, "page.html", {"title": "rendered", "n": ran["template"]})


@cached_view(600)
def whoami(request):
    return _body("whoami", request.user.username or "anonymous")


@cached_view(600, per_user=True)
def whoami_per_user(request):
    return _body("whoami_per_user", request.user.username or "anonymous")


@cached_view(600)
def session_flavour(request):
    return _body("session_flavour", request.session.get("flavour", "none"))


@cached_view(600)
def language(request):
    return _body("language", translation.get_language())


@cached_view(600)
def host(request):
    return _body("host", request.get_host())


@cached_view(600, vary_on=["X-A", "X-B"])
def headers(request):
    return _body("headers", f"{request.headers.get('X-A')}|{request.headers.get('X-B')}")


@cached_view(600)
def faithful(request):
    response = HttpResponse("é".encode("latin-1"), content_type="text/plain; charset=latin-1", status=200)
    response["X-Custom"] = "kept"
    response["Content-Length"] = "1"
    ran["faithful"] += 1
    return response


@cached_view(600)
async def async_page(request):
    ran["async_page"] += 1
    return HttpResponse(f"async {ran['async_page']}")


@method_decorator(cached_view(600), name="get")
class ClassBased(View):
    def get(self, request):
        return _body("class_based")


class AsView(View):
    def get(self, request):
        return _body("as_view")


as_view_page = cached_view(600)(AsView.as_view())


@cached_view(600)
@vary_on_headers("X-Flavour")
def composed_vary(request):
    return _body("composed_vary", request.headers.get("X-Flavour", "none"))


@cached_view(600)
@never_cache
def composed_never(request):
    return _body("composed_never")


# --- what a startproject site has: sessions in the database, users, async views -------------


@cached_view(600)
async def async_whoami(request):
    user = await request.auser() if hasattr(request, "auser") else request.user
    ran["async_whoami"] += 1
    return HttpResponse(f"async_whoami {ran['async_whoami']} {user.username or 'anonymous'}")


@cached_view(600, per_user=True)
async def async_whoami_per_user(request):
    user = await request.auser() if hasattr(request, "auser") else request.user
    ran["async_whoami_per_user"] += 1
    return HttpResponse(
        f"async_whoami_per_user {ran['async_whoami_per_user']} {user.username or 'anonymous'}"
    )


def start_session(request):
    """Not cached: gives the visitor a session (and its cookie)."""
    request.session["flavour"] = request.GET.get("flavour", "mint")
    return HttpResponse("session started")


@cached_view(600)
def writes_session(request):
    request.session["visits"] = request.session.get("visits", 0) + 1
    return _body("writes_session", str(request.session["visits"]))


class AsyncClassBased(View):
    async def get(self, request):
        ran["async_class_based"] += 1
        return HttpResponse(f"async_class_based {ran['async_class_based']}")


async_as_view_page = cached_view(600)(AsyncClassBased.as_view())


@method_decorator(cached_view(600), name="get")
class AsyncMethodDecorated(View):
    async def get(self, request):
        ran["async_method_decorated"] += 1
        return HttpResponse(f"async_method_decorated {ran['async_method_decorated']}")
