"""Views of the debug toolbar tests: pages that call decorated functions, and a cached view."""

from __future__ import annotations

from django.http import HttpRequest
from django.http import HttpResponse
from django.shortcuts import render

from cachedcall import cached
from cachedcall import cached_view
from cachedcall import where
from tests.testapp.models import Club
from tests.testapp.models import ClubClass


@cached(timeout=600, depends_on=[Club])
def club_names() -> list[str]:
    return ["chess", "go"]


@cached(timeout=600, depends_on=lambda club_id: [where(ClubClass, club=club_id)])
def class_names(club_id: int) -> list[str]:
    return [f"openings {club_id}", f"endgames {club_id}"]


@cached(timeout=600, depends_on=lambda club_id: [where(ClubClass, club=club_id)])
async def aclass_names(club_id: int) -> list[str]:
    return [f"openings {club_id}"]


@cached(timeout=600)
def week_label(week: str) -> str:
    return f"week {week}"


def dashboard(request: HttpRequest) -> HttpResponse:
    """Not cached itself: four calls, one of them made twice."""
    club_id = int(request.GET.get("club", "1"))
    context = {
        "title": "Dashboard",
        "clubs": club_names(),
        "classes": class_names(club_id),
        "again": class_names(club_id),
        "week": week_label(request.GET.get("week", "1")),
    }
    return render(request, "toolbar/page.html", context)


async def async_dashboard(request: HttpRequest) -> HttpResponse:
    classes = await aclass_names(int(request.GET.get("club", "1")))
    return HttpResponse(f"<html><body><p>{', '.join(classes)}</p></body></html>")


@cached_view(600, depends_on=lambda request, club_id: [where(ClubClass, club=club_id)])
def club_page(request: HttpRequest, club_id: int) -> HttpResponse:
    return render(request, "toolbar/page.html", {"title": f"Club {club_id}", "classes": class_names(club_id)})
