"""Real Django cache backends that also count the calls made to them (round trips).

They talk to the real server exactly as their parents do; the counts are the only addition.
"""

from __future__ import annotations

import threading
from collections import Counter

from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.memcached import PyLibMCCache
from django.core.cache.backends.memcached import PyMemcacheCache
from django.core.cache.backends.redis import RedisCache
from django_redis.cache import RedisCache as DjangoRedisCache

calls: Counter[str] = Counter()
__all__ = ["Counter", "calls"]
OPERATIONS = ("get", "get_many", "set", "set_many", "add", "incr", "delete", "delete_many")


_depth = threading.local()


def _counting(cls):
    # Only the outermost call counts: LocMemCache.get_many, for one, calls self.get per key,
    # which is not another round trip.
    namespace = {}
    for name in OPERATIONS:

        def method(self, *args, _name=name, **kwargs):
            depth = getattr(_depth, "n", 0)
            if depth == 0:
                calls[_name] += 1
            _depth.n = depth + 1
            try:
                return getattr(super(counted, self), _name)(*args, **kwargs)
            finally:
                _depth.n = depth

        namespace[name] = method
    counted = type(f"Counting{cls.__name__}", (cls,), namespace)
    return counted


CountingLocMemCache = _counting(LocMemCache)
CountingPyMemcacheCache = _counting(PyMemcacheCache)
CountingRedisCache = _counting(RedisCache)
CountingDjangoRedisCache = _counting(DjangoRedisCache)
CountingPyLibMCCache = _counting(PyLibMCCache)
BACKENDS = {
    "locmem": "tests.counting.CountingLocMemCache",
    "memcached": "tests.counting.CountingPyMemcacheCache",
    "redis": "tests.counting.CountingRedisCache",
    "django-redis": "tests.counting.CountingDjangoRedisCache",
    "pylibmc": "tests.counting.CountingPyLibMCCache",
}


def round_trips() -> int:
    return sum(calls.values())
