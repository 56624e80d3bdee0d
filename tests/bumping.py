"""Threads calling a near-tier function while the main thread bumps: after each bump
returns, no call in this process may see an older value (tests/test_near.py and
tests/test_nearbatch.py, one call and a batch)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.core.cache import caches

import cachedcall
from cachedcall import conf
from tests.testapp.models import ClubClass


def marker_key() -> str:
    return conf.get().key_prefix + ":marker"


def hit_while_bumping(call: Callable[[], Any], seen: Callable[[], Any], expect: Callable[[int], Any]) -> None:
    """Run ``call`` in 4 threads while the main thread sets a marker and bumps ClubClass 30
    times; after each bump ``seen()`` must equal ``expect(marker)``; no thread may raise."""
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                call()
        except BaseException as exc:  # pragma: no cover - what the test looks for
            errors.append(exc)
        finally:
            caches.close_all()  # what request_finished does for a request thread

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for marker in range(30):
            caches["default"].set(marker_key(), marker)
            cachedcall.bump(ClubClass)
            # After the bump returned, no thread of this process is served an older value.
            assert seen() == expect(marker)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors
