"""``@cached``: the decorator, and the wrapt proxies that carry a function's helpers.

The work of a call is done by :class:`cachedcall.core.Core`.
"""

from __future__ import annotations

import datetime
import difflib
from collections.abc import Callable
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any
from typing import ParamSpec
from typing import TypeVar
from typing import overload

import wrapt

from cachedcall.core import Core
from cachedcall.exceptions import InvalidOption

if TYPE_CHECKING:
    from cachedcall.protocols import Cached

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["cached"]

# The options of the "Under load" section, shared with cached_view.
LOAD_OPTIONS = ("single_flight", "lock", "lock_ttl", "lock_wait", "stale", "soft", "early")
OPTIONS = ("timeout", "cache", "key", "prefix", "version", "unless", "depends_on", *LOAD_OPTIONS)


# --- the wrapt proxies ------------------------------------------------------------------------


def _instance_of(bound: Any) -> Any:
    binding = bound._self_binding
    if binding == "classmethod":
        return getattr(bound.__wrapped__, "__self__", None)
    if binding == "staticmethod":
        return None
    return bound._self_instance


class BoundCachedFunction(wrapt.BoundFunctionWrapper):  # type: ignore[type-arg]
    """A decorated method bound to an instance or class: the helpers include ``self``."""

    def key(self, *args: Any, **kwargs: Any) -> str:
        return self._self_parent._self_core.key_for(_instance_of(self), args, kwargs)  # type: ignore[no-any-return]

    def invalidate(self, *args: Any, **kwargs: Any) -> None:
        self._self_parent._self_core.invalidate(_instance_of(self), args, kwargs)

    def invalidate_all(self) -> None:
        self._self_parent._self_core.invalidate_all()

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        core = self._self_parent._self_core
        method = core.arefresh if core.is_async else core.refresh
        return method(self.__wrapped__, _instance_of(self), args, kwargs)


class CachedFunction(wrapt.FunctionWrapper):  # type: ignore[type-arg]
    """The decorated function: calls it through the cache, and carries its helpers."""

    __bound_function_wrapper__ = BoundCachedFunction

    def __init__(self, wrapped: Any, options: dict[str, Any], core: Core | None = None) -> None:
        if core is None:
            probe = wrapt.FunctionWrapper(wrapped, lambda *a: None)
            core = Core(wrapped, options, probe._self_binding)
        handler = core.acall if core.is_async else core.call
        super().__init__(wrapped, handler)
        self._self_core = core
        self._self_handler = handler

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        # A plain function called directly: wrapt's own __call__ would first look for a
        # __self__ on it (an AttributeError raised and caught, ~200 ns a call); a plain
        # function has none, so the instance is None. Everything bound goes through wrapt.
        if self._self_binding == "function":
            return self._self_handler(self.__wrapped__, None, args, kwargs)
        return super().__call__(*args, **kwargs)

    def key(self, *args: Any, **kwargs: Any) -> str:
        """Return the key this call's entry has in Django's cache API (no I/O)."""
        return self._self_core.key_for(None, args, kwargs)

    def invalidate(self, *args: Any, **kwargs: Any) -> None:
        """Delete this call's entry."""
        self._self_core.invalidate(None, args, kwargs)

    def invalidate_all(self) -> None:
        """Make every entry of this function unreachable (one counter bump, no scan)."""
        self._self_core.invalidate_all()

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        """Recompute this call, store the fresh value and return it."""
        core = self._self_core
        method = core.arefresh if core.is_async else core.refresh
        return method(self.__wrapped__, None, args, kwargs)

    def __reduce_ex__(self, protocol: Any) -> str:
        # Pickle a module-level decorated function by reference, as pickle does functions.
        name: str = self.__wrapped__.__qualname__
        return name

    def __repr__(self) -> str:
        return f"<cached {self._self_core.name}>"


@overload
def cached(func: Callable[P, R], /) -> Cached[P, R]: ...


@overload
def cached(
    timeout: float | datetime.timedelta | None = ...,
    *,
    cache: str | None = ...,
    key: Callable[..., Any] | Sequence[str] | None = ...,
    prefix: str = ...,
    version: int | str = ...,
    unless: Callable[[Any], object] | None = ...,
    depends_on: Sequence[Any] | Callable[..., Sequence[Any]] | None = ...,
    single_flight: bool = ...,
    lock: bool | None = ...,
    lock_ttl: float | datetime.timedelta = ...,
    lock_wait: float | datetime.timedelta = ...,
    stale: float | datetime.timedelta = ...,
    soft: bool = ...,
    early: float | None = ...,
) -> Callable[[Callable[P, R]], Cached[P, R]]: ...


def cached(*args: Any, **options: Any) -> Any:
    """Cache a function's results in Django's cache, keyed by its arguments.

    ``@cached``, ``@cached(300)`` and ``@cached(timeout=300, ...)`` all work. See the README
    for every option; the signature seen by type checkers is ``cachedcall.Cached``.

    :param timeout: seconds (``int``, ``float`` or ``timedelta``); ``None`` never expires and
        ``0`` does not store. Default: ``CACHEDCALL["TIMEOUT"]``, else the alias's own.
    :param cache: the alias of ``settings.CACHES`` (default ``CACHEDCALL["CACHE"]``).
    :param key: a callable receiving the call's arguments and returning the key material,
        or a list of the parameter names to key on.
    :param prefix: the function's namespace (default ``module.qualname``).
    :param version: change it when the function's meaning changes.
    :param unless: a callable receiving the result; true means "do not store it".
    :param depends_on: models, instances and ``where(...)`` scopes (or a callable receiving
        the call's arguments and returning them) whose changes make an entry stale.
    :param single_flight: concurrent misses of one key in this process compute once (default).
    :param lock: one computation per key across processes, through a lock in the cache
        (default ``CACHEDCALL["LOCK"]``, off); ``lock_ttl`` (30 s) bounds a dead holder,
        ``lock_wait`` (10 s) how long others wait before computing themselves.
    :param stale: seconds after the timeout during which one caller recomputes while the
        others get the old value at once.
    :param soft: model version bumps, too, serve the old value while one caller recomputes.
    :param early: XFetch's beta: refresh before the timeout with probability
        ``exp(-remaining / (beta * computation time))``.
    """
    func, options = check_options("cached", args, options, OPTIONS)
    if func is not None:
        return _apply(func, options)

    def decorate(func: Any) -> Any:
        return _apply(func, options)

    return decorate


def check_options(
    name: str, args: tuple[Any, ...], options: dict[str, Any], known: Sequence[str]
) -> tuple[Any, dict[str, Any]]:
    """Validate a decorator's call; return ``(function for the bare form or None, options)``."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        hints = [difflib.get_close_matches(option, known, 1) for option in unknown]
        hint = "; ".join(f"did you mean {h[0]!r}?" for h in hints if h)
        raise InvalidOption(
            f"{name}() got unknown option(s) {', '.join(map(repr, unknown))}; "
            f"the options are {', '.join(known)}. {hint}".rstrip()
        )
    if len(args) > 1:
        raise InvalidOption(f"{name}() takes at most one positional argument, the timeout.")
    if args:
        first = args[0]
        if callable(first) or isinstance(first, (classmethod, staticmethod)):
            if options:
                raise InvalidOption(f"{name}(func, ...): pass options as @{name}(timeout=..., ...).")
            return first, {}
        if "timeout" in options:
            raise InvalidOption(f"{name}() got the timeout both as an argument and as timeout=.")
        options["timeout"] = first
    return None, options


def _apply(func: Any, options: dict[str, Any]) -> Any:
    if isinstance(func, type) or not (callable(func) or isinstance(func, (classmethod, staticmethod))):
        raise InvalidOption(f"@cached decorates functions and methods, not {func!r}.")
    return CachedFunction(func, options)
