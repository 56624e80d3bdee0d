"""cachedcall: Django's cache framework behind one decorator.

Importing this package never touches ``django.conf.settings``.
"""

from __future__ import annotations

from cachedcall.bumps import bump
from cachedcall.bumps import reset
from cachedcall.decorators import cached
from cachedcall.events import Event
from cachedcall.events import Subscription
from cachedcall.events import subscribe
from cachedcall.exceptions import CachedCallError
from cachedcall.exceptions import InvalidDependency
from cachedcall.exceptions import InvalidOption
from cachedcall.exceptions import UnkeyableArgument
from cachedcall.health import stats
from cachedcall.managers import CachedCallManager
from cachedcall.managers import CachedCallQuerySet
from cachedcall.protocols import Cached
from cachedcall.switch import disabled
from cachedcall.switch import enabled
from cachedcall.switch import is_enabled
from cachedcall.versions import where
from cachedcall.views import cached_view

__version__ = "0.2.0"

__all__ = [
    "Cached",
    "CachedCallError",
    "CachedCallManager",
    "CachedCallQuerySet",
    "Event",
    "InvalidDependency",
    "InvalidOption",
    "Subscription",
    "UnkeyableArgument",
    "bump",
    "cached",
    "cached_view",
    "disabled",
    "enabled",
    "is_enabled",
    "reset",
    "stats",
    "subscribe",
    "where",
]
