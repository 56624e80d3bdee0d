"""Cache events of decorated calls: to subscribers (:func:`subscribe`) and to open
:func:`cachedcall.testing.record` blocks.

Every decorated call ends in one event whose outcome is one of :data:`CALL_OUTCOMES` (a hit,
a miss, ...); a miss may be followed by ``stored``, and an explicit invalidation is an event
of its own (:attr:`Event.is_call` tells them apart). Events are delivered synchronously, in
the thread or task that made the call, after the cache work and before the call returns.

While nobody subscribes or records, emitting costs one attribute read per call: every call
site tests :data:`active` before it builds anything.

Process state: the subscriptions (``_subscriptions``), the open recordings (``_sinks``) and
whether there is either (:data:`active`), swapped as whole tuples under ``_lock`` so that
:func:`emit` reads them without it; per thread or task, whether a callback is running
(``_delivering``). :func:`forget` closes the recordings; subscriptions stay, since they are an
application's wiring made once at start-up (as signal receivers are), and a test runner that
dropped them would silence, say, the Prometheus exporter for its whole run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any

__all__ = [
    "CALL_OUTCOMES",
    "DISABLED",
    "ERROR",
    "HIT",
    "INVALIDATED",
    "MISS",
    "OUTCOMES",
    "PENDING",
    "REFUSED",
    "STALE",
    "STORED",
    "Event",
    "Subscription",
    "subscribe",
]

logger = logging.getLogger("cachedcall")

#: Served from the cache (also a lock waiter's or a single-flight follower's value).
HIT = "hit"
#: Not in the cache (or no longer current): computed.
MISS = "miss"
#: A miss's value was written to the cache (follows its ``miss`` or ``error``).
STORED = "stored"
#: Computed without the cache: the switch is off.
DISABLED = "disabled"
#: Computed without the cache: a bump of something the call depends on waits for a commit.
PENDING = "pending"
#: The cache failed (a read, or a bump and its retry): computed without it.
ERROR = "error"
#: ``f.invalidate(...)`` or ``f.invalidate_all()``: not a call.
INVALIDATED = "invalidated"
#: ``cached_view``: a request that bypassed the cache (no key), or a response that was not
#: stored (with its key, before the call's ``miss``); :attr:`Event.reason` says why.
REFUSED = "refused"
#: An old value served at once while another caller recomputes it (``stale=``, ``soft=``).
STALE = "stale"
OUTCOMES = (HIT, MISS, STORED, DISABLED, PENDING, ERROR, INVALIDATED, REFUSED, STALE)
#: The outcomes that end a call: each call has exactly one (a ``refused`` one only without a
#: key). Counting these, and only these, counts calls.
CALL_OUTCOMES = frozenset({HIT, MISS, DISABLED, PENDING, ERROR, REFUSED, STALE})


@dataclass(frozen=True)
class Event:
    """One thing that happened to one decorated call."""

    #: The decorated function's dotted name, ``module.qualname``.
    function: str
    #: The entry's cache key; ``None`` when the call never got one (disabled, refused).
    key: str | None
    #: One of :data:`OUTCOMES`.
    outcome: str
    #: Seconds: the cache read for a hit, read to store for a miss, 0 for what did no I/O.
    duration: float
    #: Why a response was not stored or a request bypassed the cache (``refused``); for a
    #: ``hit``, ``"near"`` when the near tier served it from this process's memory.
    reason: str | None = None
    #: The version counters the call checked beyond its function's own generations, as
    #: cache keys (``cc:v:app.model``, ``cc:v:app.model:<pk>``, ...): what it depends on.
    #: ``None`` when this event cannot tell: a disabled call's, and, of a function whose
    #: ``depends_on`` is callable, a bypassed request's, a stale or shared value's, an
    #: invalidation's and a not-stored response's.
    dependencies: tuple[str, ...] | None = None

    @property
    def is_call(self) -> bool:
        """Whether this event is the outcome of a call, one per call, rather than what
        followed it (``stored``, a response not stored) or an invalidation."""
        if self.outcome == REFUSED:
            return self.key is None
        return self.outcome in CALL_OUTCOMES

    def __str__(self) -> str:
        why = f" [{self.reason}]" if self.reason else ""
        return f"{self.outcome:<11} {self.function} {self.key or ''} ({self.duration * 1e6:.0f} µs){why}"


class Subscription:
    """A callback receiving every event of this process, until :meth:`unsubscribe`.

    Made by :func:`subscribe`; also a context manager, which unsubscribes on exit.
    """

    def __init__(self, callback: Callable[[Event], object]) -> None:
        self.callback = callback
        #: How many times the callback raised (only the first is logged).
        self.errors = 0
        self._subscribed = True
        self._lock = threading.Lock()

    @property
    def subscribed(self) -> bool:
        return self._subscribed

    def unsubscribe(self) -> None:
        """Stop delivering events to the callback; a second call does nothing.

        A call running in another thread at that moment may still deliver the event it is
        emitting: a callback must not assume that nothing arrives once this returns.
        """
        with _lock:
            self._subscribed = False
            _replace(subscriptions=tuple(s for s in _subscriptions if s is not self))

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.unsubscribe()

    def __repr__(self) -> str:
        state = "subscribed" if self._subscribed else "unsubscribed"
        return f"<Subscription {self.callback!r} {state}>"

    def _deliver(self, event: Event) -> None:
        # Checked again here: the tuple being delivered to may predate an unsubscribe.
        if not self._subscribed:
            return
        try:
            self.callback(event)
        except Exception:
            # The cached call has done its work and must return its value: a broken
            # observer is logged once, with its traceback, and counted after that.
            with self._lock:
                self.errors += 1
                first = self.errors == 1
            if first:
                logger.warning(
                    "cachedcall: the event callback %r raised on a %s event of %s; the call "
                    "went on. Further failures of this callback are counted "
                    "(Subscription.errors), not logged.",
                    self.callback,
                    event.outcome,
                    event.function,
                    exc_info=True,
                )


def subscribe(callback: Callable[[Event], object]) -> Subscription:
    """Call ``callback(event)`` with the :class:`Event` of every decorated call of this
    process, in the thread or task making the call, until the subscription is closed::

        subscription = cachedcall.subscribe(lambda event: print(event))
        ...
        subscription.unsubscribe()

        with cachedcall.subscribe(seen.append):  # or for a block only
            club_page(request, "chess")

    A callback that raises is logged once on the ``cachedcall`` logger and the call goes
    on. Calls the callback itself makes to decorated functions are not delivered to any
    subscriber (so that a callback calling one cannot recurse). Each call of ``subscribe``
    is one subscription, even of a callback already subscribed. The callback runs inside the
    cached call: keep it quick, and thread-safe.

    :param callback: called with one :class:`Event`; what it returns is ignored.
    """
    if not callable(callback):
        raise TypeError(
            f"cachedcall.subscribe({callback!r}): the callback must be a callable taking one "
            f"Event, not a {type(callback).__name__}."
        )
    subscription = Subscription(callback)
    with _lock:
        _replace(subscriptions=(*_subscriptions, subscription))
    return subscription


_lock = threading.Lock()
_subscriptions: tuple[Subscription, ...] = ()
_sinks: tuple[list[Event], ...] = ()
_delivering: ContextVar[bool] = ContextVar("cachedcall_delivering", default=False)
active = False


def emit(
    fc: Any,
    key: str | None,
    outcome: str,
    duration: float,
    reason: str | None = None,
    depends: Sequence[str] | None = None,
) -> None:
    """Deliver one event of ``fc`` (a FunctionCache) to every subscription and recording.

    :param depends: the call's counter keys (its generations first), where the call site
        has them; without them, a function's static ones are used when they are all it has.
    """
    if not active:
        return
    event = Event(fc.name, key, outcome, duration, reason, _dependencies(fc, outcome, depends))
    for sink in _sinks:
        sink.append(event)
    subscriptions = _subscriptions
    if subscriptions and not _delivering.get():
        token = _delivering.set(True)
        try:
            for subscription in subscriptions:
                subscription._deliver(event)
        finally:
            _delivering.reset(token)


def _dependencies(fc: Any, outcome: str, depends: Sequence[str] | None) -> tuple[str, ...] | None:
    if depends is None:
        # A disabled call resolves nothing, not even the settings its static keys are made
        # from; a callable depends_on gives each call its own, which the caller did not pass.
        if outcome == DISABLED or fc.depends_fn is not None:
            return None
        # Any other event comes after fc.setup() in the same call: these are current.
        depends = fc.static_keys
    return tuple(depends[len(fc.generation_keys) :])


def _replace(
    subscriptions: tuple[Subscription, ...] | None = None, sinks: tuple[list[Event], ...] | None = None
) -> None:
    """Swap in new tuples and recompute :data:`active`; the caller holds ``_lock``."""
    global _subscriptions, _sinks, active
    if subscriptions is not None:
        _subscriptions = subscriptions
    if sinks is not None:
        _sinks = sinks
    active = bool(_subscriptions or _sinks)


def attach(sink: list[Event]) -> None:
    """Open a recording: ``sink.append(event)`` for every event (:func:`testing.record`)."""
    with _lock:
        _replace(sinks=(*_sinks, sink))


def detach(sink: list[Event]) -> None:
    with _lock:
        # Only the first: the same sink attached twice is detached once per detach.
        for i, other in enumerate(_sinks):
            if other is sink:
                _replace(sinks=_sinks[:i] + _sinks[i + 1 :])
                break


def forget() -> None:
    """Close every open recording (subscriptions stay: see the module's docstring)."""
    with _lock:
        _replace(sinks=())
