"""Counters in a cache alias: version counters (seeded at random, advanced by bumps) and
totals (:mod:`cachedcall.metrics`). Every operation fails open, as :mod:`cachedcall.backend`'s
do: a failure is counted (:mod:`cachedcall.health`) and reported as "not done".

``incr`` is atomic on every backend cachedcall accepts for counters (system check
``cachedcall.E005`` refuses the others). A value under a counter's key that is no integer
(planted, or someone else's) cannot be advanced: it is deleted and created again, which for
a version counter is a bump too (a fresh random value). django-redis is incremented through
its raw client (:func:`cachedcall.fastpaths.incrementer_for`): its own ``incr`` unpickles
such a value.

Process state: ``_incrementers`` (the increment chosen per backend class) and ``_FOREIGN``
(the exception classes of a refused increment), reset by :func:`forget`.
"""

from __future__ import annotations

import importlib
import secrets
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from django.core.cache.backends.base import BaseCache

from cachedcall import backend
from cachedcall import fastpaths
from cachedcall import health
from cachedcall.entry import MISSING

__all__: list[str] = []

# A version counter starts at a random value below 2**62: an evicted counter is re-created
# with a value never used before, so it cannot make an old entry valid again, and there is
# room for 2**62 increments before memcached's 64-bit or Redis's signed counters wrap.
_SEED_BITS = 62

_incrementers: dict[type, Any] = {}
_FOREIGN: tuple[type[BaseException], ...] | None = None


def seed(cache: BaseCache, alias: str, keys: Sequence[str], raw: bool = False) -> dict[str, int] | None:
    """Create missing counters with fresh random values and return the values now current.

    Returns ``None`` when a counter could not be created or read back (outage, or evicted
    at once): the caller must then not store, since it cannot stamp its entry.
    """
    values: dict[str, int] = {}
    raced: list[str] = []
    try:
        for key in keys:
            value = secrets.randbits(_SEED_BITS) + 1
            if cache.add(key, value, None):
                values[key] = value
            else:
                raced.append(key)
        if raced:
            reader = backend.reader(cache, raw)
            got = cache.get_many(raced) if reader is None else reader(cache, raced)
            if len(got) != len(raced):
                # add() said the counter exists, get() says it does not: the client is
                # answering defaults instead of raising (a node in pymemcache's retry window).
                raise ConnectionError("counter neither added nor readable")
            if any(type(value) is not int for value in got.values()):
                # Created meanwhile, and not a counter of ours (planted, or foreign: a raw read
                # hands it back undecoded): nothing can be stamped with it, and a signed entry
                # stamped with REFUSED would not even pickle. The next read drops and re-seeds it.
                return None
            values.update(got)
    except Exception as exc:
        health.failed(alias, "add", exc)
        return None
    return values


def _incrementer(cache: BaseCache) -> Any:
    incrementer = _incrementers.get(type(cache), MISSING)
    if incrementer is MISSING:
        incrementer = _incrementers[type(cache)] = fastpaths.incrementer_for(type(cache))
    return incrementer


def _foreign_value_errors() -> tuple[type[BaseException], ...]:
    """What a backend's ``incr`` raises when the server answered that the stored value is
    no integer (planted, or written by someone else): public exception classes of each
    client library that is installed; never what a lost connection raises."""
    global _FOREIGN
    if _FOREIGN is None:
        found: list[type[BaseException]] = [TypeError]  # LocMemCache: bytes + 1
        for module, name in (
            ("pymemcache.exceptions", "MemcacheClientError"),  # "non-numeric value"
            ("redis.exceptions", "ResponseError"),  # "value is not an integer"
            ("pylibmc", "ClientError"),
        ):
            try:
                found.append(getattr(importlib.import_module(module), name))
            except (ImportError, AttributeError):
                pass
        _FOREIGN = tuple(found)
    return _FOREIGN


def incr(cache: BaseCache, alias: str, key: str) -> bool:
    """Advance a version counter atomically, creating it if it is missing; return success.

    ``incr`` is atomic on every backend; a missing counter is created with ``add`` and a
    fresh random value, and if another process created it first we ``incr`` that one. A
    value there that is no integer (planted, or someone else's) cannot be advanced: it is
    deleted and re-seeded like a missing one, which is a bump too (a new random value).
    """
    return _increment(cache, alias, key, 1, lambda: secrets.randbits(_SEED_BITS) + 1, "incr")


def add_to(cache: BaseCache, alias: str, key: str, amount: int, operation: str = "incr") -> bool:
    """Add ``amount`` to the counter ``key``, creating it at ``amount`` (a total, not a
    version: no random seed); return success. A value there that is no integer is replaced.
    A failure is counted against ``alias`` as ``operation``."""
    return _increment(cache, alias, key, amount, lambda: amount, operation)


def _increment(
    cache: BaseCache, alias: str, key: str, amount: int, created: Callable[[], int], operation: str
) -> bool:
    try:
        incrementer = _incrementer(cache)
        for _ in range(3):
            try:
                value = cache.incr(key, amount) if incrementer is None else incrementer(cache, key, amount)
            except ValueError:
                pass  # missing (every Django backend says so this way)
            except _foreign_value_errors():
                cache.delete(key)
            else:
                # pymemcache's HashClient answers False instead of raising while it retries
                # a failing node, django-redis ignoring errors None: that is not an increment.
                if type(value) is not int:
                    raise ConnectionError(f"incr answered {value!r}")
                return True
            if cache.add(key, created(), None):
                return True
        raise ConnectionError(f"counter {key!r} kept disappearing")
    except Exception as exc:
        health.failed(alias, operation, exc)
        return False


def forget() -> None:
    """Forget the increments chosen per backend class."""
    _incrementers.clear()
