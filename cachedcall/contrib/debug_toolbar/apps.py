"""The app that makes the panel's template findable; it has no models and no receivers.

Process state: none.
"""

from __future__ import annotations

from django.apps import AppConfig

__all__: list[str] = []


class CachedCallDebugToolbarConfig(AppConfig):
    name = "cachedcall.contrib.debug_toolbar"
    # Not the default "debug_toolbar": that is the toolbar's own app's label.
    label = "cachedcall_debug_toolbar"
    verbose_name = "cachedcall debug toolbar panel"
