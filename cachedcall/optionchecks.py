"""The checks of the decorator options in :mod:`cachedcall.options`: each returns the value to
use or raises :class:`~cachedcall.exceptions.InvalidOption` naming the option, where it was
given and the fix.

Process state: none.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from cachedcall import conf
from cachedcall.exceptions import InvalidOption

__all__: list[str] = []

Check = Callable[[Any, Any], Any]  # (value, where: str or what renders it)


def fail(where: str, message: str) -> InvalidOption:
    return InvalidOption(f"{where}: {message}")


def flag(name: str, extra: str = "", optional: bool = False) -> Check:
    def check(value: Any, where: str) -> Any:
        if not isinstance(value, bool) and not (optional and value is None):
            raise fail(where, f"{name} must be True or False{extra}, not {value!r}.")
        return value

    return check


def seconds(name: str, minimum: float) -> Check:
    def check(value: Any, where: str) -> float:
        if isinstance(value, datetime.timedelta):
            value = value.total_seconds()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
            raise fail(where, f"{name} must be a number of seconds >= {minimum}, not {value!r}.")
        return value

    return check


def timeout(value: Any, where: str) -> Any:
    return conf.check_timeout(value, where, InvalidOption)


def cache(value: Any, where: str) -> Any:
    if value is not None and (not isinstance(value, str) or not value):
        raise fail(where, f"cache must name an alias of settings.CACHES, not {value!r}.")
    return value


def key(value: Any, where: str) -> Any:
    if value is None or callable(value):
        return value
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, Sequence)
        or not all(isinstance(k, str) for k in value)
    ):
        raise fail(
            where,
            f"key must be a callable receiving the call's arguments or a list of parameter names, "
            f"not {value!r}.",
        )
    return tuple(value)


def prefix(value: Any, where: str) -> Any:
    if not isinstance(value, str) or not value:
        raise fail(where, f"prefix must be a non-empty string, not {value!r}.")
    return value


def version(value: Any, where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise fail(where, f"version must be an int or a string, not {value!r}.")
    return value


def unless(value: Any, where: str) -> Any:
    if value is not None and not callable(value):
        raise fail(where, f"unless must be a callable receiving the result, not {value!r}.")
    return value


def depends_on(value: Any, where: str) -> Any:
    if value is None or (callable(value) and not isinstance(value, type)):
        return value
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        raise fail(
            where,
            "depends_on must be a list of models, instances and where(...) scopes, or a callable "
            f"receiving the call's arguments and returning one; not {value!r}.",
        )
    return list(value)


def lock_ttl(value: Any, where: str) -> int:
    # memcached counts TTLs in whole seconds and reads anything below 1 as "expire now".
    whole: float = seconds("lock_ttl", 1)(value, where)
    return math.ceil(whole)


def early(value: Any, where: str) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise fail(
            where,
            "early must be XFetch's beta, a number > 0 (1 is the usual choice; larger refreshes "
            f"earlier), not {value!r}.",
        )
    return float(value)


def vary_on(value: Any, where: str) -> frozenset[str]:
    if isinstance(value, str) or not all(isinstance(h, str) and h for h in value):
        raise fail(where, f"vary_on must be a list of header names, not {value!r}.")
    return frozenset(h.lower() for h in value)


def statuses(value: Any, where: str) -> frozenset[int]:
    if isinstance(value, int) or not all(
        isinstance(s, int) and not isinstance(s, bool) and 100 <= s < 600 for s in value
    ):
        raise fail(where, f"statuses must be a list of HTTP status codes, not {value!r}.")
    return frozenset(value)
