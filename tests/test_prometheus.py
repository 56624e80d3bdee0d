"""cachedcall.contrib.prometheus: calls and durations on a real CollectorRegistry."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import cachedcall
from cachedcall import cached
from cachedcall import events
from cachedcall.contrib import prometheus

NAME = "tests.test_prometheus.square"


@cached(timeout=60)
def square(x):
    return x * x


@pytest.fixture
def registry():
    return CollectorRegistry()


def samples(registry):
    """``{(sample name, function, outcome, le): value}`` as a scrape of ``registry`` reads it."""
    text = generate_latest(registry).decode()
    return {
        (s.name, s.labels.get("function"), s.labels.get("outcome"), s.labels.get("le")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_each_call_is_counted_once_by_the_outcome_that_ended_it(registry):
    with prometheus.export(registry):
        square(2), square(2), square(2), square(3)
        square.invalidate(3)
        with cachedcall.disabled():
            square(2)
        found = samples(registry)
    calls = {
        outcome: value for (name, _, outcome, _), value in found.items() if name == "cachedcall_calls_total"
    }
    # No "stored" and no "invalidated": neither is a call, so the sum is the calls made.
    assert calls == {"hit": 2, "miss": 2, "disabled": 1}
    assert found["cachedcall_call_duration_seconds_count", NAME, "hit", None] == 2
    assert found["cachedcall_call_duration_seconds_count", NAME, "miss", None] == 2
    assert found["cachedcall_call_duration_seconds_sum", NAME, "miss", None] > 0
    assert found["cachedcall_call_duration_seconds_sum", NAME, "disabled", None] == 0


def test_names_types_and_buckets_follow_prometheus_conventions(registry):
    with prometheus.export(registry, buckets=(0.001, 1.0)):
        square(4)
        text = generate_latest(registry).decode()
        buckets = {le for (name, _, _, le) in samples(registry) if name.endswith("_bucket")}
    assert "# TYPE cachedcall_calls_total counter" in text
    assert "# TYPE cachedcall_call_duration_seconds histogram" in text
    assert f'cachedcall_calls_total{{function="{NAME}",outcome="miss"}} 1.0' in text
    assert buckets == {"0.001", "1.0", "+Inf"}
    assert prometheus.DURATION_BUCKETS[0] == 0.0001  # hits are microseconds, not milliseconds


def test_close_stops_counting_and_unregisters(registry):
    exporter = prometheus.export(registry)
    square(5)
    exporter.close()
    exporter.close()
    square(5)
    assert samples(registry) == {}
    assert not events.active
    with prometheus.export(registry):  # and a new exporter may register again
        square(5)
        assert samples(registry)["cachedcall_calls_total", NAME, "hit", None] == 1
    assert samples(registry) == {}  # closed by its block


def test_a_second_export_on_one_registry_says_what_to_do(registry):
    with prometheus.export(registry):
        with pytest.raises(ValueError, match=r"export\(\) once per registry and process"):
            prometheus.export(registry)
        square(6)
    assert not events.active  # the refused exporter subscribed nothing


def test_a_failed_export_leaves_the_registry_as_it_was(registry):
    from prometheus_client import Gauge

    Gauge("cachedcall_call_duration_seconds", "someone else's", registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        prometheus.export(registry)
    assert set(samples(registry)) == {("cachedcall_call_duration_seconds", None, None, None)}
    assert not events.active


def test_bad_buckets_are_prometheus_clients_own_error(registry):
    with pytest.raises(ValueError, match="Buckets not in sorted order"):
        prometheus.export(registry, buckets=(1.0, 0.5))
    assert samples(registry) == {}


def test_the_default_registry_is_prometheus_clients():
    import inspect

    from prometheus_client import REGISTRY

    assert inspect.signature(prometheus.export).parameters["registry"].default is REGISTRY
