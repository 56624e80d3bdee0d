"""What differs between backends, for real.

DatabaseCache (on the suite's PostgreSQL) and FileBasedCache (in a temporary folder) cannot
hold cachedcall's version counters: they lose bumps that race, which is what system check
``cachedcall.E005`` says (tests/test_checks.py). The same race on memcached and Redis
advances exactly (tests/test_versions.py, per backend).

memcached's item size is refused differently by its two clients (pymemcache raises the
server's "object too large", pylibmc a ``TooBig`` without a message): on both it is no outage.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.db import connections
from django.test import override_settings

from cachedcall import bump
from cachedcall import cached
from cachedcall import conf
from cachedcall import stats
from cachedcall.versions import dependency_keys
from tests import servers
from tests.testapp.models import Club

THREADS = 10
BUMPS = 50
TABLE = "cachedcall_counters"


class CacheTableOnPg:
    """Puts DatabaseCache's table on the PostgreSQL test database (the sqlite one lives in
    memory, where concurrent writers fail with "table is locked" rather than race)."""

    def db_for_read(self, model, **hints):
        return "pg" if model._meta.app_label == "django_cache" else None

    db_for_write = db_for_read


@pytest.fixture
def database_cache():
    config = {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": TABLE}
    with override_settings(DATABASE_ROUTERS=[CacheTableOnPg()], CACHES={"counters": config}):
        call_command("createcachetable", TABLE, database="pg", verbosity=0)
        yield config
    with connections["pg"].cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")


@pytest.fixture
def file_cache(tmp_path):
    return {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(tmp_path / "counters"),
    }


def _race(counters):
    """Bump ``Club`` THREADS x BUMPS times at once, with the counters in ``counters``;
    return how far its table counter advanced."""
    caches_ = {"default": dict(servers.LOCMEM), "counters": counters}
    with override_settings(CACHES=caches_, CACHEDCALL={"VERSIONS_CACHE": "counters"}):
        (key,) = dependency_keys([Club], conf.get().key_prefix, "the race")
        bump(Club)  # creates the counters: what follows are increments only
        before = caches["counters"].get(key)
        barrier = threading.Barrier(THREADS)

        def bumper():
            barrier.wait()
            try:
                for _ in range(BUMPS):
                    bump(Club)
            finally:
                # What request_finished does in a request thread.
                connections.close_all()
                caches.close_all()

        threads = [threading.Thread(target=bumper) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        after = caches["counters"].get(key)
        # Every bump was done, none failed: what is missing was lost, not refused.
        assert stats()["bump_failures"] == {} and stats()["errors"] == {}
        return after - before


@pytest.mark.django_db(transaction=True, databases=["default", "pg"])
def test_a_database_cache_loses_bumps_that_race(database_cache):
    advanced = _race(database_cache)
    assert 0 < advanced < THREADS * BUMPS


@pytest.mark.django_db(transaction=True, databases=["default", "pg"])
def test_a_file_cache_loses_bumps_that_race(file_cache):
    advanced = _race(file_cache)
    assert 0 < advanced < THREADS * BUMPS


calls: Counter[str] = Counter()


@cached(timeout=60)
def anything(value):
    calls["anything"] += 1
    return value


@pytest.mark.parametrize(
    "make", [servers.memcached_config, servers.pylibmc_config], ids=["memcached", "pylibmc"]
)
def test_a_value_over_memcached_item_size_is_no_outage_on_either_client(
    make, memcached_server, cachedcall_log
):
    big = b"x" * (2 * 1024 * 1024)
    with override_settings(CACHES={"default": make(memcached_server)}):
        caches["default"].clear()
        for _ in range(3):
            assert anything(big) == big
        assert calls["anything"] == 3
        assert stats()["too_large"] == {"default": 3}
        assert stats()["errors"] == {} and stats()["down"] == []
        (warning,) = [r for r in cachedcall_log.records if r.levelno >= logging.INFO]
        assert "refused for its size" in warning.getMessage()
        assert anything(1) == 1 and anything(1) == 1
        assert calls["anything"] == 4  # small values still cache
        caches["default"].close()
