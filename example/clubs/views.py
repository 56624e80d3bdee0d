from django.http import Http404
from django.shortcuts import render

from cachedcall import cached_view
from cachedcall import where
from clubs.models import Club
from clubs.models import ClubClass
from clubs.queries import CACHE_TIMEOUT
from clubs.queries import club_classes
from clubs.queries import find_club


def index(request):
    return render(request, "clubs/index.html", {"clubs": Club.objects.order_by("name")})


def page_dependencies(request, clubname):
    # find_club is itself cached: on a warm cache this costs a cache hit, not a query.
    club = find_club(clubname)
    return [Club] if club is None else [club, where(ClubClass, club=club)]


@cached_view(timeout=CACHE_TIMEOUT, depends_on=page_dependencies)
def club_page(request, clubname):
    club = find_club(clubname)
    if club is None:
        raise Http404("Could not find the club")
    classes = club_classes(club)
    return render(request, "clubs/club_page.html", {"club": club, "classes": classes})
