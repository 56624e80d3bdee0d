"""Django settings of a race process, read from the JSON file named by ``RACE_CONFIG``.

The harness writes one file per process (see :func:`benchmarks.race.harness.process_spec`);
its ``"settings"`` object says which database, which caches, which ``CACHEDCALL``, whether
reads go to the replica and at which isolation level transactions run. Without
``RACE_CONFIG`` (``makemigrations``), a local PostgreSQL database ``cachedcall_race``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

_spec: dict[str, Any] = (
    json.loads(Path(os.environ["RACE_CONFIG"]).read_text()) if os.environ.get("RACE_CONFIG") else {}
)
_config: dict[str, Any] = _spec.get("settings", {})


def _database(name: str) -> dict[str, Any]:
    database: dict[str, Any] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "USER": os.environ.get("PGUSER", "postgres"),
    }
    if _config.get("isolation") == "repeatable_read":
        import psycopg

        # The readers of the repeatable-read scenario: every transaction of theirs keeps the
        # snapshot of its first statement.
        database["OPTIONS"] = {"isolation_level": psycopg.IsolationLevel.REPEATABLE_READ}
    return database


SECRET_KEY = "cachedcall-race"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = ["cachedcall", "benchmarks.race.app"]
DATABASES = {"default": _database(_config.get("db", "cachedcall_race"))}
if _config.get("replica_db"):
    DATABASES["replica"] = _database(_config["replica_db"])
if _config.get("router"):
    DATABASE_ROUTERS = ["benchmarks.race.router.ReplicaRouter"]
CACHES = _config.get("caches") or {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "race"}
}
CACHEDCALL = _config.get("cachedcall", {})
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"cachedcall": {"handlers": ["stderr"], "level": "INFO", "propagate": False}},
}
