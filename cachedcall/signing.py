"""Signed entries (``CACHEDCALL["SIGN"]``): nothing read from a shared cache is unpickled
before its HMAC is checked.

Whoever can write to a shared memcached or Redis can otherwise store a pickle whose
``__reduce__`` runs code in every process that reads it. A signed entry is bytes:
``MAGIC + HMAC-SHA256(key, cache key + body) + body``, where ``body`` is the pickled
envelope and ``key`` is derived from ``SECRET_KEY`` with a purpose salt (entries signed with
a key of ``SECRET_KEY_FALLBACKS`` still verify, so rotating the secret is not a cold cache).
The cache key is signed too, so a valid entry copied under another key does not verify.

Signing is only half of it: the backend must hand us the stored bytes without unpickling
them first. :mod:`cachedcall.fastpaths` reads raw bytes from memcached and Redis for that.

Process state: the keys derived from ``SECRET_KEY`` and its fallbacks (``_keys``), derived
again whenever those settings change, and dropped by :func:`forget`.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
from typing import Any

__all__: list[str] = []

MAGIC = b"ccS1"
_MAC = 32
_HEAD = len(MAGIC) + _MAC
_SALT = b"cachedcall.signing.entries"
_keys: tuple[tuple[str, ...], list[bytes]] | None = None


class BadSignature(ValueError):
    """An entry that is not signed, or not by us, or not for this key."""


def _derived() -> list[bytes]:
    global _keys
    from django.conf import settings

    secrets = (settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ()))
    held = _keys
    if held is None or held[0] != secrets:
        held = _keys = (secrets, [hashlib.sha256(_SALT + s.encode()).digest() for s in secrets])
    return held[1]


def seal(key: str, envelope: tuple[Any, ...]) -> bytes:
    """Return the signed, stored form of ``envelope`` under ``key``."""
    body = pickle.dumps(envelope, pickle.HIGHEST_PROTOCOL)
    mac = hmac.digest(_derived()[0], key.encode() + b"\x00" + body, "sha256")
    return MAGIC + mac + body


def unseal(key: str, stored: Any) -> tuple[Any, ...]:
    """Return the envelope of a signed entry; raise :class:`BadSignature` before unpickling
    anything that does not verify."""
    if type(stored) is not bytes or stored[: len(MAGIC)] != MAGIC:
        raise BadSignature("not a signed cachedcall entry")
    mac, body = stored[len(MAGIC) : _HEAD], stored[_HEAD:]
    message = key.encode() + b"\x00" + body
    for secret in _derived():
        if hmac.compare_digest(hmac.digest(secret, message, "sha256"), mac):
            envelope = pickle.loads(body)
            if type(envelope) is not tuple:
                raise BadSignature("a signed value that is not an envelope")
            return envelope
    raise BadSignature("the signature does not match (another SECRET_KEY, another key, or forged)")


def forget() -> None:
    """Drop the derived keys."""
    global _keys
    _keys = None
