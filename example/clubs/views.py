from django.http import Http404
from django.shortcuts import render

from clubs.models import Club
from clubs.queries import club_classes
from clubs.queries import find_club


def index(request):
    return render(request, "clubs/index.html", {"clubs": Club.objects.order_by("name")})


def club_page(request, clubname):
    club = find_club(clubname)
    if club is None:
        raise Http404("Could not find the club")
    classes = club_classes(club)
    return render(request, "clubs/club_page.html", {"club": club, "classes": classes})
