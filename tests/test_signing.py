"""Signed entries: nothing read from the cache is unpickled before its HMAC verifies."""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections import Counter

import pytest
from django.core.cache import caches
from django.test import override_settings

from cachedcall import cached
from cachedcall import health
from cachedcall import signing
from cachedcall import stats
from cachedcall.checks import check_settings
from tests import names
from tests.planted import Planted
from tests.planted import ran

pytestmark = pytest.mark.usefixtures("backend_name")
calls: Counter[str] = Counter()


@cached(timeout=60)
def profile(n):
    calls["profile"] += 1
    return {"n": n}


@cached(timeout=60)
async def aprofile(n):
    calls["aprofile"] += 1
    return {"n": n}


@pytest.fixture(autouse=True)
def signed():
    calls.clear()
    ran.clear()
    health.bad_signatures.clear()
    with override_settings(CACHEDCALL={"SIGN": True}):
        yield


# The backends under test by the server they talk to: pymemcache and pylibmc read and write
# the same memcached items (same flags), Django's RedisCache and django-redis the same keys.
MEMCACHED = {"memcached", "pylibmc"}
REDIS = {"redis", "django-redis"}


def _location():
    # "127.0.0.1:<port>" for memcached, "redis://127.0.0.1:<port>/0" for Redis.
    from django.conf import settings

    return settings.CACHES["default"]["LOCATION"]


def _raw_get(name, key):
    """The bytes the server holds under ``key`` (as given to Django's cache API)."""
    cache = caches["default"]
    made = cache.make_key(key)
    if name in MEMCACHED:
        from pymemcache.client.base import Client

        client = Client(_location())
        try:
            return client.get(made)
        finally:
            client.close()
    if name in REDIS:
        import redis

        client = redis.Redis.from_url(_location())
        try:
            return client.get(made)
        finally:
            client.close()
    return cache.get(key)


def _plant(name, key, data, pickle_flag=True, flags=None):
    """Store ``data`` under ``key`` the way someone with network access to the server could.

    :param flags: memcached's flags for the item (default: 1, the pickle flag of pymemcache
        and pylibmc, or 0).
    """
    cache = caches["default"]
    made = cache.make_key(key)
    if name in MEMCACHED:
        from pymemcache.client.base import Client

        client = Client(_location())
        try:
            # flags 1: FLAG_PICKLE, which both clients unpickle on read.
            flags = (1 if pickle_flag else 0) if flags is None else flags
            assert client.set(made, data, noreply=False, flags=flags)
        finally:
            client.close()
    elif name in REDIS:
        import redis

        client = redis.Redis.from_url(_location())
        try:
            client.set(made, data)
        finally:
            client.close()
    else:
        cache.set(key, data)  # in-process: the stored value is the bytes themselves


def test_the_planted_pickle_is_one_the_backends_own_reads_would_unpickle(backend_name):
    # What the tests below plant is what the client unpickles when read through Django's API,
    # so that "never unpickled" is a claim about a real attack on each backend.
    _plant(backend_name, "cc:planted", pickle.dumps(Planted()))
    caches["default"].get("cc:planted")
    # LocMemCache: what this process stores there are the bytes themselves (nobody else
    # can reach it), so Django hands them back as bytes.
    assert ran == ([] if backend_name == "locmem" else ["planted pickle executed"])


def test_signed_entries_round_trip_and_are_stored_as_signed_bytes(backend_name):
    assert profile(1) == {"n": 1}
    assert profile(1) == {"n": 1}
    assert calls["profile"] == 1
    stored = _raw_get(backend_name, profile.key(1))
    assert stored.startswith(signing.MAGIC)
    assert signing.unseal(profile.key(1), stored)[1] is not None


def test_async_functions_store_and_read_signed_entries(backend_name):
    async def twice():
        return [await aprofile(2), await aprofile(2)]

    assert asyncio.run(twice()) == [{"n": 2}, {"n": 2}]
    caches.close_all()
    assert calls["aprofile"] == 1
    assert _raw_get(backend_name, aprofile.key(2)).startswith(signing.MAGIC)


@pytest.mark.parametrize("forge", ["bare pickle", "forged signature"])
def test_a_planted_pickle_is_never_unpickled_and_is_a_logged_counted_miss(backend_name, forge, caplog):
    caplog.set_level(logging.ERROR, logger="cachedcall")
    payload = pickle.dumps(Planted())
    if forge == "forged signature":
        payload = signing.MAGIC + b"\x00" * 32 + payload
    assert profile(1) == {"n": 1}
    _plant(backend_name, profile.key(1), payload)
    assert profile(1) == {"n": 1}
    assert ran == []
    assert calls["profile"] == 2
    assert stats()["bad_signatures"] == {"default": 1}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "signature" in errors[0].getMessage()
    assert profile(1) == {"n": 1}  # the planted entry was replaced by a signed one
    assert calls["profile"] == 2 and ran == []


def test_a_planted_pickle_under_a_version_counter_is_never_unpickled(backend_name):
    assert profile(1) == {"n": 1}
    generation = names.key("G")
    _plant(backend_name, generation, pickle.dumps(Planted()))
    assert profile(1) == {"n": 1}
    assert profile(1) == {"n": 1}
    assert ran == []
    assert calls["profile"] == 2  # the foreign counter was dropped and re-seeded: one miss
    assert isinstance(caches["default"].get(generation), int)


def test_a_non_integer_counter_next_to_a_planted_entry_never_opens_a_path_to_unpickling(backend_name, caplog):
    # memcached: flags 2 (pymemcache's FLAG_INTEGER) on bytes that are no integer made the raw
    # read raise, and the one-by-one fallback read every key through Django's get(), which
    # unpickled the entry planted beside it.
    assert profile(1) == {"n": 1}
    _plant(backend_name, names.key("G"), b"not-an-integer", flags=2)
    _plant(backend_name, profile.key(1), pickle.dumps(Planted()))
    for _ in range(3):
        assert profile(1) == {"n": 1}
    assert ran == []


def test_a_valid_entry_copied_under_another_key_does_not_verify(backend_name):
    assert profile(1) == {"n": 1}
    _plant(backend_name, profile.key(2), _raw_get(backend_name, profile.key(1)), pickle_flag=False)
    assert profile(2) == {"n": 2}
    assert stats()["bad_signatures"] == {"default": 1}


def test_entries_signed_with_a_fallback_secret_still_verify(backend_name):
    assert profile(1) == {"n": 1}
    with override_settings(SECRET_KEY="rotated", SECRET_KEY_FALLBACKS=["cachedcall-tests"]):
        assert profile(1) == {"n": 1}
        assert calls["profile"] == 1
    with override_settings(SECRET_KEY="stolen-secret-is-not-ours"):
        assert profile(1) == {"n": 1}
        assert calls["profile"] == 2


@pytest.mark.parametrize(
    "backend_path",
    ["django.core.cache.backends.db.DatabaseCache", "django.core.cache.backends.filebased.FileBasedCache"],
)
def test_signing_with_a_backend_that_unpickles_first_is_a_system_check_error(backend_path):
    with override_settings(CACHES={"default": {"BACKEND": backend_path, "LOCATION": "x"}}):
        messages = check_settings()
    # E005 too: the counters live beside the entries there (tests/test_checks.py).
    assert sorted(
        m.id for m in messages if m.id.startswith("cachedcall.E00") and m.id != "cachedcall.E001"
    ) == [
        "cachedcall.E003",
        "cachedcall.E005",
    ]
    (e003,) = [m for m in messages if m.id == "cachedcall.E003"]
    assert "unpickles what it reads before cachedcall can check a signature" in e003.msg
    assert "PyLibMCCache" in e003.hint and "django-redis" in e003.hint


def test_signing_is_accepted_for_the_backend_under_test():
    assert [m.id for m in check_settings() if m.id == "cachedcall.E003"] == []
