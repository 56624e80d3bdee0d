"""The seed's queries, cached the way the seed wanted them cached.

The hand-written version keyed every club on one string and never invalidated; here the key
is the club, and the entry goes stale the moment one of that club's classes changes.
"""

from cachedcall import cached
from cachedcall import where
from clubs.models import Club
from clubs.models import ClubClass

CACHE_TIMEOUT = 3600


@cached(timeout=CACHE_TIMEOUT, depends_on=lambda clubname: [Club])
def find_club(clubname):
    """Return the club named ``clubname``, or ``None``."""
    return Club.objects.filter(name=clubname).first()


@cached(timeout=CACHE_TIMEOUT, depends_on=lambda club: [club, where(ClubClass, club=club)])
def club_classes(club):
    """Return the classes of ``club`` ordered by start time."""
    return list(ClubClass.objects.filter(club=club).order_by("start_time"))
