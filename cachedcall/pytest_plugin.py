"""The pytest plugin (entry point ``pytest11``): a namespace of its own, a clean slate,
fixtures and a marker.

A test run is a process of its own with a database of its own; its cache entries are too:
the plugin appends ``.test`` to ``CACHEDCALL["KEY_PREFIX"]`` (``.test.gw0``, ... under
pytest-xdist), so a run never reads what the development server wrote, and nothing it
writes, bumps or resets is seen outside test runs. It resets that namespace once at the
start of the session. Inert in projects where Django is not configured; Django is
imported lazily.

Process state: none of its own (it sets :mod:`cachedcall.conf`'s namespace suffix).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

__all__: list[str] = []

_MARKER_HELP = (
    "cachedcall(enabled=True, isolated=False): switch cachedcall on or off for this test, and "
    "with isolated=True give it an empty cachedcall namespace."
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cachedcall")
    group.addoption(
        "--cachedcall-disable",
        action="store_true",
        default=False,
        help="Run the whole session with cachedcall switched off (decorated functions run uncached).",
    )
    group.addoption(
        "--cachedcall-no-reset",
        action="store_true",
        default=False,
        help="Do not call cachedcall.reset() at the start of the session.",
    )
    parser.addini(
        "cachedcall_namespace",
        default="test",
        help="What test runs append to CACHEDCALL['KEY_PREFIX'] (default 'test'; empty: nothing).",
    )
    parser.addini(
        "cachedcall_reset",
        type="bool",
        default=True,
        help="Call cachedcall.reset() at the start of the session (default true).",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _MARKER_HELP)
    # Each xdist worker gets a namespace of its own too: one worker's reset or isolated test
    # never touches another worker's entries or counters.
    parts = [config.getini("cachedcall_namespace"), os.environ.get("PYTEST_XDIST_WORKER", "")]
    suffix = ".".join(part for part in parts if part)
    if suffix:
        from cachedcall import conf

        conf.set_namespace_suffix(suffix)


def _django_ready() -> bool:
    try:
        from django.apps import apps
        from django.conf import settings
    except ImportError:  # pragma: no cover - cachedcall requires Django
        return False
    return bool(settings.configured) and apps.ready


@pytest.fixture(scope="session", autouse=True)
def _cachedcall_session(request: pytest.FixtureRequest) -> Iterator[None]:
    config = request.config
    forced_off = config.getoption("--cachedcall-disable")
    saved: Any = None
    if forced_off:
        from cachedcall import switch

        saved = switch.force(False)
    wants_reset = config.getini("cachedcall_reset") and not config.getoption("--cachedcall-no-reset")
    if wants_reset and _django_ready():
        from cachedcall import reset

        reset()
    yield
    if forced_off:
        from cachedcall import switch

        switch.force(saved)


@pytest.fixture(autouse=True)
def _cachedcall_marker(request: pytest.FixtureRequest) -> Iterator[None]:
    marker = request.node.get_closest_marker("cachedcall")
    if marker is None:
        yield
        return
    if marker.args or set(marker.kwargs) - {"enabled", "isolated"}:
        raise pytest.UsageError(f"{request.node.nodeid}: wrong arguments to the marker; use {_MARKER_HELP}")
    enabled = marker.kwargs.get("enabled", True)
    isolate = marker.kwargs.get("isolated", False)
    if not isinstance(enabled, bool) or not isinstance(isolate, bool):
        raise pytest.UsageError(
            f"{request.node.nodeid}: cachedcall(enabled=..., isolated=...) take True or False, "
            f"not {enabled!r}, {isolate!r}."
        )
    from cachedcall import disabled
    from cachedcall import enabled as switch_on
    from cachedcall.testing import isolated

    with switch_on() if enabled else disabled():
        if isolate:
            with isolated():
                yield
        else:
            yield


@pytest.fixture
def cachedcall_disabled() -> Iterator[None]:
    """Decorated functions run uncached during this test."""
    from cachedcall import disabled

    with disabled():
        yield


@pytest.fixture
def cachedcall_enabled() -> Iterator[None]:
    """Caching is on during this test, whatever the settings or ``--cachedcall-disable``."""
    from cachedcall import enabled

    with enabled():
        yield


@pytest.fixture
def cachedcall_isolated() -> Iterator[None]:
    """This test sees an empty cachedcall namespace and leaves nothing visible after it."""
    from cachedcall.testing import isolated

    with isolated():
        yield


@pytest.fixture
def cachedcall_events() -> Iterator[Any]:
    """The :class:`cachedcall.testing.Events` recorded during this test."""
    from cachedcall.testing import record

    with record() as events:
        yield events
