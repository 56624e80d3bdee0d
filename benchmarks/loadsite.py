"""The example project as the load test serves it: settings, a stale-page detector, the
hand-written view, and the writer process.

Settings module: ``benchmarks.loadsite`` (it imports the example's settings and overrides).
The load test (``benchmarks/load.py``) passes the servers through the environment.
"""

from __future__ import annotations

import os
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "example")]

from clubsite.settings import *  # noqa: E402,F403

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "benchmarks.loadurls"
MIDDLEWARE = ["benchmarks.loadsite.StaleCheck"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("LOAD_DB", "cachedcall_load"),
        "HOST": "127.0.0.1",
        "USER": "postgres",
        "CONN_MAX_AGE": 60,
    }
}
# The recommended production shape: entries in a memcached pool, counters in Redis.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": os.environ.get("LOAD_MEMCACHED", "127.0.0.1:11211").split(","),
        "OPTIONS": {
            "connect_timeout": 0.2,
            "timeout": 0.2,
            "retry_attempts": 0,
            "dead_timeout": 2,
            "use_pooling": True,
        },
    },
    "versions": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"redis://{os.environ.get('LOAD_REDIS', '127.0.0.1:6379')}/0",
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    },
}
CACHEDCALL = {"VERSIONS_CACHE": "versions"}
LOGGING = {"version": 1, "disable_existing_loggers": False}

SEQ = re.compile(rb"#(\d+)")


def _side() -> Any:
    # The load test's own bookkeeping (last committed write per club, stale pages): Redis db 1.
    import redis

    return redis.Redis.from_url(f"redis://{os.environ.get('LOAD_REDIS', '127.0.0.1:6379')}/1")


class StaleCheck:
    """Counts pages older than the last write to their club committed before the request began.

    The writer records ``committed:<club> = seq`` after each commit (so a request that
    starts right after a commit may be judged against the write before it: never a false
    alarm). A page shows each class name with the ``#seq`` of its last edit; its newest is
    the club's last write it reflects.
    """

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        self.side = _side()

    def __call__(self, request: Any) -> Any:
        club = request.path.rstrip("/").rsplit("/", 1)[-1]
        committed = int(self.side.get(f"committed:{club}") or 0)
        response = self.get_response(request)
        if response.status_code == 200:
            shown = max((int(s) for s in SEQ.findall(response.content)), default=0)
            if shown < committed:
                self.side.incr("stale")
        return response


def hand_page(request: Any, clubname: str) -> Any:
    """The seed's hand-written pattern, keyed per club (fairer than the seed's one key)."""
    from clubs.models import Club
    from clubs.models import ClubClass
    from django.core.cache import cache
    from django.shortcuts import render

    key = f"hand_club_page:{clubname}"
    found = cache.get(key)
    if found is None:
        club = Club.objects.get(name=clubname)
        found = (club, list(ClubClass.objects.filter(club=club).order_by("start_time")))
        cache.set(key, found, 60)
    club, classes = found
    return render(request, "clubs/club_page.html", {"club": club, "classes": classes})


def seed(clubs: int, classes: int) -> None:
    import datetime

    from clubs.models import Club
    from clubs.models import ClubClass

    for c in range(clubs):
        club = Club.objects.create(name=f"club-{c}")
        ClubClass.objects.bulk_create(
            ClubClass(club=club, name=f"Class {k} #0", start_time=datetime.time(8 + k % 12, 0))
            for k in range(classes)
        )


def writer(interval: float) -> None:
    """Edit one class at a time until killed; record each commit for StaleCheck."""
    from clubs.models import ClubClass
    from django.db import transaction

    side = _side()
    rows = list(ClubClass.objects.values_list("pk", "club__name"))
    seq = int(side.get("seq") or 0)
    while True:
        seq += 1
        pk, club = random.choice(rows)
        with transaction.atomic():
            row = ClubClass.objects.select_for_update().get(pk=pk)
            row.name = re.sub(r"#\d+", f"#{seq}", row.name)
            row.save(update_fields=["name"])
        # After the atomic block: committed, and its versions bumped (on_commit).
        side.set(f"committed:{club}", seq)
        side.set("seq", seq)
        time.sleep(interval)


if __name__ == "__main__":
    import django

    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.loadsite"
    django.setup()
    if sys.argv[1] == "seed":
        seed(int(sys.argv[2]), int(sys.argv[3]))
    elif sys.argv[1] == "writer":
        writer(float(sys.argv[2]))
