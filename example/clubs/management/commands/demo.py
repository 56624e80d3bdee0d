"""``python example/manage.py demo``: the seed's story, measured.

It migrates, seeds two clubs, renders the chess club page a few times, edits one of its
classes, renders again, and prints what each render cost: cache hits and misses, database
queries and time.
"""

import datetime
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

import cachedcall
from cachedcall.testing import record
from clubs.models import Club
from clubs.models import ClubClass
from clubs.queries import club_classes
from clubs.queries import find_club
from clubs.views import club_page

CLASSES = {
    "chess": [("Openings", 18), ("Endgames", 19), ("Blitz night", 20)],
    "go": [("Joseki", 17), ("Life and death", 19)],
}


class Command(BaseCommand):
    help = "Seed the example database and show cachedcall serving and invalidating the club page."

    def handle(self, *args, **options):
        call_command("migrate", verbosity=0)
        self.seed()
        cachedcall.reset()  # start from a clean slate, whatever an earlier run left
        client = Client()
        backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
        self.stdout.write(f"cachedcall demo: cache {backend}, database {connection.vendor}")
        self.stdout.write(
            f"{'render':<7}{'path':<16}{'page':>6}{'fn hits':>9}{'fn misses':>11}"
            f"{'queries':>9}{'time':>11}  shows"
        )
        renders = [("chess", None)] * 3 + [("go", None)] * 2
        for n, (club, _) in enumerate(renders, 1):
            self.render(client, n, club, "Openings")
        openings = ClubClass.objects.get(club__name="chess", name="Openings")
        openings.name = "Openings in room 2"
        openings.save()
        self.stdout.write("edit:  ClubClass 'Openings' of chess renamed to 'Openings in room 2'")
        for n, club in enumerate(["chess", "chess", "go"], len(renders) + 1):
            self.render(client, n, club, "Openings in room 2")
        self.stdout.write(
            "\nA page's first render misses (the page and its two query functions: two queries); "
            "later renders are page\nhits with no query. The edit made only the chess page and "
            "classes stale: the next render shows the\nnew name (the club lookup stays a hit: one "
            "query, not two), and the go page stays a hit."
        )

    def seed(self):
        ClubClass.objects.all().delete()
        Club.objects.all().delete()
        for name, classes in CLASSES.items():
            club = Club.objects.create(name=name)
            ClubClass.objects.bulk_create(
                ClubClass(club=club, name=title, start_time=datetime.time(hour)) for title, hour in classes
            )

    def render(self, client, n, club, marker):
        path = f"/clubs/{club}/"
        with record() as events, CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(path)
            elapsed = time.perf_counter() - started
        assert response.status_code == 200, response.status_code
        shows = marker if marker in response.content.decode() else ""
        page = "hit" if events.hits(club_page) else "miss"
        fn_hits = events.hits(find_club) + events.hits(club_classes)
        fn_misses = events.misses(find_club) + events.misses(club_classes)
        self.stdout.write(
            f"{n:<7}{path:<16}{page:>6}{fn_hits:>9}{fn_misses:>11}{len(queries):>9}"
            f"{elapsed * 1000:>8.2f} ms  {shows}"
        )
