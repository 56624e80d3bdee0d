"""What a decorated function is: learned from it and from the installation.

Its default prefix (unique also for lambdas and closures), whether calling it returns an
awaitable, what its timeout means on its backend, and the checks made at decoration and
on the first call (the app installed, static dependencies that name real models).

Process state: ``_serial``, the count of closures over values with no stable key, which
makes each of their prefixes unique in this process (never reset: a reset could make a new
closure's prefix that of an old one whose entries still live).
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import secrets
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from cachedcall import aliases
from cachedcall import conf
from cachedcall.keys import digest
from cachedcall.versions import dependency_keys

__all__: list[str] = []

#: memcached reads an expiry above 30 days as a Unix time; Django adds the clock to such a
#: timeout, and 10**10 + now overflows memcached's 32-bit expiry field (never stored).
MEMCACHED_MAX_TIMEOUT = 30 * 24 * 3600


def backend_seconds(timeout: Any, alias: str) -> Any:
    """A timeout that means the same on every backend: whole seconds, rounded up (memcached
    and Redis count whole seconds, and Django truncates 0.5 to 0, "do not store"), and at
    most 30 days on memcached (longer is capped to what it can hold, relative)."""
    if timeout is None or timeout == 0:
        return timeout
    seconds = math.ceil(timeout)
    from django.core.cache.backends.memcached import BaseMemcachedCache

    if seconds > MEMCACHED_MAX_TIMEOUT and isinstance(aliases.lookup(alias), BaseMemcachedCache):
        return MEMCACHED_MAX_TIMEOUT
    return seconds


def default_prefix(func: Any, name: str) -> str:
    """``module.qualname``, made unique where that name is not: two lambdas of one module
    share ``<lambda>``, and the closures one factory makes share their qualname.

    A lambda adds where it is and what it does (line and a digest of its code); a closure
    adds the values it closes over, encoded like arguments, so ``power(2)`` and ``power(3)``
    get entries of their own, and a function or class it closes over by its own default
    prefix. All of that is stable across processes. A value with no stable key (a lock, a
    client object) makes the prefix unique to this decoration in this process: such
    closures never share entries, not even with their twin in another process (pass
    ``prefix=`` to share them).
    """
    return _prefix(func, name, depth=0)


_SALT = secrets.token_hex(4)
_serial = itertools.count()


def _prefix(func: Any, name: str, depth: int) -> str:
    code = getattr(func, "__code__", None)
    if code is None:
        return name
    parts = [name]
    if "<lambda>" in name:
        parts.append(f"{code.co_firstlineno}:{digest(code.co_code.hex() + repr(code.co_consts))}")
    cells = getattr(func, "__closure__", None) or ()
    if cells and "<locals>" in name:
        from cachedcall.keys import encode

        for cell in cells:
            try:
                parts.append(encode(cell.cell_contents))
            except Exception:  # an empty cell, or a value with no stable key
                parts.append(_cell_name(cell, depth))
    return "\x00".join(parts)


def _cell_name(cell: Any, depth: int) -> str:
    try:
        value = cell.cell_contents
    except ValueError:  # empty: the closure refers to itself, or to a name bound later
        return "-"
    qualname = getattr(value, "__qualname__", None)
    module = getattr(value, "__module__", None)
    if isinstance(qualname, str) and isinstance(module, str) and depth < 3:
        # A function (itself perhaps a lambda or a closure) or a class: named as we would
        # name it if it were decorated.
        return "f" + _prefix(value, f"{module}.{qualname}", depth + 1)
    return f"?{_SALT}.{next(_serial)}"


def is_async(func: Any) -> bool:
    """Whether calling ``func`` returns an awaitable: also through ``functools.partial`` and
    bound methods (``method_decorator`` hands a decorator a partial of a bound method, which
    ``inspect.iscoroutinefunction`` does not see through before Python 3.13), and for
    callables marked with asgiref's ``markcoroutinefunction``."""
    from asgiref.sync import iscoroutinefunction

    while True:
        if iscoroutinefunction(func):
            return True
        if isinstance(func, functools.partial):
            func = func.func
        elif inspect.ismethod(func):
            func = func.__func__
        else:
            return False


def check_installed(owner: str) -> None:
    # Without the app no signal receiver is connected: writes bump nothing, and entries
    # would be served stale until they expire. Fail loudly instead.
    from django.apps import apps

    if apps.ready and not apps.is_installed("cachedcall"):
        raise ImproperlyConfigured(
            f"{owner}: 'cachedcall' is not in INSTALLED_APPS, so no write would make an entry "
            "stale. Add it to INSTALLED_APPS (of every process that writes to your models)."
        )


def check_static(items: list[Any], owner: str) -> None:
    # Labels and models can only be checked once the app registry is ready; before that
    # (a decorator at the top of models.py) the first call checks them.
    from django.apps import apps

    if items and apps.ready:
        dependency_keys(items, conf.get().key_prefix, owner)
