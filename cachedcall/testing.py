"""Testing code that uses cachedcall: recorded events, isolation, and a Django test runner.

Nothing here is imported by cachedcall itself; importing it does not touch settings.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from collections.abc import Iterator
from types import TracebackType
from typing import Any
from typing import TypeVar
from typing import cast

from django.test.runner import DiscoverRunner as _DjangoDiscoverRunner

from cachedcall import bumps
from cachedcall import events
from cachedcall.events import OUTCOMES
from cachedcall.events import Event

__all__ = ["DiscoverRunner", "Events", "forget_process_state", "isolated", "record"]

_T = TypeVar("_T")


def _name(function: Any) -> str:
    if isinstance(function, str):
        return function
    from cachedcall.decorators import function_cache

    fc = function_cache(function)
    if fc is None:
        raise TypeError(f"{function!r} is not a function decorated with @cached.")
    return fc.name


class Events:
    """The events recorded by one :func:`record` block, in the order they happened."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._lock = threading.Lock()

    def all(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def filter(self, function: Any = None, outcome: str | None = None) -> list[Event]:
        """Return the events of ``function`` (a decorated function or its dotted name)
        with ``outcome`` (one of ``hit``, ``miss``, ``stored``, ``disabled``, ``pending``,
        ``error``, ``invalidated``); ``None`` matches all."""
        if outcome is not None and outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; the outcomes are {', '.join(OUTCOMES)}.")
        name = None if function is None else _name(function)
        return [
            e
            for e in self.all()
            if (name is None or e.function == name) and (outcome is None or e.outcome == outcome)
        ]

    def count(self, function: Any = None, outcome: str | None = None) -> int:
        return len(self.filter(function, outcome))

    def hits(self, function: Any = None) -> int:
        return self.count(function, events.HIT)

    def misses(self, function: Any = None) -> int:
        return self.count(function, events.MISS)

    def near_hits(self, function: Any = None) -> int:
        """Hits the near tier served from this process's memory (``reason == "near"``)."""
        return sum(1 for e in self.filter(function, events.HIT) if e.reason == "near")

    def stored(self, function: Any = None) -> int:
        return self.count(function, events.STORED)

    def errors(self, function: Any = None) -> int:
        return self.count(function, events.ERROR)

    def stale(self, function: Any = None) -> int:
        """Old values served while another caller recomputed (``stale=`` and ``soft=``)."""
        return self.count(function, events.STALE)

    def bypassed(self, function: Any = None) -> int:
        return self.count(function, events.DISABLED) + self.count(function, events.PENDING)

    def assert_counts(self, function: Any, **expected: int) -> None:
        """Assert outcome counts, e.g. ``events.assert_counts(f, hit=1, miss=1)``; the
        message lists everything that was recorded."""
        actual = {outcome: self.count(function, outcome) for outcome in expected}
        if actual != expected:
            raise AssertionError(f"expected {expected} for {_name(function)}, got {actual}.\n{self}")

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def _append(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    def __len__(self) -> int:
        return len(self.all())

    def __iter__(self) -> Iterator[Event]:
        return iter(self.all())

    def __str__(self) -> str:
        recorded = self.all()
        if not recorded:
            return "no cachedcall events recorded"
        return f"{len(recorded)} cachedcall events:\n" + "\n".join(f"  {e}" for e in recorded)

    __repr__ = __str__


class record:  # noqa: N801 - used as a function: ``with record() as events``
    """Record what decorated calls do while the block is open, in every thread and task::

    with record() as events:
        club_page(request, "chess")
        club_page(request, "chess")
    assert events.misses(club_classes) == 1 and events.hits(club_classes) == 1
    """

    def __init__(self) -> None:
        self.events = Events()
        self._sink = _Sink(self.events)

    def __enter__(self) -> Events:
        events.attach(self._sink)
        return self.events

    def __exit__(self, *exc: object) -> None:
        events.detach(self._sink)


class _Sink(list):  # type: ignore[type-arg]
    """What events.emit appends to: forwards to an Events object under its lock."""

    def __init__(self, target: Events) -> None:
        super().__init__()
        self._target = target

    def append(self, event: Event) -> None:
        self._target._append(event)


class isolated:  # noqa: N801
    """The block sees an empty cachedcall namespace and leaves nothing visible after it.

    It calls :func:`cachedcall.reset` on entry and on exit (two counter bumps, no flush) and
    forgets failed or pending bumps of this process. Works as a context manager and as a
    decorator on functions, ``async def`` functions and test case classes (each test).
    """

    def __enter__(self) -> None:
        _clean_slate()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _clean_slate()

    def __call__(self, target: _T) -> _T:
        if isinstance(target, type):
            for name, attr in list(vars(target).items()):
                if name.startswith("test") and callable(attr):
                    setattr(target, name, isolated()(attr))
            return target
        func = cast(Callable[..., Any], target)
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with isolated():
                    return await func(*args, **kwargs)

            return cast(_T, run_async)

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            with isolated():
                return func(*args, **kwargs)

        return cast(_T, run)


def _clean_slate() -> None:
    from cachedcall import reset

    bumps.forget()
    reset()


class DiscoverRunner(_DjangoDiscoverRunner):
    """Django's test runner, with a cachedcall namespace of its own and a clean slate.

    ``TEST_RUNNER = "cachedcall.testing.DiscoverRunner"``: ``manage.py test`` appends
    ``.test`` to ``CACHEDCALL["KEY_PREFIX"]`` (as its database gets a ``test_`` name), forgets
    any process state and calls :func:`cachedcall.reset` once before the first test. So no
    entry written by an earlier run or by the development server is ever read, nothing the
    run writes or bumps is seen by them, and the shared memcached is never flushed.
    """

    namespace = "test"

    def setup_test_environment(self, **kwargs: Any) -> None:
        super().setup_test_environment(**kwargs)
        from cachedcall import conf
        from cachedcall import reset

        if self.namespace:
            conf.set_namespace_suffix(self.namespace)
        forget_process_state()
        reset()


def forget_process_state() -> None:
    """Reset everything cachedcall keeps between calls in this process.

    What each module keeps is listed in its docstring: the switch (back to following the
    settings), the settings read, open recordings, failed and pending bumps, backend
    failure counts and outage windows, the fast paths chosen, derived signing keys and
    scopes, resolved key encoders, XFetch's randomness and clock, the counts not flushed
    yet into the cache (and the thread that flushes them, stopped), the near tier's entries
    and counts (its tracking connections closed), and each decorated
    function's counts and settings-derived state. Entries in the cache are not touched:
    that is :func:`cachedcall.reset`.
    """
    from cachedcall import backend
    from cachedcall import conf
    from cachedcall import fastpaths
    from cachedcall import function
    from cachedcall import keys
    from cachedcall import metrics
    from cachedcall import near
    from cachedcall import relations
    from cachedcall import repeats
    from cachedcall import signing
    from cachedcall import snapshots
    from cachedcall import switch
    from cachedcall import versions
    from cachedcall import xfetch

    switch.forget()
    conf.forget()
    events.forget()
    bumps.forget()
    backend.forget()
    fastpaths.forget()
    signing.forget()
    versions.forget()
    relations.forget()
    repeats.forget()
    keys.forget()
    xfetch.forget()
    metrics.forget()
    snapshots.forget()
    near.forget()
    function.forget()
