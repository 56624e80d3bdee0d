"""The settings the debug toolbar tests run under, on top of tests/settings.py.

Applied by tests/test_debug_toolbar.py only, with :func:`overridden`, so that the toolbar,
its middleware and its URLs never reach the rest of the suite.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.test import override_settings

from tests import settings as base

PANEL = "cachedcall.contrib.debug_toolbar.CachedCallPanel"

INSTALLED_APPS = [
    *base.INSTALLED_APPS,
    "django.contrib.staticfiles",
    "debug_toolbar",
    "cachedcall.contrib.debug_toolbar",
]
SETTINGS: dict[str, Any] = {
    "DEBUG": True,
    "INTERNAL_IPS": ["127.0.0.1"],
    "MIDDLEWARE": ["debug_toolbar.middleware.DebugToolbarMiddleware", *base.MIDDLEWARE],
    "ROOT_URLCONF": "tests.toolbar_urls",
    "STATIC_URL": "/static/",
    # The toolbar's templates and ours are found in their apps.
    "TEMPLATES": [{**base.TEMPLATES[0], "APP_DIRS": True}],
    # Panels that instrument only while a request runs: the CachePanel and the SQLPanel
    # patch Django's cache handler and connections for the rest of the process.
    "DEBUG_TOOLBAR_PANELS": [
        "debug_toolbar.panels.versions.VersionsPanel",
        "debug_toolbar.panels.timer.TimerPanel",
        "debug_toolbar.panels.headers.HeadersPanel",
        "debug_toolbar.panels.request.RequestPanel",
        "debug_toolbar.panels.templates.TemplatesPanel",
        PANEL,
    ],
    "DEBUG_TOOLBAR_CONFIG": {
        # Panels are fetched from the toolbar's store when opened, as in development.
        "RENDER_PANELS": False,
        # The toolbar refuses to run under tests unless told that this is intended.
        "IS_RUNNING_TESTS": False,
    },
    # The toolbar's app hides its migrations by writing into this dict: ours, not Django's
    # global default, which would keep the entry after the override.
    "MIGRATION_MODULES": {},
}


@contextmanager
def overridden() -> Iterator[None]:
    """The settings above, then the apps.

    override_settings installs apps, and runs their ready(), before it changes any other
    setting (a test class decorated with it too); the toolbar's ready() reads the panels,
    whose own ready() may patch Django for good (the CachePanel, the StaticFilesPanel), so
    the panels must be set first. And the toolbar's receiver of that change imports
    debug_toolbar.toolbar, which defines a model and so needs the app installed: the first
    time, nothing may have imported debug_toolbar.settings (which connects the receiver)
    yet. The test module therefore imports the panel inside its tests only.
    """
    if "debug_toolbar.settings" in sys.modules and "debug_toolbar.toolbar" not in sys.modules:
        raise RuntimeError(
            "debug_toolbar.settings was imported before the toolbar was ever installed, so "
            "its receiver of DEBUG_TOOLBAR_PANELS cannot import debug_toolbar.toolbar: import "
            "cachedcall.contrib.debug_toolbar and debug_toolbar inside the tests, under "
            "tests.toolbar_settings.overridden(), not at the top of a test module."
        )
    with override_settings(**SETTINGS), override_settings(INSTALLED_APPS=INSTALLED_APPS):
        yield
