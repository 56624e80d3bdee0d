"""Prometheus metrics of decorated calls (``pip install cachedcall[prometheus]``).

Call :func:`export` once per process, in an ``AppConfig.ready()`` for one::

    from cachedcall.contrib import prometheus

    prometheus.export()  # on prometheus_client.REGISTRY

and the registry exposes, per decorated function and outcome (``hit``, ``miss``, ``stale``,
``error``, ``disabled``, ``pending``, ``refused``: :data:`cachedcall.events.CALL_OUTCOMES`)::

    cachedcall_calls_total{function, outcome}                 counter
    cachedcall_call_duration_seconds{function, outcome}       histogram

Each call is counted once, by the outcome that ended it; what follows a miss (``stored``)
and invalidations are not calls and are not counted, so that a sum over outcomes is the
number of calls, and the hit ratio is ``sum(rate(cachedcall_calls_total{outcome="hit"}[5m]))
/ sum(rate(cachedcall_calls_total[5m]))``.

Process state: none of its own. Each :class:`Exporter` holds its two metrics (registered on
its registry) and its subscription until :meth:`Exporter.close`.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from prometheus_client import REGISTRY
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram

from cachedcall import events
from cachedcall.events import Event

__all__ = ["DURATION_BUCKETS", "Exporter", "export"]

#: Upper bounds in seconds: from 100 µs, since a hit on a local cache takes tens of
#: microseconds and prometheus_client's default buckets start at 5 ms, up to 10 s misses.
DURATION_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_LABELS = ("function", "outcome")


class Exporter:
    """The two metrics on one registry, fed by a :func:`cachedcall.subscribe` callback.

    Made by :func:`export`; a context manager too, which closes it on exit.
    """

    def __init__(self, registry: CollectorRegistry, buckets: Sequence[float]) -> None:
        self.registry = registry
        # Made unregistered, then registered: prometheus_client raises ValueError both for
        # bad buckets (at creation) and for a duplicate (at registration), and only the
        # second is ours to explain.
        self.calls = Counter(
            "cachedcall_calls",
            "Calls of functions decorated with cachedcall, by the outcome that ended them.",
            _LABELS,
            registry=None,
        )
        self.duration = Histogram(
            "cachedcall_call_duration_seconds",
            "Seconds a call of a function decorated with cachedcall spent: the cache read for "
            "a hit; the read, the computation and the write for a miss; 0 for a call that did "
            "not use the cache (disabled, pending, refused).",
            _LABELS,
            registry=None,
            buckets=buckets,
        )
        registered: list[Counter | Histogram] = []
        try:
            for metric in (self.calls, self.duration):
                registry.register(metric)
                registered.append(metric)
        except ValueError as exc:
            for metric in registered:
                registry.unregister(metric)
            raise ValueError(
                f"cachedcall.contrib.prometheus.export(): {exc}. The registry already has "
                "cachedcall's metrics: export() once per registry and process (in an "
                "AppConfig.ready()), or close() the Exporter it returned before exporting again."
            ) from exc
        # Label lookups take the metric's lock and build a tuple: the children are kept per
        # (function, outcome), a set bounded by the code's decorated functions. Two threads
        # may both miss here; labels() returns them the same children.
        self._children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self.subscription = events.subscribe(self._observe)

    def _observe(self, event: Event) -> None:
        if not event.is_call:
            return
        labels = (event.function, event.outcome)
        children = self._children.get(labels)
        if children is None:
            children = self._children[labels] = (self.calls.labels(*labels), self.duration.labels(*labels))
        children[0].inc()
        children[1].observe(event.duration)

    def close(self) -> None:
        """Stop counting and unregister both metrics (so that :func:`export` may run again on
        the registry); a second call does nothing."""
        self.subscription.unsubscribe()
        for metric in (self.calls, self.duration):
            try:
                self.registry.unregister(metric)
            except KeyError:
                pass  # closed before

    def __enter__(self) -> Exporter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def export(
    registry: CollectorRegistry = REGISTRY, *, buckets: Sequence[float] = DURATION_BUCKETS
) -> Exporter:
    """Register ``cachedcall_calls_total`` and ``cachedcall_call_duration_seconds`` on
    ``registry`` and count every decorated call of this process in them from now on.

    :param registry: where the metrics are registered; prometheus_client's default
        ``REGISTRY`` unless given (a ``CollectorRegistry`` of one's own, in tests).
    :param buckets: the histogram's upper bounds in seconds.
    :raises ValueError: when the registry already has these metrics (from an earlier
        ``export()`` not closed since).
    """
    return Exporter(registry, buckets)
