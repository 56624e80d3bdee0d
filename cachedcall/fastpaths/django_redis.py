"""The raw reads, writes and increments on django-redis (``django_redis.cache.RedisCache``).

django-redis's ``get_many`` is already one ``MGET`` on a client it keeps, so plain reads
and writes use it as it is. But its ``decode`` unpickles every value that is not an
integer, and its ``encode`` pickles the signed bytes, so a signed cache goes around both
with the ``redis.Redis`` that django-redis hands out for raw access
(``DefaultClient.get_client``, what ``django_redis.get_redis_connection`` returns): an
``MGET`` whose values come back as stored (ints, and bytes), and a ``SET`` of the signed
bytes as they are. Counters need nothing: django-redis stores ints as Redis integers, not
pickled, so that ``INCRBY`` works, and ``add`` goes through django-redis as usual; but its
``incr`` unpickles a stored value that ``INCRBY`` refuses (code, if it was planted), so
every cache on django-redis, signed or not, increments with :func:`raw_incr`.

That is only the same data as django-redis's own operations when the client class stores
values the way ``DefaultClient`` does, on the server ``get_client`` names:
``DefaultClient`` itself and ``SentinelClient`` (which only connects differently). Other
client classes (``HerdClient`` packs values, ``ShardClient`` spreads keys over servers
``get_client`` does not know) are refused at the first signed read or write.

Process state: ``_stock`` (per client class, whether it keeps ``DefaultClient``'s way of
storing), filled at a class's first signed read or write.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.exceptions import ImproperlyConfigured
from django_redis.cache import RedisCache  # type: ignore[import-untyped]
from django_redis.client import DefaultClient  # type: ignore[import-untyped]

from cachedcall.fastpaths import raw_value

__all__: list[str] = []

#: The members of django-redis the raw paths use.
REQUIRES: dict[str, tuple[tuple[type, str], ...]] = {
    "django_redis.raw": (
        (RedisCache, "client"),
        (DefaultClient, "get_client"),
    ),
}
SPECIMENS: dict[type, Callable[[], object]] = {}

# The DefaultClient methods that decide where and how a value is stored: a client class
# that overrides none of them stores what the raw paths read and write.
_STORING = ("get_client", "get_many", "set", "add", "incr", "encode", "decode", "make_key")
_stock: dict[type, bool] = {}


def raw_read(cache: Any, keys: Sequence[str]) -> dict[str, Any]:
    """An ``MGET`` with nothing unpickled: ints, and bytes as stored."""
    client = _raw_client(cache, write=False)
    values = client.mget([cache.make_key(key) for key in keys])
    return {key: raw_value(value) for key, value in zip(keys, values, strict=True) if value is not None}


def raw_write(cache: Any, key: str, value: Any, timeout: Any) -> None:
    """django-redis's ``set`` of signed bytes, stored as they are (it would pickle them)."""
    made = cache.make_key(key)
    client = _raw_client(cache, write=True)
    if timeout is DEFAULT_TIMEOUT:
        timeout = cache.default_timeout
    # As DefaultClient.set: milliseconds, and a timeout that is not in the future deletes.
    if timeout is None:
        client.set(made, value)
    elif int(timeout * 1000) <= 0:
        client.delete(made)
    else:
        client.set(made, value, px=int(timeout * 1000))


# As DefaultClient._incr, without its fallback: on a value INCRBY refuses it unpickles what
# is stored (code, if someone planted a pickle) to add 1 in Python.
_INCR = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], ARGV[1]) end
return false
"""


def raw_incr(cache: Any, key: str, delta: int = 1) -> int:
    """django-redis's ``incr`` with nothing unpickled: ``ValueError`` for a missing key, and
    Redis's own ``ResponseError`` for a value that is no integer."""
    client = _raw_client(cache, write=True)
    value = client.eval(_INCR, 1, cache.make_key(key), delta)
    if value is None or value is False:
        raise ValueError(f"{key!r} is not in the cache")
    return int(value)


def stores_like_default_client(cls: type) -> bool:
    """Whether the django-redis client class ``cls`` stores values where and as
    ``DefaultClient`` does (so that the raw paths read and write the same data).

    :param cls: the class of ``OPTIONS['CLIENT_CLASS']``.
    """
    stock = _stock.get(cls)
    if stock is None:
        stock = _stock[cls] = all(
            getattr(cls, name, None) is getattr(DefaultClient, name) for name in _STORING
        )
    return stock


def _raw_client(cache: Any, write: bool) -> Any:
    client = cache.client
    cls = type(client)
    if not stores_like_default_client(cls):
        raise ImproperlyConfigured(
            f"cachedcall: CACHEDCALL['SIGN'] on django-redis needs OPTIONS['CLIENT_CLASS'] "
            f"DefaultClient or SentinelClient, not {cls.__module__}.{cls.__qualname__}, whose "
            "values cachedcall cannot read without unpickling them; calls run uncached."
        )
    return client.get_client(write=write)
