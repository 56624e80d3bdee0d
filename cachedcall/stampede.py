"""Under load: one computation per key in a process, and probabilistic early refresh.

``SingleFlight`` makes concurrent misses of one key in one process (threads, or asyncio
tasks of one loop) run the function once; the others wait for its result or its exception.
``refresh_early`` is the XFetch rule (Vattani, Chierichetti, Lowenstein, VLDB 2015).
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
from collections.abc import Callable
from typing import Any

__all__: list[str] = []


def refresh_early(
    remaining: float, delta: float, beta: float, rand: Callable[[], float] = random.random
) -> bool:
    """Whether to recompute an entry that is still valid for ``remaining`` seconds.

    True with probability ``exp(-remaining / (beta * delta))``: ``delta`` is how long the
    function took, so slow functions start refreshing earlier, and a larger ``beta`` means
    earlier. ``rand`` is injectable so the probability can be tested exactly.
    """
    if delta <= 0 or beta <= 0:
        return False
    draw = rand()
    if draw <= 0.0:
        return True
    # -delta * beta * log(u) >= remaining  <=>  u <= exp(-remaining / (beta * delta))
    return -delta * beta * math.log(draw) >= remaining


class _Flight:
    __slots__ = ("done", "error", "result", "waiters")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.waiters = 0


class SingleFlight:
    """Per-key leader election among the threads of one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        self._tasks: dict[tuple[int, str], asyncio.Future[Any]] = {}

    def join(self, key: str) -> tuple[bool, _Flight]:
        """Return ``(leader, flight)``: the leader computes, the others wait on ``flight``."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = _Flight()
                return True, flight
            flight.waiters += 1
            return False, flight

    def land(self, key: str, flight: _Flight, result: Any = None, error: BaseException | None = None) -> None:
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
        flight.result, flight.error = result, error
        flight.done.set()

    def ajoin(self, key: str) -> tuple[bool, asyncio.Future[Any]]:
        """The asyncio form: tasks of the running loop share one future per key."""
        loop = asyncio.get_running_loop()
        slot = (id(loop), key)
        with self._lock:
            future = self._tasks.get(slot)
            if future is None or future.done():
                future = self._tasks[slot] = loop.create_future()
                return True, future
            return False, future

    def aland(
        self, key: str, future: asyncio.Future[Any], result: Any = None, error: BaseException | None = None
    ) -> None:
        slot = (id(asyncio.get_running_loop()), key)
        with self._lock:
            if self._tasks.get(slot) is future:
                del self._tasks[slot]
        if not future.done():
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
