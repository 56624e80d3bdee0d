from asgiref.sync import sync_to_async
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


@cached_view(timeout=CACHE_TIMEOUT, per_user=True, depends_on=[Club])
async def my_page(request):
    """An async page behind the default middleware: each logged-in user gets a page of
    their own (``per_user``), anonymous visitors share one; the user comes from
    ``await request.auser()``, never from the synchronous ORM in the event loop."""
    auser = getattr(request, "auser", None)  # Django 5.0+
    user = await auser() if auser is not None else await sync_to_async(lambda: request.user)()
    clubs = [club.name async for club in Club.objects.order_by("name")]
    name = user.get_username() if user.is_authenticated else "visitor"
    return render(request, "clubs/my_page.html", {"name": name, "clubs": clubs})
