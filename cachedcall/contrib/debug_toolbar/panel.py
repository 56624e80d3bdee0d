"""The panel: a :func:`cachedcall.subscribe` callback open while the toolbar handles a request.

Events are delivered in the thread or task of the call; the panel keeps those of its own
request, which it recognises by an ``asgiref`` ``Local`` (thread- and task-local, and
carried across ``sync_to_async`` and ``async_to_sync``) naming the panel recording there, as
the toolbar's own ``CachePanel`` does. Calls made in threads the request starts itself are
not seen. While no toolbar request is in flight, nothing is subscribed and calls pay nothing.

What is recorded is stored as plain data (the toolbar serializes it to JSON, and renders the
panel later, from its store, when the panel is opened).

Process state: ``CachedCallPanel._current``, the panel recording in each thread or task,
set by ``enable_instrumentation`` and cleared by ``disable_instrumentation``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asgiref.local import Local
from debug_toolbar.panels import Panel
from django.apps import apps
from django.core import checks
from django.http import HttpRequest
from django.http import HttpResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from cachedcall import conf
from cachedcall import events
from cachedcall.events import Event
from cachedcall.events import Subscription

__all__ = ["CachedCallPanel", "rows"]

_APP = "cachedcall.contrib.debug_toolbar"


class CachedCallPanel(Panel):
    """Every decorated call of the request: function, outcome, key, dependencies, time."""

    template = "cachedcall/debug_toolbar/panel.html"
    is_async = True
    nav_title = _("Cached calls")

    _current = Local()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._recorded: list[Event] = []
        self._subscription: Subscription | None = None

    # -- recording ----------------------------------------------------------------------------

    def enable_instrumentation(self) -> None:
        if self._subscription is None:
            self._current.panel = self
            self._subscription = events.subscribe(self._record)

    def disable_instrumentation(self) -> None:
        if self._subscription is not None:
            self._subscription.unsubscribe()
            self._subscription = None
        if getattr(self._current, "panel", None) is self:
            del self._current.panel

    def _record(self, event: Event) -> None:
        # Every request's panel is subscribed while its request runs: keep only ours.
        if getattr(self._current, "panel", None) is self:
            self._recorded.append(event)

    def generate_stats(self, request: HttpRequest, response: HttpResponse) -> None:
        calls = rows(self._recorded, conf.get().key_prefix)
        counted = [row for row in calls if row["call"]]
        counts = dict.fromkeys(events.OUTCOMES, 0)
        for row in calls:
            counts[row["outcome"]] += 1
        counts[events.STORED] += sum(1 for row in calls if row["stored"])
        self.record_stats(  # type: ignore[no-untyped-call] # the toolbar is only partly typed
            {
                "calls": calls,
                "total_calls": len(counted),
                "hits": counts[events.HIT],
                "misses": counts[events.MISS],
                "counts": counts,
                "total_time": sum(row["time"] for row in counted),
            }
        )

    def generate_server_timing(self, request: HttpRequest, response: HttpResponse) -> None:
        stats = self._stats()
        title = f"cachedcall {stats.get('total_calls', 0)} calls"
        self.record_server_timing("total_time", title, stats.get("total_time", 0))  # type: ignore[no-untyped-call]

    def _stats(self) -> dict[str, Any]:
        # The toolbar's get_stats() is untyped; what it returns is what generate_stats()
        # recorded, possibly read back from the toolbar's store (JSON).
        stats: dict[str, Any] = self.get_stats()  # type: ignore[no-untyped-call]
        return stats

    # -- titles -------------------------------------------------------------------------------

    @property
    def nav_subtitle(self) -> str:
        return self._totals()

    @property
    def title(self) -> str:
        return f"{_('Cached calls')}: {self._totals()}"

    def _totals(self) -> str:
        stats = self._stats()
        calls, hits = stats.get("total_calls", 0), stats.get("hits", 0)
        return ", ".join(
            (
                ngettext("%(count)d call", "%(count)d calls", calls) % {"count": calls},
                ngettext("%(count)d hit", "%(count)d hits", hits) % {"count": hits},
            )
        )

    @classmethod
    def run_checks(cls) -> list[checks.CheckMessage]:
        if apps.is_installed(_APP):
            return []
        return [
            checks.Error(
                f"{cls.__module__}.{cls.__name__} is in DEBUG_TOOLBAR_PANELS but its app is not "
                "installed, so its template cannot be found.",
                hint=f"Add {_APP!r} to INSTALLED_APPS.",
                id="cachedcall_debug_toolbar.E001",
            )
        ]


def rows(recorded: Sequence[Event], prefix: str) -> list[dict[str, Any]]:
    """One row per call (and per invalidation), as JSON-ready dicts, in the order they
    happened: a miss's ``stored`` event and a response's refusal become its row's ``stored``
    and ``reason``.

    :param prefix: ``CACHEDCALL["KEY_PREFIX"]``, dropped from the dependencies shown
        (``cc:v:app.model`` is shown as ``app.model``).
    """
    out: list[dict[str, Any]] = []
    # cached_view reports a response it does not store before the call's miss.
    refusals: dict[tuple[str, str | None], str | None] = {}
    for event in recorded:
        if event.outcome == events.STORED:
            row = _miss_of(out, event)
            if row is not None:
                row["stored"] = True
                continue
        elif event.outcome == events.REFUSED and not event.is_call:
            refusals[(event.function, event.key)] = event.reason
            continue
        row = _row(event, prefix)
        if event.outcome in (events.MISS, events.ERROR) and (event.function, event.key) in refusals:
            row["reason"] = refusals.pop((event.function, event.key))
        out.append(row)
    # A refusal whose miss never came (its call raised after it): shown on its own.
    for (function, key), reason in refusals.items():
        out.append(_row(Event(function, key, events.REFUSED, 0.0, reason), prefix))
    return out


def _row(event: Event, prefix: str) -> dict[str, Any]:
    version = f"{prefix}:v:"
    depends = event.dependencies
    return {
        "function": event.function,
        "outcome": event.outcome,
        "call": event.is_call,
        "stored": False,
        "reason": event.reason,
        "key": event.key,
        "dependencies": None
        if depends is None
        else [key[len(version) :] if key.startswith(version) else key for key in depends],
        "time": event.duration * 1000,
    }


def _miss_of(out: list[dict[str, Any]], event: Event) -> dict[str, Any] | None:
    """The latest row of the miss a ``stored`` event follows (not always the last row: the
    calls of concurrent tasks of one request interleave)."""
    for row in out[::-1]:
        if (
            row["function"] == event.function
            and row["key"] == event.key
            and row["outcome"] in (events.MISS, events.ERROR)
            and not row["stored"]
        ):
            return row
    return None
