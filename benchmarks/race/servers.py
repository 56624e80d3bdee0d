"""memcached and Redis for one scenario, on free loopback ports: the suite's own servers
(``tests/servers.py``, which needs no pytest outside a test run), plus the layouts only
the harness uses.

Process state: none; each :class:`Server` owns its process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The repository's root, for tests/servers.py (the harness runs as benchmarks/race.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.servers import Server
from tests.servers import memcached
from tests.servers import memcached_config
from tests.servers import redis
from tests.servers import redis_config

__all__ = [
    "DUMMY",
    "LOCMEM",
    "Server",
    "memcached",
    "memcached_config",
    "redis",
    "redis_config",
    "small_memcached",
]


def small_memcached() -> Server:
    """A memcached of 1 MB (items up to 512 KB): everything stored competes for it."""
    args = ["-l", "127.0.0.1", "-p", "{port}", "-U", "0", "-m", "1", "-I", "512k", "-t", "2"]
    if os.geteuid() == 0:
        args += ["-u", "root"]
    return Server("memcached", args)


LOCMEM = {
    "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
    "LOCATION": "race",
    # Django's default of 300 entries would cull counters after a few hundred bumps.
    "OPTIONS": {"MAX_ENTRIES": 100_000},
}
DUMMY = {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}
