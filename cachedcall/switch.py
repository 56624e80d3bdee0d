"""The global on/off switch.

Process state: ``_forced`` (``None`` follows the settings; ``True``/``False`` while a block
is open, or as set by :func:`force`), reset by :func:`forget`. It is process-wide on
purpose: a thread started inside ``disabled()`` (a live server thread, a thread pool
worker) and every asyncio task see the same state as the code that entered the block. A
context variable would not reach threads started by others.
"""

from __future__ import annotations

import functools
import inspect
import threading
from types import TracebackType
from typing import Any
from typing import TypeVar
from typing import cast

from cachedcall import conf

__all__ = ["disabled", "enabled", "is_enabled"]

_T = TypeVar("_T")
_lock = threading.Lock()
#: ``None`` follows the settings; ``True``/``False`` is forced by an open block.
_forced: bool | None = None


def is_enabled() -> bool:
    """Return whether decorated functions read and write the cache right now.

    An open :func:`enabled` or :func:`disabled` block wins; otherwise
    ``settings.CACHEDCALL["ENABLED"]``; otherwise the environment variable
    ``CACHEDCALL_ENABLED``; otherwise ``True``.
    """
    forced = _forced
    if forced is not None:
        return forced
    return conf.get().enabled


class _Switch:
    """A context manager and decorator that forces the switch to one state."""

    def __init__(self, state: bool) -> None:
        self._state = state
        self._saved: list[bool | None] = []

    def __enter__(self) -> None:
        global _forced
        with _lock:
            self._saved.append(_forced)
            _forced = self._state

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _forced
        with _lock:
            _forced = self._saved.pop()

    def __call__(self, target: _T) -> _T:
        if isinstance(target, type):
            return cast(_T, self._decorate_class(target))
        if inspect.iscoroutinefunction(target):

            @functools.wraps(target)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with _Switch(self._state):
                    return await target(*args, **kwargs)

            return cast(_T, run_async)
        if not callable(target):
            raise TypeError(f"{self!r} decorates functions and classes, not {target!r}.")

        @functools.wraps(target)
        def run(*args: Any, **kwargs: Any) -> Any:
            with _Switch(self._state):
                return target(*args, **kwargs)

        return cast(_T, run)

    def _decorate_class(self, cls: type[Any]) -> type[Any]:
        # unittest and Django test cases: wrap the class-level and per-test hooks, so the
        # state also holds in setUpClass/setUpTestData and is restored after tearDownClass.
        if hasattr(cls, "setUpClass") and hasattr(cls, "tearDownClass"):
            state = self._state
            orig_setup = cls.setUpClass.__func__
            orig_teardown = cls.tearDownClass.__func__

            def setUpClass(klass: type[Any]) -> None:
                switch = _Switch(state)
                switch.__enter__()
                klass._cachedcall_switches = [*getattr(klass, "_cachedcall_switches", []), switch]
                try:
                    orig_setup(klass)
                except BaseException:
                    klass._cachedcall_switches.pop().__exit__(None, None, None)
                    raise

            def tearDownClass(klass: type[Any]) -> None:
                try:
                    orig_teardown(klass)
                finally:
                    klass._cachedcall_switches.pop().__exit__(None, None, None)

            cls.setUpClass = classmethod(setUpClass)
            cls.tearDownClass = classmethod(tearDownClass)
            return cls
        for name, attr in list(vars(cls).items()):
            if name.startswith("test") and callable(attr):
                setattr(cls, name, self(attr))
        return cls

    def __repr__(self) -> str:
        return "cachedcall.enabled()" if self._state else "cachedcall.disabled()"


def disabled() -> _Switch:
    """Switch caching off: decorated functions run as if undecorated (no read, no write).

    Use it as a context manager, or as a decorator on a function, an ``async def``
    function or a ``unittest``/Django ``TestCase`` class. The previous state is restored on
    exit, also on an exception; blocks nest to any depth.
    """
    return _Switch(False)


def enabled() -> _Switch:
    """Switch caching on, whatever the settings say; the counterpart of :func:`disabled`."""
    return _Switch(True)


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
    force(None)
