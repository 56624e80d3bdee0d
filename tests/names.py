"""Key names as the suite's process sees them: under the test namespace the pytest plugin
gives every test run (``cc.test``, ``cc.test.gw0`` under pytest-xdist)."""

from __future__ import annotations

from cachedcall import conf


def prefix() -> str:
    return conf.get().key_prefix


def key(name: str) -> str:
    """``key("v:testapp.club")`` -> ``"cc.test:v:testapp.club"``."""
    return f"{prefix()}:{name}"
