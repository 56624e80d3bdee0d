"""The global on/off switch.

``disabled`` and ``enabled`` are the two switch objects. Each is a context manager
(``with disabled:``), a decorator (``@disabled``) and, called without an argument, returns
itself, so the older spellings ``with disabled():`` and ``@disabled()`` keep working. The
objects keep nothing about open blocks: what a block restores is kept here, so blocks nest
to any depth and one object can be entered any number of times at once.

Process state, reset by :func:`forget`:

- ``_forced``: ``None`` follows the settings; ``True``/``False`` while a block is open, or
  as set by :func:`force`.
- ``_saved``: the states the open blocks restore on exit, innermost last.

It is process-wide on purpose: a thread started inside ``with disabled:`` (a live server
thread, a thread pool worker) and every asyncio task see the same state as the code that
entered the block. A context variable would not reach threads started by others. Blocks
that threads or tasks open and close at overlapping times restore each other's saved
states in the order they exit; once all are closed, the state is the one before the first.
"""

from __future__ import annotations

import functools
import inspect
import threading
from types import TracebackType
from typing import Any
from typing import TypeVar
from typing import overload

from cachedcall import conf

__all__ = ["disabled", "enabled", "is_enabled"]

_T = TypeVar("_T")
_lock = threading.Lock()
#: ``None`` follows the settings; ``True``/``False`` is forced by an open block.
_forced: bool | None = None
#: What each open block restores on exit, innermost last.
_saved: list[bool | None] = []


def is_enabled() -> bool:
    """Return whether decorated functions read and write the cache right now.

    An open :data:`enabled` or :data:`disabled` block wins; otherwise
    ``settings.CACHEDCALL["ENABLED"]``; otherwise the environment variable
    ``CACHEDCALL_ENABLED``; otherwise ``True``.
    """
    forced = _forced
    if forced is not None:
        return forced
    return conf.get().enabled


def _enter(state: bool) -> None:
    global _forced
    with _lock:
        _saved.append(_forced)
        _forced = state


def _exit() -> None:
    global _forced
    with _lock:
        # Empty when forget() ran inside the block: follow the settings, as it asked.
        _forced = _saved.pop() if _saved else None


class _Switch:
    """Force the switch to one state: a context manager, and a decorator of functions,
    ``async def`` functions and test case classes."""

    def __init__(self, state: bool, doc: str) -> None:
        self._state = state
        self.__doc__ = doc

    def __enter__(self) -> None:
        _enter(self._state)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _exit()

    async def __aenter__(self) -> None:
        _enter(self._state)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _exit()

    @overload
    def __call__(self) -> _Switch: ...

    @overload
    def __call__(self, target: _T, /) -> _T: ...

    def __call__(self, *target: Any) -> Any:
        if not target:
            return self  # ``disabled()``: the same block, as the object keeps no state
        if len(target) > 1:
            raise TypeError(f"{self!r} takes one function or class to decorate, not {len(target)} arguments.")
        return self._decorate(target[0])

    def _decorate(self, target: Any) -> Any:
        if isinstance(target, type):
            return self._decorate_class(target)
        if isinstance(target, (staticmethod, classmethod)):
            return type(target)(self._decorate(target.__func__))
        if inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target):
            # The body runs when the generator is iterated, after the call has returned.
            raise TypeError(
                f"{self!r} cannot decorate the generator function {target.__qualname__}: it would "
                f"only cover creating the generator. Open the block inside it: with {self!r}: ..."
            )
        if not callable(target):
            raise TypeError(
                f"{self!r} decorates functions and classes (@{self!r}) and opens a block "
                f"(with {self!r}: ...); it takes no {target!r}."
            )
        state = self._state
        if inspect.iscoroutinefunction(target):

            @functools.wraps(target)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                _enter(state)
                try:
                    return await target(*args, **kwargs)
                finally:
                    _exit()

            return run_async

        @functools.wraps(target)
        def run(*args: Any, **kwargs: Any) -> Any:
            _enter(state)
            try:
                return target(*args, **kwargs)
            finally:
                _exit()

        return run

    def _decorate_class(self, cls: type[Any]) -> type[Any]:
        # unittest and Django test cases: wrap the class-level hooks, so the state also
        # holds in setUpClass/setUpTestData and is restored after tearDownClass.
        if hasattr(cls, "setUpClass") and hasattr(cls, "tearDownClass"):
            state = self._state
            orig_setup = cls.setUpClass.__func__
            orig_teardown = cls.tearDownClass.__func__

            def setUpClass(klass: type[Any]) -> None:
                _enter(state)
                try:
                    orig_setup(klass)
                except BaseException:
                    _exit()  # unittest skips tearDownClass when setUpClass fails
                    raise

            def tearDownClass(klass: type[Any]) -> None:
                try:
                    orig_teardown(klass)
                finally:
                    _exit()

            cls.setUpClass = classmethod(setUpClass)
            cls.tearDownClass = classmethod(tearDownClass)
            return cls
        for name, attr in list(vars(cls).items()):
            if name.startswith("test") and callable(attr):
                setattr(cls, name, self._decorate(attr))
        return cls

    def __repr__(self) -> str:
        return "cachedcall.enabled" if self._state else "cachedcall.disabled"


disabled = _Switch(
    False,
    """Switch caching off: decorated functions run as if undecorated (no read, no write).

    A context manager (``with cachedcall.disabled:``) and a decorator (``@cachedcall.disabled``)
    on a function, an ``async def`` function or a ``unittest``/Django ``TestCase`` class;
    ``disabled()`` is the same object. The previous state is restored on exit, also on an
    exception; blocks nest to any depth.
    """,
)
enabled = _Switch(
    True,
    """Switch caching on, whatever the settings say; the counterpart of :data:`disabled`.""",
)


def force(value: bool | None) -> bool | None:
    """Force the state without a block (``--cachedcall-disable``); return the old one.

    :param value: ``True``/``False`` to force, ``None`` to follow the settings again.
    """
    global _forced
    with _lock:
        old, _forced = _forced, value
    return old


def forced() -> bool | None:
    """The forced state: ``None`` when the settings decide."""
    return _forced


def forget() -> None:
    """Follow the settings again, whatever blocks were left open."""
    global _forced
    with _lock:
        _forced = None
        _saved.clear()
