"""A 3-node memcached pool: a node killed, frozen past the dead timeout, restarted.

The guarantee under test (README, "Running in production"): after a committed write, no
call returns a value computed before it, whatever one memcached node of the pool does, as
long as the version counters live in an alias whose keys do not move between nodes
(``CACHEDCALL["VERSIONS_CACHE"]``, here a Redis). With the counters in the pool itself, a
lost node's counters re-seed: a miss, never a stale hit.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from django.core.cache import caches
from django.test import override_settings

from cachedcall import bump
from cachedcall import cached
from tests import names
from tests import servers
from tests.testapp.models import ClubClass

N = 30
runs: Counter[int] = Counter()
state = [0]  # the "database": a write increments it, then bumps ClubClass


@cached(timeout=300, depends_on=[ClubClass])
def item(n):
    runs[n] += 1
    return (n, state[0])


def _write():
    state[0] += 1
    bump(ClubClass)


def _pool_config(nodes):
    return {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": [node.location for node in nodes],
        "OPTIONS": {**servers.MEMCACHED_OPTIONS, "dead_timeout": 1},
    }


@pytest.fixture
def nodes(memcached):
    return memcached(3)


@pytest.fixture
def pool(nodes, redis_server):
    """The recommended shape: entries in the pool, version counters in Redis."""
    config = {"default": _pool_config(nodes), "versions": servers.redis_config(redis_server)}
    with override_settings(CACHES=config, CACHEDCALL={"VERSIONS_CACHE": "versions"}):
        caches["versions"].clear()
        yield nodes
        caches.close_all()


@pytest.fixture
def pool_only(nodes):
    """Counters in the pool too (no VERSIONS_CACHE)."""
    with override_settings(CACHES={"default": _pool_config(nodes)}):
        yield nodes
        caches.close_all()


@pytest.fixture(autouse=True)
def _fresh():
    runs.clear()
    state[0] = 0


def _node_of(key):
    cache = caches["default"]
    return cache._cache.hasher.get_node(cache.make_key(key))


def _by_node(nodes):
    placed = {node.location: [] for node in nodes}
    for n in range(N):
        placed[_node_of(item.key(n))].append(n)
    return placed


def _all_current():
    """Call every item; assert none returns a value computed before the last write."""
    for n in range(N):
        assert item(n) == (n, state[0]), f"item({n}) returned a value older than the last write"


def _settle(seconds):
    # Keep calling through a node's dead timeout, so its return happens under load.
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _all_current()


def test_entries_spread_across_the_nodes_and_a_killed_node_costs_only_its_own_entries(pool):
    _all_current()
    placed = _by_node(pool)
    assert all(len(ns) >= 3 for ns in placed.values()), placed  # every node holds entries
    victim = pool[0]
    lost = set(placed[victim.location])
    victim.stop()
    runs.clear()
    _all_current()  # every call returns the right value: fail open, then the survivors
    assert {n for n in range(N) if runs[n]} == lost  # entries on the survivors still hit
    _all_current()  # (a call whose read failed was not stored; this one is)
    runs.clear()
    _all_current()
    assert sum(runs.values()) == 0  # the lost entries live on the survivors now
    _write()
    _all_current()
    victim.start()  # empty, back after the dead timeout
    _settle(1.5)
    _all_current()


def test_a_node_frozen_past_the_dead_timeout_across_a_write_never_serves_what_it_held(pool):
    _all_current()
    victim = pool[1]
    held = _by_node(pool)[victim.location]
    assert held
    victim.freeze()
    _all_current()  # the first read of a frozen key waits the client timeout, then fails open
    _write()  # committed while the node is frozen: its entries now predate the write
    _all_current()
    _settle(1.2)  # past the dead timeout: pymemcache will try the node again
    victim.thaw()
    # The node is back with everything it held; the keys move back to it. Its entries are
    # stamped with the counters before the write, so they are misses, never hits.
    from pymemcache.client.base import Client

    direct = Client(victim.location)
    try:
        old = direct.get(caches["default"].make_key(item.key(held[0])))
    finally:
        direct.close()
    assert old is not None  # the node really did come back with the pre-write entry
    runs.clear()
    _settle(2.0)
    assert all(runs[n] >= 1 for n in held)  # its entries were recomputed, not served


def test_counters_on_a_killed_node_re_seed_as_a_miss_never_a_stale_hit(pool_only):
    _all_current()
    table_key = names.key("v:testapp.clubclass")
    victim = next(node for node in pool_only if node.location == _node_of(table_key))
    victim.stop()
    runs.clear()
    _all_current()
    assert all(runs[n] >= 1 for n in range(N))  # the counter is new: every entry is a miss
    _write()  # the bump goes to the node the counter moved to
    _all_current()
    victim.start()  # empty: when its keys move back, the counter re-seeds again
    _settle(1.5)
    _all_current()


def test_why_counters_do_not_belong_in_the_pool_a_frozen_node_brings_old_counters_back(pool_only):
    # The hazard the recommended shape avoids (and system check W003 warns of): the node
    # holding a version counter is frozen while a write bumps it; pymemcache moves the key
    # to another node meanwhile, and when the node comes back, so does the old counter,
    # matching the old entries stamped with it.
    _all_current()
    victim = next(node for node in pool_only if node.location == _node_of(names.key("v:testapp.clubclass")))
    victim.freeze()
    for n in range(N):
        item(n)
    _write()
    time.sleep(1.2)
    victim.thaw()
    deadline, stale = time.monotonic() + 2.0, 0
    while time.monotonic() < deadline and not stale:
        stale = sum(item(n)[1] != state[0] for n in range(N))
    assert stale > 0


def test_system_check_w003_warns_of_counters_in_a_memcached_pool(pool_only):
    from cachedcall.checks import check_settings

    assert "cachedcall.W003" in [m.id for m in check_settings()]
    with override_settings(CACHEDCALL={"VERSIONS_CACHE": "default"}):
        assert "cachedcall.W003" in [m.id for m in check_settings()]


def test_system_check_w003_is_quiet_for_the_recommended_shape(pool):
    from cachedcall.checks import check_settings

    assert "cachedcall.W003" not in [m.id for m in check_settings()]
