"""The static type of a decorated function, for type checkers.

``@cached`` returns a :class:`Cached` whose call signature is the original one (PEP 612),
and whose helpers take the same parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Coroutine
from collections.abc import Iterable
from typing import Any
from typing import Concatenate
from typing import Generic
from typing import ParamSpec
from typing import Protocol
from typing import TypeVar
from typing import overload

__all__ = ["Cached"]

P = ParamSpec("P")
R = TypeVar("R")
P2 = ParamSpec("P2")
R2 = TypeVar("R2")
S = TypeVar("S")


class Cached(Protocol, Generic[P, R]):
    """A function decorated with ``@cached``."""

    __wrapped__: Callable[P, R]
    __name__: str
    __qualname__: str

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The key of this call's entry in Django's cache API."""
        ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Delete this call's entry."""
        ...

    def invalidate_all(self) -> None:
        """Make every entry of this function unreachable."""
        ...

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Recompute, store and return this call's value."""
        ...

    # The async overloads first: an async function's R is a coroutine, which the plain one
    # would match too (so mypy calls them overlapping; the order decides, as intended).
    @overload
    def map(  # type: ignore[overload-overlap]
        self: Cached[P2, Coroutine[Any, Any, R2]], iterable: Iterable[Any], /
    ) -> Coroutine[Any, Any, list[R2]]: ...

    @overload
    def map(self, iterable: Iterable[Any], /) -> list[R]: ...

    def map(self, iterable: Iterable[Any], /) -> Any:
        """``[f(x) for x in iterable]``: one read and one write for all the calls (for an
        ``async def`` function, an awaitable of that list)."""
        ...

    @overload
    def starmap(  # type: ignore[overload-overlap]
        self: Cached[P2, Coroutine[Any, Any, R2]], iterable: Iterable[Iterable[Any]], /
    ) -> Coroutine[Any, Any, list[R2]]: ...

    @overload
    def starmap(self, iterable: Iterable[Iterable[Any]], /) -> list[R]: ...

    def starmap(self, iterable: Iterable[Iterable[Any]], /) -> Any:
        """``[f(*a) for a in iterable]``, batched as :meth:`map`."""
        ...

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Cached[P, R]: ...

    @overload
    def __get__(self: Cached[Concatenate[S, P2], R2], instance: S, owner: type[Any]) -> Cached[P2, R2]: ...

    def __get__(self, instance: Any, owner: type[Any]) -> Any: ...
