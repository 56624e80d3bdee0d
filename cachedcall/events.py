"""Cache events of decorated calls, delivered to open :func:`cachedcall.testing.record` blocks.

Emitting costs one attribute read per call while nobody records.

Process state: the open sinks (``_sinks``) and whether there is one (:data:`active`), reset
by :func:`forget`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

__all__: list[str] = []

HIT = "hit"
MISS = "miss"
STORED = "stored"
DISABLED = "disabled"
PENDING = "pending"
ERROR = "error"
INVALIDATED = "invalidated"
REFUSED = "refused"
#: An old value served at once while another caller recomputes it (``stale=``, ``soft=``).
STALE = "stale"
OUTCOMES = (HIT, MISS, STORED, DISABLED, PENDING, ERROR, INVALIDATED, REFUSED, STALE)


@dataclass(frozen=True)
class Event:
    """One thing that happened to one decorated call."""

    function: str
    key: str | None
    outcome: str
    duration: float
    #: Why a response was not stored or a request bypassed the cache (``refused`` only).
    reason: str | None = None

    def __str__(self) -> str:
        why = f" [{self.reason}]" if self.reason else ""
        return f"{self.outcome:<11} {self.function} {self.key or ''} ({self.duration * 1e6:.0f} µs){why}"


_lock = threading.Lock()
_sinks: list[list[Event]] = []
active = False


def emit(fc: Any, key: str | None, outcome: str, duration: float, reason: str | None = None) -> None:
    if not _sinks:
        return
    event = Event(fc.name, key, outcome, duration, reason)
    with _lock:
        for sink in _sinks:
            sink.append(event)


def attach(sink: list[Event]) -> None:
    global active
    with _lock:
        _sinks.append(sink)
        active = True


def detach(sink: list[Event]) -> None:
    global active
    with _lock:
        for i, other in enumerate(_sinks):
            if other is sink:
                del _sinks[i]
                break
        active = bool(_sinks)


def forget() -> None:
    """Close every open recording."""
    global active
    with _lock:
        _sinks.clear()
        active = False
