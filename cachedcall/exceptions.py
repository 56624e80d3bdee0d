"""The exceptions cachedcall raises.

Every class derives from :class:`CachedCallError` and from the builtin it refines, so code
that already catches ``TypeError`` or ``ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "CachedCallError",
    "InvalidDependency",
    "InvalidOption",
    "UnkeyableArgument",
]


class CachedCallError(Exception):
    """Base class of every error cachedcall raises on purpose."""


class InvalidOption(CachedCallError, TypeError, ValueError):
    """A decorator option has a wrong type or value (raised at decoration time)."""


class UnkeyableArgument(CachedCallError, TypeError):
    """An argument of a decorated call cannot be turned into a cache key."""


class InvalidDependency(CachedCallError, ValueError):
    """An item of ``depends_on`` (or of :func:`cachedcall.bump`) names no model, row or scope."""
