"""A django-debug-toolbar panel listing the request's decorated calls.

Add the panel and this app (for the panel's template) to the settings::

    INSTALLED_APPS = [..., "debug_toolbar", "cachedcall.contrib.debug_toolbar"]
    DEBUG_TOOLBAR_PANELS = [
        *debug_toolbar.settings.PANELS_DEFAULTS,
        "cachedcall.contrib.debug_toolbar.CachedCallPanel",
    ]

Each call of a function decorated with ``@cached`` or ``@cached_view`` made while the toolbar
handles the request is one row: the function, its outcome, the key, what it depends on and
the time it took; the side bar shows the totals ("12 calls, 9 hits").

Process state: none of its own (see :mod:`cachedcall.contrib.debug_toolbar.panel`).
"""

from __future__ import annotations

from cachedcall.contrib.debug_toolbar.panel import CachedCallPanel

__all__ = ["CachedCallPanel"]
