"""Every decorator option, once: its name, default, check, error message and documentation.

``@cached`` and ``@cached_view`` check their options here, their docstrings' ``:param:``
lists and the README's option tables are rendered from :data:`OPTIONS`, and the test suite
checks that the typed ``@overload`` signatures list the same names in the same order.

Process state: none.
"""

from __future__ import annotations

import datetime
import difflib
import math
import textwrap
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cachedcall import conf
from cachedcall.entry import MISSING
from cachedcall.exceptions import InvalidOption

__all__: list[str] = []

Check = Callable[[Any, Any], Any]  # (value, where: str or what renders it)


@dataclass(frozen=True)
class Option:
    """One decorator option.

    :param check: ``check(value, where)`` returns the value to use or raises
        :class:`InvalidOption` with ``where`` (``"cached(timeout=-5) on app.f"``) first.
    :param default: what applies when the option is not given; ``MISSING`` when that is
        decided later (from the settings, or from the function).
    :param shown: how the default reads in the documentation.
    """

    name: str
    check: Check
    default: Any
    shown: str
    doc: str
    function: bool = True
    view: bool = True


def _fail(where: str, message: str) -> InvalidOption:
    return InvalidOption(f"{where}: {message}")


def _flag(name: str, extra: str = "", optional: bool = False) -> Check:
    def check(value: Any, where: str) -> Any:
        if not isinstance(value, bool) and not (optional and value is None):
            raise _fail(where, f"{name} must be True or False{extra}, not {value!r}.")
        return value

    return check


def _seconds(name: str, minimum: float) -> Check:
    def check(value: Any, where: str) -> float:
        if isinstance(value, datetime.timedelta):
            value = value.total_seconds()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
            raise _fail(where, f"{name} must be a number of seconds >= {minimum}, not {value!r}.")
        return value

    return check


def _timeout(value: Any, where: str) -> Any:
    return conf.check_timeout(value, where, InvalidOption)


def _cache(value: Any, where: str) -> Any:
    if value is not None and (not isinstance(value, str) or not value):
        raise _fail(where, f"cache must name an alias of settings.CACHES, not {value!r}.")
    return value


def _key(value: Any, where: str) -> Any:
    if value is None or callable(value):
        return value
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, Sequence)
        or not all(isinstance(k, str) for k in value)
    ):
        raise _fail(
            where,
            f"key must be a callable receiving the call's arguments or a list of parameter names, "
            f"not {value!r}.",
        )
    return tuple(value)


def _prefix(value: Any, where: str) -> Any:
    if not isinstance(value, str) or not value:
        raise _fail(where, f"prefix must be a non-empty string, not {value!r}.")
    return value


def _version(value: Any, where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _fail(where, f"version must be an int or a string, not {value!r}.")
    return value


def _unless(value: Any, where: str) -> Any:
    if value is not None and not callable(value):
        raise _fail(where, f"unless must be a callable receiving the result, not {value!r}.")
    return value


def _depends_on(value: Any, where: str) -> Any:
    if value is None or (callable(value) and not isinstance(value, type)):
        return value
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        raise _fail(
            where,
            "depends_on must be a list of models, instances and where(...) scopes, or a callable "
            f"receiving the call's arguments and returning one; not {value!r}.",
        )
    return list(value)


def _lock_ttl(value: Any, where: str) -> int:
    # memcached counts TTLs in whole seconds and reads anything below 1 as "expire now".
    seconds: float = _seconds("lock_ttl", 1)(value, where)
    return math.ceil(seconds)


def _early(value: Any, where: str) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise _fail(
            where,
            "early must be XFetch's beta, a number > 0 (1 is the usual choice; larger refreshes "
            f"earlier), not {value!r}.",
        )
    return float(value)


def _vary_on(value: Any, where: str) -> frozenset[str]:
    if isinstance(value, str) or not all(isinstance(h, str) and h for h in value):
        raise _fail(where, f"vary_on must be a list of header names, not {value!r}.")
    return frozenset(h.lower() for h in value)


def _statuses(value: Any, where: str) -> frozenset[int]:
    if isinstance(value, int) or not all(
        isinstance(s, int) and not isinstance(s, bool) and 100 <= s < 600 for s in value
    ):
        raise _fail(where, f"statuses must be a list of HTTP status codes, not {value!r}.")
    return frozenset(value)


OPTIONS: tuple[Option, ...] = (
    Option(
        "timeout",
        _timeout,
        MISSING,
        '``CACHEDCALL["TIMEOUT"]``',
        "Seconds (``int``, ``float`` or ``timedelta``). ``None`` never expires, ``0`` does not "
        'store, as in Django. Unset: ``CACHEDCALL["TIMEOUT"]``, else the alias\'s own ``TIMEOUT``.',
    ),
    Option(
        "cache",
        _cache,
        None,
        '``CACHEDCALL["CACHE"]``',
        "The alias in ``settings.CACHES`` (named as in ``cache_page``); unset: "
        '``CACHEDCALL["CACHE"]``, else ``"default"``.',
    ),
    Option(
        "key",
        _key,
        None,
        "all arguments",
        'What to key on instead of all arguments: a list of parameter names (``key=["club"]``) '
        "or a callable receiving the call's arguments and returning the key material.",
        view=False,
    ),
    Option(
        "prefix",
        _prefix,
        MISSING,
        "``module.qualname``",
        "The function's namespace. Two functions with one prefix share entries.",
    ),
    Option(
        "version",
        _version,
        1,
        "``1``",
        "Change it when the function's meaning changes; entries of other versions are never read.",
    ),
    Option(
        "unless",
        _unless,
        None,
        "``None``",
        'A callable receiving the result; true means "do not store this one" '
        "(``unless=lambda r: r is None``).",
        view=False,
    ),
    Option(
        "depends_on",
        _depends_on,
        None,
        "``None``",
        "Models, rows and ``where(...)`` scopes (or a callable receiving the call's arguments and "
        "returning them) whose changes make an entry stale: see :ref:`model-versions`.",
    ),
    Option(
        "vary_on",
        _vary_on,
        frozenset(),
        "``()``",
        "Request headers to key on from the start, besides those learned from responses' ``Vary``.",
        function=False,
    ),
    Option(
        "per_user",
        _flag("per_user"),
        False,
        "``False``",
        "Cache pages of authenticated users too, keyed by user and session auth hash (otherwise "
        "their requests bypass the cache).",
        function=False,
    ),
    Option(
        "statuses",
        _statuses,
        frozenset({200}),
        "``(200,)``",
        "The status codes of responses to store.",
        function=False,
    ),
    Option(
        "single_flight",
        _flag("single_flight"),
        True,
        "``True``",
        "Concurrent misses of one key in one process (threads, or tasks of one event loop) "
        "compute once; the others wait (10 s at most) and get its value or its exception.",
    ),
    Option(
        "lock",
        _flag("lock", " (default CACHEDCALL['LOCK'])", optional=True),
        None,
        '``CACHEDCALL["LOCK"]``',
        "One computation per key across processes, through a lock beside the entry (``add`` "
        "with a TTL); costs a miss two round trips.",
    ),
    Option(
        "lock_ttl",
        _lock_ttl,
        30,
        "30 s",
        "A lock ends by itself after this (whole seconds, at least 1): a holder that dies "
        "blocks nobody longer.",
    ),
    Option(
        "lock_wait",
        _seconds("lock_wait", 0),
        10,
        "10 s",
        "Others poll for the entry (5 ms, growing x1.5 to 100 ms, jittered) at most this long, "
        "then compute themselves.",
    ),
    Option(
        "near",
        _flag("near", " (default CACHEDCALL['NEAR'])", optional=True),
        None,
        '``CACHEDCALL["NEAR"]``',
        "Keep hot entries in this process's memory too: on Redis a hit then makes no round "
        "trip (the server pushes every change), on memcached it reads the counters only. "
        "See :ref:`near-tier`.",
    ),
    Option(
        "copy",
        _flag("copy"),
        True,
        "``True``",
        "``False``: near hits share one decoded value instead of unpickling a copy per "
        "caller; only for results nobody mutates.",
        view=False,
    ),
    Option(
        "stale",
        _seconds("stale", 0),
        0,
        "0",
        "For this many seconds after the timeout, one caller recomputes while the others get "
        "the old value at once.",
    ),
    Option(
        "soft",
        _flag("soft"),
        False,
        "``False``",
        "A model version bump, too, serves the old value while one caller recomputes "
        "(``reset()``, ``invalidate_all()`` and a lost counter stay hard).",
    ),
    Option(
        "early",
        _early,
        None,
        "off",
        "XFetch's beta (e.g. ``1.0``): refresh a fresh entry early with probability "
        "``exp(-remaining / (beta * delta))``, ``delta`` being the computation time.",
    ),
)

BY_NAME = {option.name: option for option in OPTIONS}
FUNCTION = tuple(o.name for o in OPTIONS if o.function)
VIEW = tuple(o.name for o in OPTIONS if o.view)


def split_call(
    decorator: str, args: tuple[Any, ...], options: dict[str, Any], known: Sequence[str]
) -> tuple[Any, dict[str, Any]]:
    """Check a decorator's call; return ``(the function of the bare form or None, options)``.

    Values are checked later, by :func:`resolve`, when the function (and so the name to put
    in a message) is known: still at decoration time.
    """
    unknown = sorted(set(options) - set(known))
    if unknown:
        hints = [difflib.get_close_matches(option, known, 1) for option in unknown]
        hint = "; ".join(f"did you mean {h[0]!r}?" for h in hints if h)
        raise InvalidOption(
            f"{decorator}() got unknown option(s) {', '.join(map(repr, unknown))}; "
            f"the options are {', '.join(known)}. {hint}".rstrip()
        )
    if len(args) > 1:
        raise InvalidOption(f"{decorator}() takes at most one positional argument, the timeout.")
    if args:
        first = args[0]
        if callable(first) or isinstance(first, (classmethod, staticmethod)):
            if options:
                raise InvalidOption(
                    f"{decorator}(func, ...): pass options as @{decorator}(timeout=..., ...)."
                )
            return first, {}
        if "timeout" in options:
            raise InvalidOption(f"{decorator}() got the timeout both as an argument and as timeout=.")
        options["timeout"] = first
    return None, options


def resolve(decorator: str, function: str, given: dict[str, Any], known: Sequence[str]) -> dict[str, Any]:
    """Check every given option of ``decorator`` on ``function``; return all of ``known``,
    defaults filled in (``MISSING`` where the default is decided later)."""
    resolved: dict[str, Any] = {}
    for name in known:
        option = BY_NAME[name]
        if name in given:
            resolved[name] = option.check(given[name], _Where(decorator, name, given[name], function))
        else:
            resolved[name] = option.default
    if "timeout" in resolved and resolved["timeout"] is None and (resolved["stale"] or resolved["early"]):
        raise InvalidOption(
            f"{decorator}(...) on {function}: stale= and early= need entries that expire; "
            "timeout=None never does. Give a timeout in seconds."
        )
    return resolved


class _Where:
    """``"cached(timeout=-5) on app.f"``, rendered only for a message: the repr of a value
    can cost (a QuerySet's runs a query), and most checks pass."""

    __slots__ = ("decorator", "function", "name", "value")

    def __init__(self, decorator: str, name: str, value: Any, function: str) -> None:
        self.decorator, self.name, self.value, self.function = decorator, name, value, function

    def __str__(self) -> str:
        return f"{self.decorator}({self.name}={self.value!r}) on {self.function}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


# --- documentation --------------------------------------------------------------------------


def params(known: Sequence[str]) -> str:
    """The ``:param:`` list of a decorator's docstring."""
    lines = []
    for name in known:
        option = BY_NAME[name]
        text = f":param {name}: {option.doc} Default: {option.shown}."
        lines.extend(textwrap.wrap(text, 88, subsequent_indent="    "))
    return "\n".join(lines)


def table(known: Sequence[str]) -> str:
    """The README's reST table of a decorator's options."""
    width = 62
    first = max(len(f"``{n}``") for n in known)
    second = max(len(BY_NAME[n].shown) for n in known)
    rule = f"{'=' * first} {'=' * second} {'=' * width}"
    rows = [rule, f"{'Option':<{first}} {'Default':<{second}} What it does", rule]
    for name in known:
        option = BY_NAME[name]
        wrapped = textwrap.wrap(option.doc, width) or [""]
        rows.append(f"{f'``{name}``':<{first}} {option.shown:<{second}} {wrapped[0]}")
        rows.extend(f"{'':<{first}} {'':<{second}} {line}" for line in wrapped[1:])
    rows.append(rule)
    return "\n".join(rows)
