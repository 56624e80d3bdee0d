"""A network partition between a writer and its counter store, through a loopback proxy.

The writer (this process) talks to a real memcached or Redis through :class:`tests.proxy.Proxy`
with the client options the README recommends (``tests/servers.py``); the proxy then drops
everything (``blackhole``: a partition) or resets every connection (``reset``), and heals.
What must hold (issue 14):

- a bump made during the partition is never lost: the writer's retry thread lands it after
  the partition heals, though the writer makes no further cached call;
- during the partition, calls return correct values (computed uncached), nothing raises,
  one WARNING per outage window, and a call costs at most about the client timeout;
- another process (a reader started as a subprocess) never returns a value computed before
  the write once the retry has landed, and the window from heal to landed is bounded by
  the retry's longest pause plus one client timeout.

Run as ``python -m tests.test_partition reader <cache config json> <data file>``, this module
is that reader: it calls a cached function of the data file until its stdin closes, and
prints ``<monotonic time the call started> <value>`` per call. (Nothing at the top of the
module needs Django's apps: the reader imports it before ``django.setup()``.)
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cachedcall
from cachedcall import cached

calls: Counter[str] = Counter()
#: What the measurements may add to their bound on a loaded machine (2 shared cores).
SLACK = 0.5
#: The model the writer's bumps are about (as a label: see the module's docstring).
MODEL = "testapp.Club"


@cached(timeout=600)
def square(n: int) -> int:
    calls["square"] += 1
    return n * n


class Partitioned:
    """A real server, the proxy in front of it, and what the tests need to know of both."""

    def __init__(self, kind: str, server: Any, proxy: Any) -> None:
        from tests import servers

        self.kind = kind
        self.server = server
        self.proxy = proxy
        if kind == "memcached":
            self.config = {**servers.memcached_config(server), "LOCATION": proxy.location}
            self.direct = servers.memcached_config(server)
            self.timeout = float(servers.MEMCACHED_OPTIONS["timeout"])
        else:
            self.config = {**servers.redis_config(server), "LOCATION": f"redis://{proxy.location}/0"}
            self.direct = servers.redis_config(server)
            self.timeout = float(servers.REDIS_OPTIONS["socket_timeout"])

    def counter(self, key: str) -> int | None:
        """The counter under ``key`` as the server holds it, read past the proxy by a client
        of its own (another process's view: it never saw the partition)."""
        from django.core.cache import caches

        made = caches["default"].make_key(key)
        if self.kind == "memcached":
            from pymemcache.client.base import Client

            client = Client(("127.0.0.1", self.server.port), timeout=1)
            try:
                value = client.get(made)
            finally:
                client.close()
        else:
            import redis

            client = redis.Redis(port=self.server.port, socket_timeout=1)
            try:
                value = client.get(made)
            finally:
                client.close()
        return None if value is None else int(value)


@pytest.fixture(params=["memcached", "redis"])
def partitioned(request: pytest.FixtureRequest) -> Iterator[Partitioned]:
    """The 'default' alias through a proxy to the session's memcached or Redis."""
    from django.core.cache import caches
    from django.test import override_settings

    from cachedcall import bumps
    from tests.proxy import Proxy

    server = request.getfixturevalue(f"{request.param}_server")
    proxy = Proxy(server.port).start()
    world = Partitioned(request.param, server, proxy)
    try:
        with override_settings(CACHES={"default": world.config}):
            caches["default"].clear()
            yield world
            proxy.forward()
            # No retry may outlive the settings it was made under.
            _wait(lambda: not bumps.is_dirty(), 10)
            caches["default"].close()
    finally:
        proxy.stop()


def _wait(done: Any, within: float, step: float = 0.002) -> float:
    """Poll ``done()`` until it is true or ``within`` seconds passed; return the time taken."""
    started = time.monotonic()
    while not done() and time.monotonic() - started < within:
        time.sleep(step)
    return time.monotonic() - started


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "cachedcall" and r.levelno == logging.WARNING]


def _table_key() -> str:
    from tests import names

    return names.key("v:" + MODEL.lower())


# --- (a) a bump during the partition is never lost --------------------------------------------


@pytest.mark.parametrize("fault", ["blackhole", "reset"])
def test_a_bump_during_a_partition_lands_after_it_heals_without_another_call(partitioned, fault, capsys):
    from cachedcall import bumps
    from cachedcall import retries

    key = _table_key()
    cachedcall.bump(MODEL)
    before = partitioned.counter(key)
    assert before is not None
    getattr(partitioned.proxy, fault)()
    started = time.monotonic()
    cachedcall.bump(MODEL)  # the writer's bump: it cannot reach the store
    cost = time.monotonic() - started
    assert len(bumps.dirty_keys()) == 2  # the table's counter and its epoch
    # One client timeout for the bump, not one per counter: after the first failure the
    # store is not asked again in that bump (redis-py has no dead mark: each would wait).
    assert cost <= partitioned.timeout + SLACK, cost
    time.sleep(1.5)  # the retry thread keeps trying through the partition, in vain
    assert partitioned.counter(key) == before and bumps.is_dirty()
    partitioned.proxy.forward()
    # From here on the writer makes no call at all: only its retry thread can land the bump.
    window = _wait(lambda: (partitioned.counter(key) or 0) > before, 10)
    assert (partitioned.counter(key) or 0) > before, "the bump was lost"
    assert window <= retries.LONGEST + partitioned.timeout + SLACK, window
    _wait(lambda: not bumps.is_dirty(), 5)
    assert not bumps.is_dirty()
    assert cachedcall.stats()["bump_failures"] == {"default": 2}
    with capsys.disabled():
        print(f"\n[{partitioned.kind}/{fault}] failed bump cost {cost:.3f} s; heal -> landed {window:.3f} s")


# --- (b) during the partition: right values, nothing raised, one WARNING, bounded cost --------


def test_calls_during_a_partition_are_computed_uncached_logged_once_per_window_and_bounded(
    partitioned, cachedcall_log, capsys
):
    assert square(3) == 9 and square(3) == 9
    assert calls["square"] == 1  # cached through the proxy
    costs: list[float] = []
    for window in (1, 2):
        partitioned.proxy.blackhole()
        computed = calls["square"]
        for _ in range(4):
            started = time.monotonic()
            assert square(3) == 9  # the right value, and nothing raised
            costs.append(time.monotonic() - started)
        assert calls["square"] == computed + 4  # each computed: the cache is out of reach
        assert cachedcall.stats()["down"] == ["default"]
        assert len(_warnings(cachedcall_log)) == window  # one per outage window
        partitioned.proxy.forward()
        # The alias answers again: at once on Redis; pymemcache tries a dead server again
        # between dead_timeout and twice that later (it checks at most once per dead_timeout).
        recovered = _wait(lambda: square(3) == 9 and not cachedcall.stats()["down"], 15, step=0.1)
        assert cachedcall.stats()["down"] == []
        answers = [
            r
            for r in cachedcall_log.records
            if r.levelno == logging.INFO and "answers again" in r.getMessage()
        ]
        assert len(answers) == window
        assert len(_warnings(cachedcall_log)) == window
        with capsys.disabled():
            print(
                f"\n[{partitioned.kind}] window {window}: alias answered again {recovered:.2f} s after the heal"
            )
    assert max(costs) <= partitioned.timeout + SLACK, costs
    assert cachedcall.stats()["errors"]["default"] >= 8
    before = calls["square"]
    square(3)
    square(3)
    assert calls["square"] <= before + 1  # caching again
    with capsys.disabled():
        print(f"[{partitioned.kind}] call cost in the partition: max {max(costs):.3f} s, calls {costs!r}")


# --- (c) no stale value in another process once the retry landed ------------------------------


def _reader(config: dict[str, Any], data: Path, errors: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.test_partition", "reader", json.dumps(config), str(data)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("reader_side", ["direct", "partitioned"])
def test_after_the_heal_no_reader_returns_a_value_computed_before_the_write_once_the_retry_landed(
    partitioned, reader_side, tmp_path, capsys
):
    from cachedcall import bumps
    from cachedcall import retries

    data = tmp_path / "data"
    data.write_text("old")
    key = _table_key()
    cachedcall.bump(MODEL)
    before = partitioned.counter(key)
    # "direct": the partition is between the writer and the store only; "partitioned": the
    # reader is behind the same proxy (on the writer's side of the partition).
    config = partitioned.direct if reader_side == "direct" else partitioned.config
    lines: list[str] = []
    ready = threading.Event()
    stderr = tmp_path / "reader.stderr"
    with stderr.open("w") as errors, _reader(config, data, errors) as reader:

        def collect() -> None:
            assert reader.stdout is not None
            for line in reader.stdout:
                lines.append(line.strip())
                ready.set()

        collector = threading.Thread(target=collect, daemon=True)
        collector.start()
        try:
            assert ready.wait(60), stderr.read_text()
            time.sleep(0.3)  # the reader caches "old" and hits it
            partitioned.proxy.blackhole()
            data.write_text("new")
            cachedcall.bump(MODEL)  # the write's bump, lost to the partition for now
            assert bumps.is_dirty()
            time.sleep(1.0)
            partitioned.proxy.forward()
            healed = time.monotonic()
            _wait(lambda: (partitioned.counter(key) or 0) > before, 10)
            # CLOCK_MONOTONIC is one clock for every process of the machine: the reader's
            # times compare with ours.
            landed = time.monotonic()
            time.sleep(1.0)  # the reader goes on after the landing
        finally:
            assert reader.stdin is not None
            reader.stdin.close()
            reader.wait(30)
            collector.join(10)
    assert reader.returncode == 0, stderr.read_text()
    window = landed - healed
    assert (partitioned.counter(key) or 0) > before, "the bump was lost"
    assert window <= retries.LONGEST + partitioned.timeout + SLACK, window
    calls_made = [(float(at), value) for at, value in (line.split() for line in lines)]
    assert calls_made[0][1] == "old"
    after = [value for at, value in calls_made if at >= landed]
    assert len(after) >= 10, calls_made[-5:]
    assert set(after) == {"new"}, [(at - landed, value) for at, value in calls_made if at >= landed - 0.1]
    stale = [at - healed for at, value in calls_made if value == "old" and at >= healed]
    last_old = f"{max(stale):.3f} s after the heal" if stale else "before the heal"
    with capsys.disabled():
        print(
            f"\n[{partitioned.kind}/reader {reader_side}] heal -> landed {window:.3f} s; the reader's "
            f"last 'old' started {last_old} ({len(calls_made)} calls, {len(after)} after the landing)"
        )


def _reader_main(config: dict[str, Any], data: Path) -> None:
    """The reader process: call :func:`shared_value` until stdin closes."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django
    from django.conf import settings

    django.setup()
    settings.CACHES = {"default": config}

    # Named explicitly: this module runs as __main__ here.
    @cached(timeout=600, depends_on=[MODEL], prefix="tests.test_partition.shared_value")
    def shared_value(path: str) -> str:
        return Path(path).read_text()

    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    while not stop.is_set():
        started = time.monotonic()
        print(f"{started:.6f} {shared_value(str(data))}", flush=True)
        time.sleep(0.005)


if __name__ == "__main__" and sys.argv[1:2] == ["reader"]:
    _reader_main(json.loads(sys.argv[2]), Path(sys.argv[3]))
