"""Every decorator option, once: its name, default, check, error message and documentation.

``@cached`` and ``@cached_view`` check their options here, their docstrings' ``:param:``
lists and the README's option tables are rendered from :data:`OPTIONS`, and the test suite
checks that the typed ``@overload`` signatures list the same names in the same order.

Process state: none.
"""

from __future__ import annotations

import difflib
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cachedcall import optionchecks
from cachedcall.entry import MISSING
from cachedcall.exceptions import InvalidOption

__all__: list[str] = []

Check = optionchecks.Check


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


OPTIONS: tuple[Option, ...] = (
    Option(
        "timeout",
        optionchecks.timeout,
        MISSING,
        '``CACHEDCALL["TIMEOUT"]``',
        "Seconds (``int``, ``float`` or ``timedelta``). ``None`` never expires, ``0`` does not "
        'store, as in Django. Unset: ``CACHEDCALL["TIMEOUT"]``, else the alias\'s own ``TIMEOUT``.',
    ),
    Option(
        "cache",
        optionchecks.cache,
        None,
        '``CACHEDCALL["CACHE"]``',
        "The alias in ``settings.CACHES`` (named as in ``cache_page``); unset: "
        '``CACHEDCALL["CACHE"]``, else ``"default"``.',
    ),
    Option(
        "key",
        optionchecks.key,
        None,
        "all arguments",
        'What to key on instead of all arguments: a list of parameter names (``key=["club"]``) '
        "or a callable receiving the call's arguments and returning the key material.",
        view=False,
    ),
    Option(
        "prefix",
        optionchecks.prefix,
        MISSING,
        "``module.qualname``",
        "The function's namespace. Two functions with one prefix share entries.",
    ),
    Option(
        "version",
        optionchecks.version,
        1,
        "``1``",
        "Change it when the function's meaning changes; entries of other versions are never read.",
    ),
    Option(
        "unless",
        optionchecks.unless,
        None,
        "``None``",
        'A callable receiving the result; true means "do not store this one" '
        "(``unless=lambda r: r is None``).",
        view=False,
    ),
    Option(
        "depends_on",
        optionchecks.depends_on,
        None,
        "``None``",
        "Models, rows and ``where(...)`` scopes (or a callable receiving the call's arguments and "
        "returning them) whose changes make an entry stale: see :ref:`model-versions`.",
    ),
    Option(
        "vary_on",
        optionchecks.vary_on,
        frozenset(),
        "``()``",
        "Request headers to key on from the start, besides those learned from responses' ``Vary``.",
        function=False,
    ),
    Option(
        "per_user",
        optionchecks.flag("per_user"),
        False,
        "``False``",
        "Cache pages of authenticated users too, keyed by user and session auth hash (otherwise "
        "their requests bypass the cache).",
        function=False,
    ),
    Option(
        "statuses",
        optionchecks.statuses,
        frozenset({200}),
        "``(200,)``",
        "The status codes of responses to store.",
        function=False,
    ),
    Option(
        "single_flight",
        optionchecks.flag("single_flight"),
        True,
        "``True``",
        "Concurrent misses of one key in one process (threads, or tasks of one event loop) "
        "compute once; the others wait (10 s at most) and get its value or its exception.",
    ),
    Option(
        "lock",
        optionchecks.flag("lock", " (default CACHEDCALL['LOCK'])", optional=True),
        None,
        '``CACHEDCALL["LOCK"]``',
        "One computation per key across processes, through a lock beside the entry (``add`` "
        "with a TTL); costs a miss two round trips.",
    ),
    Option(
        "lock_ttl",
        optionchecks.lock_ttl,
        30,
        "30 s",
        "A lock ends by itself after this (whole seconds, at least 1): a holder that dies "
        "blocks nobody longer.",
    ),
    Option(
        "lock_wait",
        optionchecks.seconds("lock_wait", 0),
        10,
        "10 s",
        "Others poll for the entry (5 ms, growing x1.5 to 100 ms, jittered) at most this long, "
        "then compute themselves.",
    ),
    Option(
        "near",
        optionchecks.flag("near", " (default CACHEDCALL['NEAR'])", optional=True),
        None,
        '``CACHEDCALL["NEAR"]``',
        "Keep hot entries in this process's memory too: on Redis a hit then makes no round "
        "trip (the server pushes every change), on memcached it reads the counters only. "
        "See :ref:`near-tier`.",
    ),
    Option(
        "copy",
        optionchecks.flag("copy"),
        True,
        "``True``",
        "``False``: near hits share one decoded value instead of unpickling a copy per "
        "caller; only for results nobody mutates.",
        view=False,
    ),
    Option(
        "stale",
        optionchecks.seconds("stale", 0),
        0,
        "0",
        "For this many seconds after the timeout, one caller recomputes while the others get "
        "the old value at once.",
    ),
    Option(
        "soft",
        optionchecks.flag("soft"),
        False,
        "``False``",
        "A model version bump, too, serves the old value while one caller recomputes "
        "(``reset()``, ``invalidate_all()`` and a lost counter stay hard).",
    ),
    Option(
        "early",
        optionchecks.early,
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
