"""What an attacker plants in a shared cache: a pickle whose loading runs code.

Unpickling a :class:`Planted` appends to :data:`ran` (it could as well call ``os.system``);
a test that finds :data:`ran` empty after reading planted bytes proves nothing ran.

:data:`PAYLOADS` are the bytes an attacker with network access to memcached or Redis can
store under a key of ours, with the memcached flags they would set (pymemcache and pylibmc
share them: 1 is "unpickle me", 2 and 4 "an integer", 8 "zlib", 16 "text"); :func:`plant`
writes one the way such an attacker would, with a raw client and ``noreply=False`` (Redis
has no flags: the bytes are the value). The backends at the end fail or race on purpose,
each around a real Django backend and a real server.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
import zlib
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.memcached import BaseMemcachedCache
from django.core.cache.backends.memcached import PyLibMCCache
from django.core.cache.backends.memcached import PyMemcacheCache
from django.core.cache.backends.redis import RedisCache
from django_redis.cache import RedisCache as DjangoRedisCache

ran: list[str] = []


def record(what: str) -> str:
    ran.append(what)
    return what


class Planted:
    """What an attacker stores: unpickling it calls record (it could call os.system)."""

    def __reduce__(self):
        return (record, ("planted pickle executed",))


# --- the payloads ------------------------------------------------------------------------------

FLAG_BYTES, FLAG_PICKLE, FLAG_INTEGER, FLAG_LONG, FLAG_ZLIB, FLAG_TEXT = 0, 1, 2, 4, 8, 16
PICKLE = pickle.dumps(Planted(), pickle.HIGHEST_PROTOCOL)


def _signed_elsewhere(key: str) -> bytes:
    # A well-formed signed entry, but under a secret that is not ours: what an attacker who
    # read the format (cachedcall.signing) but not SECRET_KEY can make. Its body runs code.
    from cachedcall import signing

    secret = hashlib.sha256(b"cachedcall.signing.entries" + b"an attacker's guess").digest()
    mac = hmac.digest(secret, key.encode() + b"\x00" + PICKLE, "sha256")
    return signing.MAGIC + mac + PICKLE


def _forged(key: str) -> bytes:
    from cachedcall import signing

    return signing.MAGIC + b"\x00" * 32 + PICKLE


class Payload(NamedTuple):
    """Planted bytes, built for the key they are planted under, with their memcached flags."""

    name: str
    build: Callable[[str], bytes]
    flags: int


def _constant(data: bytes) -> Callable[[str], bytes]:
    return lambda key: data


#: Under an entry key: code to run, or a signature that must not verify.
ENTRY_PAYLOADS = [
    Payload("pickle", _constant(PICKLE), FLAG_PICKLE),
    Payload("pickle-as-bytes", _constant(PICKLE), FLAG_BYTES),
    Payload("zlib-pickle", _constant(zlib.compress(PICKLE)), FLAG_PICKLE | FLAG_ZLIB),
    Payload("forged-signature", _forged, FLAG_BYTES),
    Payload("signed-with-another-secret", _signed_elsewhere, FLAG_BYTES),
    Payload("foreign-text", _constant(b"someone else's value"), FLAG_TEXT),
]
#: Under a counter or generation key: code to run, or something that is no integer of ours.
COUNTER_PAYLOADS = [
    Payload("pickle", _constant(PICKLE), FLAG_PICKLE),
    Payload("not-an-integer", _constant(b"not-an-integer"), FLAG_INTEGER),
    Payload("not-a-long", _constant(b"12 monkeys"), FLAG_LONG),
    Payload("garbage-bytes", _constant(b"\x80\x05garbage"), FLAG_BYTES),
]
#: Under a lock key (only ever added and deleted, never read): code to run.
LOCK_PAYLOAD = Payload("pickle", _constant(PICKLE), FLAG_PICKLE)


# --- planting ----------------------------------------------------------------------------------


def server_of(cache: BaseCache) -> str:
    """``"memcached"``, ``"redis"`` or ``"local"``: what holds ``cache``'s data."""
    if isinstance(cache, BaseMemcachedCache):
        return "memcached"
    if isinstance(cache, RedisCache | DjangoRedisCache):
        return "redis"
    return "local"


def _first_location(alias: str) -> str:
    # memcached: "127.0.0.1:<port>" (the first node of a list); Redis: "redis://...".
    from django.conf import settings

    location = settings.CACHES[alias]["LOCATION"]
    return str(location[0] if isinstance(location, list | tuple) else location)


def plant(key: str, payload: Payload, alias: str = "default") -> None:
    """Store ``payload`` under ``key`` (as given to Django's cache API) the way someone with
    network access to the server could: past Django and cachedcall, with a raw client."""
    cache = caches[alias]
    made = cache.make_key(key)
    data = payload.build(key)
    where = server_of(cache)
    if where == "memcached":
        from pymemcache.client.base import Client

        host, port = _first_location(alias).rsplit(":", 1)
        client = Client((host, int(port)))
        try:
            assert client.set(made, data, noreply=False, flags=payload.flags)
        finally:
            client.close()
    elif where == "redis":
        import redis

        client = redis.Redis.from_url(_first_location(alias))
        try:
            client.set(made, data)
        finally:
            client.close()
    else:
        # In this process: nobody else can plant there, so the stored value is the bytes.
        cache.set(key, data)


# --- backends that fail or race on purpose ----------------------------------------------------


class _DecodeFails:
    """``get_many`` reads from the server as its parent does, then raises what a client that
    could not decode the reply raises: the read must then fail, never go key by key through
    Django's ``get()`` (which unpickles)."""

    def get_many(self, keys: Sequence[str], version: int | None = None) -> dict[str, Any]:
        super().get_many(keys, version=version)  # type: ignore[misc]
        raise ValueError("tests.planted: the reply did not decode")


class DecodeFailingPyMemcacheCache(_DecodeFails, PyMemcacheCache):
    pass


class DecodeFailingPyLibMCCache(_DecodeFails, PyLibMCCache):
    pass


class DecodeFailingLocMemCache(_DecodeFails, LocMemCache):
    pass


#: key -> what an attacker plants under it just before this process's next ``add`` of it
#: (the race between a read that found a counter missing and the ``add`` that re-seeds it).
race: dict[str, Payload] = {}


class _Racing:
    """``add`` loses a race to an attacker: :data:`race` says what appears under the key
    (on the real server of the ``"default"`` alias) just before the add reaches it."""

    def add(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        payload = race.pop(key, None)
        if payload is not None:
            plant(key, payload)
        return bool(super().add(key, value, timeout, version))  # type: ignore[misc]


class RacingPyMemcacheCache(_Racing, PyMemcacheCache):
    pass


class RacingPyLibMCCache(_Racing, PyLibMCCache):
    pass


class RacingRedisCache(_Racing, RedisCache):
    pass


class RacingDjangoRedisCache(_Racing, DjangoRedisCache):
    pass
