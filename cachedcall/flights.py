"""Single flight: concurrent misses of one key in one process run the function once.

The first caller to miss a key leads: it computes and stores. The others follow: they wait
(at most ``WAIT`` seconds, then compute themselves) and get the leader's value — a copy
unpickled from the stored payload, so no caller can mutate another's — or its exception.
Threads share flights through a lock; asyncio tasks of one event loop through futures.

Process state: each decorated function's :class:`Flights` (the computations in progress).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from cachedcall import entry
from cachedcall.entry import MISSING

__all__: list[str] = []

#: How long a follower waits for the leader before computing itself, in seconds.
WAIT = 10.0


class Flight:
    """One computation that other callers of the same key wait for."""

    __slots__ = ("entry", "error", "event", "key", "landed", "leader")

    def __init__(self, leader: object) -> None:
        # The event is made only when a follower joins: most flights have none, and an
        # Event costs more than the rest of this bookkeeping together.
        self.event: threading.Event | None = None
        self.landed = False
        self.key: str | None = None
        self.entry: entry.Entry | None = None
        self.error: BaseException | None = None
        self.leader = leader

    def value(self, key: str, versions: tuple[Any, ...] | None = None) -> Any:
        """The leader's value for a follower that joined on ``key``: its own copy, unpickled
        from what the leader stored, or ``MISSING`` when the follower must compute itself
        (nothing stored, stored under another key, or computed under older versions).

        :param versions: the counters the follower read. A leader that read them before a
            bump the follower has seen computed from data older than the bump: the follower
            computes itself rather than take it (a counter the follower found missing tells
            nothing, so it is not compared).
        """
        if self.error is not None:
            raise self.error
        if self.entry is None or self.key != key:
            return MISSING
        if versions is not None and any(
            mine is not None and mine != theirs
            for mine, theirs in zip(versions, self.entry.versions, strict=False)
        ):
            return MISSING
        return entry.value(self.entry.payload)


class Flights:
    """The flights in progress for one decorated function."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Any, Flight] = {}

    def join(self, key: str, slot: Any, leader: object) -> tuple[Flight, bool]:
        """Return ``(flight, leads)`` for a caller that missed ``key``.

        :param slot: where the flight is kept: the key for threads, ``(loop, key)`` for tasks.
        :param leader: the caller's identity (thread id, or task).
        """
        with self._lock:
            flight = self._flights.get(slot)
            if flight is None or flight.leader == leader:
                # A caller that re-enters its own key (recursion) must not wait on itself.
                flight = Flight(leader)
                if slot not in self._flights:
                    self._flights[slot] = flight
                return flight, True
            if flight.event is None:
                flight.event = threading.Event()
            return flight, False

    def claim(self, slot: Any, leader: object) -> Flight | None:
        """Lead a refresh of ``slot`` if nobody in this process is computing it, else ``None``:
        a stale value is being refreshed already, and this caller serves the old one."""
        with self._lock:
            if slot in self._flights:
                return None
            flight = self._flights[slot] = Flight(leader)
            return flight

    def land(
        self, slot: Any, flight: Flight, key: str | None, stored: Any, error: BaseException | None
    ) -> None:
        """Publish the leader's outcome and let the followers go."""
        with self._lock:
            if self._flights.get(slot) is flight:
                del self._flights[slot]
            flight.key, flight.entry, flight.error = key, stored, error
            flight.landed = True
            event = flight.event
        if event is not None:
            event.set()


async def wait_async(flight: Flight) -> bool:
    """Wait for a flight from asyncio code without blocking the loop; True when it landed."""
    step, waited = 0.001, 0.0
    while not flight.landed:
        if waited >= WAIT:
            return False
        await asyncio.sleep(step)
        waited += step
        step = min(step * 2, 0.05)
    return True
