"""``@cached``: options in, a wrapt proxy out.

The proxy (:class:`CachedFunction`) carries the function's helpers; the work of a call is
done by :mod:`cachedcall.call` with the function's :class:`cachedcall.function.FunctionCache`.

Process state: none.
"""

from __future__ import annotations

import datetime
import functools
import inspect
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any
from typing import ParamSpec
from typing import TypeVar
from typing import overload

import wrapt

from cachedcall import batch
from cachedcall import call
from cachedcall import options
from cachedcall.exceptions import InvalidOption
from cachedcall.function import FunctionCache

if TYPE_CHECKING:
    from cachedcall.protocols import Cached

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["cached"]


def _batch(fc: FunctionCache, wrapped: Any, instance: Any, iterable: Iterable[Any], star: bool) -> Any:
    # The iterable is consumed here, at the call, for async functions too (as map() would
    # when its result is awaited at once).
    if not star:
        calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [((item,), {}) for item in iterable]
    else:
        calls = []
        for item in iterable:
            if isinstance(item, (str, bytes)) or not isinstance(item, Iterable):
                raise TypeError(
                    f"{fc.name}.starmap() takes an iterable of argument tuples, and got "
                    f"{item!r} among them; use .map() for calls of one argument."
                )
            calls.append((tuple(item), {}))
    if fc.is_async:
        return batch.amap(fc, wrapped, instance, calls)
    return batch.map_calls(fc, wrapped, instance, calls)


# --- the wrapt proxies ------------------------------------------------------------------------


def binding_of(wrapped: Any) -> str:
    """What wrapt's ``FunctionWrapper`` will call the binding of ``wrapped``, derived the way
    it derives it (a contract test checks that they agree): whether calls bind ``self``."""
    if isinstance(wrapped, wrapt.FunctionWrapper):
        return str(wrapped._self_binding)
    if inspect.isbuiltin(wrapped):
        return "builtin"
    if inspect.isfunction(wrapped):
        return "function"
    if inspect.isclass(wrapped):
        return "class"
    if isinstance(wrapped, classmethod):
        return "classmethod"
    if isinstance(wrapped, staticmethod):
        return "staticmethod"
    if hasattr(wrapped, "__self__"):
        if inspect.isclass(wrapped.__self__):
            return "classmethod"
        return "instancemethod" if inspect.ismethod(wrapped) else "callable"
    return "callable"


def function_cache(decorated: Any) -> FunctionCache | None:
    """The FunctionCache behind a decorated function or a bound decorated method."""
    found = getattr(decorated, "_self_function_cache", None)
    if found is None:
        found = getattr(getattr(decorated, "_self_parent", None), "_self_function_cache", None)
    return found


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
        fc: FunctionCache = self._self_parent._self_function_cache
        return fc.key_for(_instance_of(self), args, kwargs)

    def invalidate(self, *args: Any, **kwargs: Any) -> None:
        self._self_parent._self_function_cache.invalidate(_instance_of(self), args, kwargs)

    def invalidate_all(self) -> None:
        self._self_parent._self_function_cache.invalidate_all()

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        fc = self._self_parent._self_function_cache
        method = call.arefresh if fc.is_async else call.refresh
        return method(fc, self.__wrapped__, _instance_of(self), args, kwargs)

    def map(self, iterable: Iterable[Any], /) -> Any:
        return _batch(
            self._self_parent._self_function_cache, self.__wrapped__, _instance_of(self), iterable, False
        )

    def starmap(self, iterable: Iterable[Iterable[Any]], /) -> Any:
        return _batch(
            self._self_parent._self_function_cache, self.__wrapped__, _instance_of(self), iterable, True
        )


class CachedFunction(wrapt.FunctionWrapper):  # type: ignore[type-arg]
    """The decorated function: calls it through the cache, and carries its helpers."""

    __bound_function_wrapper__ = BoundCachedFunction

    def __init__(self, wrapped: Any, fc: FunctionCache) -> None:
        handler = functools.partial(call.acall if fc.is_async else call.call, fc)
        super().__init__(wrapped, handler)
        self._self_function_cache = fc
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
        return self._self_function_cache.key_for(None, args, kwargs)

    def invalidate(self, *args: Any, **kwargs: Any) -> None:
        """Delete this call's entry."""
        self._self_function_cache.invalidate(None, args, kwargs)

    def invalidate_all(self) -> None:
        """Make every entry of this function unreachable (one counter bump, no scan)."""
        self._self_function_cache.invalidate_all()

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        """Recompute this call, store the fresh value and return it."""
        fc = self._self_function_cache
        method = call.arefresh if fc.is_async else call.refresh
        return method(fc, self.__wrapped__, None, args, kwargs)

    def map(self, iterable: Iterable[Any], /) -> Any:
        """``[f(x) for x in iterable]``, with one read and one write for all the calls."""
        return _batch(self._self_function_cache, self.__wrapped__, None, iterable, False)

    def starmap(self, iterable: Iterable[Iterable[Any]], /) -> Any:
        """``[f(*a) for a in iterable]``, with one read and one write for all the calls."""
        return _batch(self._self_function_cache, self.__wrapped__, None, iterable, True)

    def __reduce_ex__(self, protocol: Any) -> str:
        # Pickle a module-level decorated function by reference, as pickle does functions.
        name: str = self.__wrapped__.__qualname__
        return name

    def __repr__(self) -> str:
        return f"<cached {self._self_function_cache.name}>"


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
    near: bool | None = ...,
    copy: bool = ...,
    stale: float | datetime.timedelta = ...,
    soft: bool = ...,
    early: float | None = ...,
) -> Callable[[Callable[P, R]], Cached[P, R]]: ...


def cached(*args: Any, **given: Any) -> Any:
    func, given = options.split_call("cached", args, given, options.FUNCTION)
    if func is not None:
        return _apply(func, given)

    def decorate(func: Any) -> Any:
        return _apply(func, given)

    return decorate


cached.__doc__ = f"""Cache a function's results in Django's cache, keyed by its arguments.

``@cached``, ``@cached(300)`` and ``@cached(timeout=300, ...)`` all work; the signature
seen by type checkers is ``cachedcall.Cached``. Every option is checked at decoration.

{options.params(options.FUNCTION)}
"""


def _apply(func: Any, given: dict[str, Any]) -> Any:
    if isinstance(func, type) or not (callable(func) or isinstance(func, (classmethod, staticmethod))):
        raise InvalidOption(f"@cached decorates functions and methods, not {func!r}.")
    return CachedFunction(func, FunctionCache(func, given, binding_of(func)))
