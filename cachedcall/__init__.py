"""cachedcall: Django's cache framework behind one decorator.

Importing this package never touches ``django.conf.settings``.
"""

from __future__ import annotations

from cachedcall.backend import stats
from cachedcall.bumps import bump, reset
from cachedcall.decorators import cached
from cachedcall.exceptions import CachedCallError, InvalidDependency, InvalidOption, UnkeyableArgument
from cachedcall.protocols import Cached
from cachedcall.switch import disabled, enabled, is_enabled
from cachedcall.versions import where

__version__ = "0.1.0"

__all__ = [
    "Cached",
    "CachedCallError",
    "InvalidDependency",
    "InvalidOption",
    "UnkeyableArgument",
    "bump",
    "cached",
    "disabled",
    "enabled",
    "is_enabled",
    "reset",
    "stats",
    "where",
]
