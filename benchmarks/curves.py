"""Cost curves: how a call's cost grows with the work, written as JSON and drawn as PNGs.

    pip install -e ".[bench]"
    python benchmarks/curves.py                    # every curve (about 5 minutes on 2 cores)
    python benchmarks/curves.py --fast             # few points, short loops: a check, < 90 s
    python benchmarks/curves.py --only map         # one family, merged into the existing JSON
    python benchmarks/curves.py --draw-only        # redraw the PNGs from the JSON, no measuring

A full run writes ``benchmarks/results/curves.json`` and ``docs/_static/curves/*.png``. A
``--fast`` run writes ``benchmarks/results/curves-fast.json`` and its PNGs beside it, in
``benchmarks/results/curves-fast/``, so that a quick check never replaces the published
charts (``--json`` and ``--charts`` choose other places).

The curve families (``--only`` takes these names):

``dependencies``
    Hit and miss time of a one-argument function against the number of ``depends_on``
    items (0, 1, 3, 10, 30), on locmem, memcached and redis: model classes (a static list;
    the test app and Django's own apps hold fewer than 30 models, so that series stops at
    10), distinct rows (unsaved ``Club(pk=i)`` instances, which need no database: a static
    list, and the same list returned by ``depends_on=lambda n: ...``, whose counter keys
    are derived again on every call). The hand-written get/set pattern, django-cache-memoize
    and dogpile.cache have no dependencies and are drawn as flat reference lines.
``sizes``
    Hit and miss time against the value's size (1 KB, 100 KB, 1 MB pickled): a list of
    dicts ``{"id": int, "name": str, "body": 200 random bytes}``, as many as make the size,
    so both the bytes and the number of objects to unpickle grow. cachedcall, the
    hand-written pattern, the peers, and ``near=True`` / ``near=True, copy=False`` on
    memcached and redis (the near tier is off for LocMemCache).
``map``
    The time of a batch of n calls (1 .. 100), all hits and all misses: ``f.map(range(n))``
    against ``[f(i) for i in range(n)]``, the hand-written loop of ``cache.get``, one
    hand-written ``cache.get_many`` of the n keys (the floor of any batch read), and
    dogpile's ``cache_multi_on_arguments``; the hits also with ``near=True`` on memcached
    and redis.
``throughput``
    Hits per second of 1, 2 and 4 processes (one thread each) hitting memcached or redis
    together for a fixed window: cachedcall, the hand-written pattern and dogpile.cache.

Every timing is in process: a ``time.perf_counter`` loop long enough to be stable (20 ms
and more), repeated; the medians are reported. The repeats of a panel's points are
interleaved (one round over every point, then the next round) so that a drift of the
machine spreads over all of them rather than bending one curve. Every timed loop is
checked: a hit loop must not run the function, a miss loop must run it once per call, and
the cache must report no errors, else the run stops (a cache that fails open would time
the function, not the cache).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import multiprocessing
import os
import pickle
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from benchmarks.charts import draw  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CHARTS = ROOT / "docs" / "_static" / "curves"
FAMILIES = ("dependencies", "sizes", "map", "throughput")
BACKENDS = ("locmem", "memcached", "redis")
#: The value of the dependencies, map and throughput curves: run.py's list of 20 small dicts.
VALUE = [{"id": i, "name": f"class {i}", "weekday": i % 7} for i in range(20)]
TIMEOUT = 300


@dataclass(frozen=True)
class Plan:
    """What one run measures, and how long it times each point."""

    fast: bool
    repeats: int
    min_time: float  # seconds per timed loop
    dependencies: tuple[int, ...]
    sizes: tuple[int, ...]  # bytes, pickled
    batches: tuple[int, ...]
    processes: tuple[int, ...]
    window: float  # seconds per throughput window
    windows: int  # throughput windows per point
    warmup: float  # seconds of untimed calls before a panel is timed


FULL = Plan(
    fast=False,
    # Many short repeats rather than a few long ones: on a shared 2-core machine the load
    # comes in bursts of seconds, and a median of 11 rounds sits out more of them.
    repeats=11,
    min_time=0.022,
    dependencies=(0, 1, 3, 10, 30),
    sizes=(1_000, 100_000, 1_000_000),
    batches=(1, 2, 5, 10, 25, 50, 100),
    processes=(1, 2, 4),
    window=2.0,
    windows=3,
    warmup=0.3,
)
FAST = Plan(
    fast=True,
    repeats=3,
    min_time=0.005,
    dependencies=(0, 1, 10),
    sizes=(1_000, 1_000_000),
    batches=(1, 10, 100),
    processes=(1, 2),
    window=0.5,
    windows=1,
    warmup=0.05,
)


# --- timing ------------------------------------------------------------------------------------

Timer = Callable[[int], float]  # loops -> seconds


@dataclass
class Item:
    """One point of one series: a timed loop and what it must compute per loop."""

    series: str
    x: float | None  # None: a reference drawn as a flat line
    timer: Timer
    counter: list[int]  # computations of the wrapped function so far
    per_loop: int  # computations one loop must make: 0 for hits, n for n misses
    fc: Any = None  # cachedcall's FunctionCache, whose miss count a hit loop must not move
    verify: Callable[[], bool] | None = None  # for a loop with no function to count
    extra: dict[str, Any] = field(default_factory=dict)
    loops: int = 1
    samples: list[float] = field(default_factory=list)


def _hits(call: Callable[[int], Any]) -> Timer:
    def timer(loops: int) -> float:
        started = time.perf_counter()
        for _ in range(loops):
            call(1)
        return time.perf_counter() - started

    return timer


_fresh = [10_000_000 + os.getpid() * 100_000_000]


def _fresh_args(count: int) -> range:
    """Arguments never used before in this process: each call with one is a miss."""
    start = _fresh[0]
    _fresh[0] += count
    return range(start, start + count)


def _misses(call: Callable[[int], Any]) -> Timer:
    def timer(loops: int) -> float:
        args = _fresh_args(loops)
        started = time.perf_counter()
        for n in args:
            call(n)
        return time.perf_counter() - started

    return timer


def _batches(call: Callable[[range], Any], n: int, miss: bool) -> Timer:
    hits = range(n)

    def timer(loops: int) -> float:
        batches = [_fresh_args(n) if miss else hits for _ in range(loops)]
        started = time.perf_counter()
        for batch in batches:
            call(batch)
        return time.perf_counter() - started

    return timer


def _check_health() -> None:
    import cachedcall

    stats = cachedcall.stats()
    bad = {name: stats[name] for name in ("errors", "too_large", "corrupt", "bad_signatures") if stats[name]}
    if bad:
        raise RuntimeError(f"cache trouble during the benchmark: {bad}; the numbers would be meaningless")


def _timed(item: Item, loops: int) -> float:
    """Run ``loops`` loops of ``item``; refuse a hit that missed or a miss that hit."""
    before = item.counter[0]
    misses = item.fc.misses if item.fc is not None else 0
    seconds = item.timer(loops)
    made = item.counter[0] - before
    where = f"{item.series} at x={item.x}"
    if made != item.per_loop * loops:
        raise RuntimeError(f"{where}: {made} computations in {loops} loops, expected {item.per_loop * loops}")
    if item.fc is not None and item.per_loop == 0 and item.fc.misses != misses:
        raise RuntimeError(f"{where}: cachedcall counted {item.fc.misses - misses} misses in a hit loop")
    if item.verify is not None and not item.verify():
        raise RuntimeError(f"{where}: the loop did not find every entry")
    _check_health()
    return seconds


def _calibrate(item: Item, min_time: float) -> int:
    loops = 1
    while True:
        elapsed = _timed(item, loops)
        if elapsed >= min_time:
            # A margin, so that the repeats stay above min_time when the machine is quicker.
            return max(loops, round(loops * 1.15))
        wanted = int(loops * min_time * 1.3 / max(elapsed, 1e-7)) + 1
        loops = max(loops + 1, min(wanted, loops * 10))


def measure(items: list[Item], plan: Plan, label: str, clear: Callable[[], None] | None = None) -> None:
    """Time every item ``plan.repeats`` times, interleaved, into ``item.samples`` (µs per loop).

    :param clear: empties the caches; given for misses, which would otherwise fill the
        servers (and this process's locmem) with a few hundred MB of 1 MB values. Each item
        then makes one untimed miss, so that the timed ones find the counters and the
        connections as a steady run does.
    """
    started = time.perf_counter()

    def warm() -> None:
        for item in items:
            item.timer(1)  # a hit loop's first call stores the entry; a miss warms up

    warm()
    # The first ~0.2 s of calls to a server idle until then run up to twice slower (the
    # cores' clocks and the server's threads wake up): spend them untimed.
    until = time.perf_counter() + plan.warmup
    while time.perf_counter() < until:
        warm()
    for item in items:
        item.loops = _calibrate(item, plan.min_time)
    for round_ in range(plan.repeats):
        if clear is not None:
            clear()
            warm()
        shift = round_ % len(items)
        for item in items[shift:] + items[:shift]:
            item.samples.append(_timed(item, item.loops) / item.loops * 1e6)
    if clear is not None:
        clear()
    print(f"{label}  ({len(items)} points, {time.perf_counter() - started:.1f} s)", flush=True)
    for series, group in itertools.groupby(items, key=lambda i: i.series):
        points = "  ".join(
            f"{_fmt_x(i.x)}: {statistics.median(i.samples):,.1f}" for i in sorted(group, key=_x_key)
        )
        print(f"    {series:<44} {points}", flush=True)


def _x_key(item: Item) -> float:
    return -1.0 if item.x is None else item.x


def _fmt_x(x: float | None) -> str:
    return "ref" if x is None else f"{x:g}"


def _panel(col: str, row: str, items: list[Item]) -> dict[str, Any]:
    series: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        point = {
            "x": item.x,
            "median": round(statistics.median(item.samples), 3),
            "min": round(min(item.samples), 3),
            "samples": [round(s, 3) for s in item.samples],
            "loops": item.loops,
            **item.extra,
        }
        series.setdefault(item.series, []).append(point)
    for points in series.values():
        points.sort(key=lambda p: -1 if p["x"] is None else p["x"])
    return {"col": col, "row": row, "series": series}


# --- the servers, Django, the contenders --------------------------------------------------------


def start_servers() -> list[Any]:
    from tests import servers as test_servers

    memcached = test_servers.memcached()
    # 1 MB values need an item size above memcached's 1 MB default, and room for a few.
    memcached.args[memcached.args.index("-m") + 1] = "256"
    memcached.args += ["-I", "8m"]
    redis = test_servers.redis()
    # A safety net only: the misses' values are cleared after every round.
    redis.args += ["--maxmemory", "512mb", "--maxmemory-policy", "allkeys-lru"]
    return [memcached.start(), redis.start()]


def configure(locations: dict[str, str]) -> None:
    """Django as run.py sets it up: settings.CACHES set after django.setup()."""
    from benchmarks import run

    run.configure(argparse.Namespace(**locations))


def use_alias(alias: str) -> None:
    from benchmarks import run

    run.use_alias(alias)


def _counted(value: Any) -> tuple[Callable[[int], Any], list[int]]:
    """A fresh function returning ``value``, and the count of its calls."""
    counter = [0]

    def f(n: int) -> Any:
        counter[0] += 1
        return value

    return f, counter


_ids = itertools.count()


def _tag() -> str:
    # Short and unique: every contender keeps its own entries, under short keys (memcached
    # keys are hashed in pure Python, so a long key would cost the contender using it).
    return f"k{next(_ids)}"


def cachedcall_fn(backend: str, value: Any, **options: Any) -> tuple[Any, list[int], Any]:
    """``@cached(...)`` over a counted function; raises what the decorator raises."""
    from cachedcall import cached
    from cachedcall.decorators import function_cache

    f, counter = _counted(value)
    decorated = cached(timeout=TIMEOUT, cache=backend, prefix=_tag(), **options)(f)
    return decorated, counter, function_cache(decorated)


def hand_fn(backend: str, value: Any) -> tuple[Callable[[int], Any], list[int], str]:
    """The pattern cachedcall replaces, as a careful hand-writer writes it."""
    from django.core.cache import caches

    cache = caches[backend]
    f, counter = _counted(value)
    tag = _tag()

    def hand(n: int) -> Any:
        key = f"{tag}:{n}"
        found = cache.get(key)
        if found is None:
            found = f(n)
            cache.set(key, found, TIMEOUT)
        return found

    return hand, counter, tag


def memoize_fn(backend: str, value: Any) -> tuple[Callable[[int], Any], list[int]]:
    from cache_memoize import cache_memoize

    f, counter = _counted(value)
    return cache_memoize(TIMEOUT, prefix=_tag(), cache_alias=backend)(f), counter


def region(backend: str, locations: dict[str, str]) -> Any:
    """A dogpile.cache region on the same server (run.py's configuration)."""
    from dogpile.cache import make_region

    if backend == "memcached":
        arguments: dict[str, Any] = {"url": [locations["memcached"]]}
        return make_region().configure(
            "dogpile.cache.pymemcache", expiration_time=TIMEOUT, arguments=arguments
        )
    if backend == "redis":
        host, port = locations["redis"].rsplit(":", 1)
        arguments = {"host": host, "port": int(port)}
        return make_region().configure("dogpile.cache.redis", expiration_time=TIMEOUT, arguments=arguments)
    return make_region().configure("dogpile.cache.memory_pickle", expiration_time=TIMEOUT)


def dogpile_fn(reg: Any, value: Any) -> tuple[Callable[[int], Any], list[int]]:
    f, counter = _counted(value)
    return reg.cache_on_arguments(namespace=_tag())(f), counter


def clearer(backend: str, reg: Any) -> Callable[[], None]:
    from django.core.cache import caches

    def clear() -> None:
        # Django's clear() is FLUSHDB / flush_all on the servers, which dogpile shares; its
        # in-process memory backend keeps a dict of its own.
        caches[backend].clear()
        store = getattr(reg.backend, "_cache", None)
        if isinstance(store, dict):
            store.clear()

    return clear


def _references(backend: str, mode: str, value: Any, reg: Any, x: float | None) -> list[Item]:
    timer = _hits if mode == "hit" else _misses
    per_loop = 0 if mode == "hit" else 1
    hand, hand_count, _ = hand_fn(backend, value)
    memoize, memoize_count = memoize_fn(backend, value)
    dogpile, dogpile_count = dogpile_fn(reg, value)
    return [
        Item("hand-written get/set", x, timer(hand), hand_count, per_loop),
        Item("django-cache-memoize", x, timer(memoize), memoize_count, per_loop),
        Item("dogpile.cache", x, timer(dogpile), dogpile_count, per_loop),
    ]


# --- the families -------------------------------------------------------------------------------


def _models() -> list[Any]:
    """Every installed model a dependency may name, in a stable order."""
    from django.apps import apps

    from cachedcall import conf

    ignored = conf.get().ignore_models
    found = [m for m in apps.get_models() if m._meta.label_lower not in ignored]
    return sorted(found, key=lambda m: m._meta.label_lower)


def dependencies(plan: Plan, locations: dict[str, str]) -> dict[str, Any]:
    from tests.testapp.models import Club

    models = _models()
    rows = [Club(pk=i, name=f"club {i}") for i in range(1, max(plan.dependencies) + 1)]
    panels = []
    for backend in BACKENDS:
        use_alias(backend)
        reg = region(backend, locations)
        for mode in ("hit", "miss"):
            timer = _hits if mode == "hit" else _misses
            per_loop = 0 if mode == "hit" else 1
            items = _references(backend, mode, VALUE, reg, None)
            for n in plan.dependencies:
                kinds: list[tuple[str, Any]] = [
                    ("rows, static list", rows[:n]),
                    ("rows, depends_on=lambda", _returning(rows[:n])),
                ]
                if n <= len(models):
                    kinds.insert(0, ("models, static list", models[:n]))
                for kind, depends in kinds:
                    f, counter, fc = cachedcall_fn(backend, VALUE, depends_on=depends)
                    f(0)  # resolves the settings, so that the keys can be counted
                    keys = 1 + len(fc.counter_keys((0,), {}))
                    extra = {"keys_read": keys}
                    items.append(Item(f"cachedcall, {kind}", n, timer(f), counter, per_loop, fc, extra=extra))
            items.sort(key=lambda i: (i.series, _x_key(i)))
            clear = None if mode == "hit" else clearer(backend, reg)
            measure(items, plan, f"dependencies / {backend} / {mode}", clear)
            panels.append(_panel(backend, mode, items))
    return {
        "title": "Hit and miss time against the number of depends_on items",
        "ylabel": "median, µs per call",
        "xlabel": "depends_on items",
        "xscale": "symlog",
        "yscale": "log",
        "unit": "µs per call",
        "panels": panels,
        "notes": (
            "keys_read: the keys of the one get_many of a hit (entry, 2 generations, counters); "
            f"a row adds its own counter, the model's rows share one epoch; {len(models)} models "
            "are installed, so the models series stops there."
        ),
    }


def _returning(items: list[Any]) -> Callable[[int], list[Any]]:
    return lambda n: items


def payload(size: int) -> list[dict[str, Any]]:
    """A list of dicts whose pickle is about ``size`` bytes: ints, short strs, bytes."""
    rng = random.Random(size)

    def row(i: int) -> dict[str, Any]:
        return {"id": i, "name": f"row {i}", "body": rng.randbytes(200)}

    each = len(pickle.dumps([row(i) for i in range(100)], pickle.HIGHEST_PROTOCOL)) / 100
    return [row(i) for i in range(max(1, round(size / each)))]


#: The near tier's series: the entry kept in this process (on memcached its counters read per
#: hit, on Redis nothing read), with each caller's own copy unpickled, or one shared value.
#: LocMemCache is in the process already: the tier is off there, and not drawn.
NEAR = (
    ("cachedcall, near=True", {"near": True}),
    ("cachedcall, near=True, copy=False", {"near": True, "copy": False}),
)


def sizes(plan: Plan, locations: dict[str, str]) -> dict[str, Any]:
    values = {size: payload(size) for size in plan.sizes}
    panels = []
    for backend in BACKENDS:
        use_alias(backend)
        reg = region(backend, locations)
        for mode in ("hit", "miss"):
            timer = _hits if mode == "hit" else _misses
            per_loop = 0 if mode == "hit" else 1
            items = []
            for size, value in values.items():
                x = size / 1000
                pickled = len(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))
                extra = {"pickled_bytes": pickled, "rows": len(value)}
                near = NEAR if backend != "locmem" else ()
                for name, options in [("cachedcall", {}), *near]:
                    f, counter, fc = cachedcall_fn(backend, value, **options)
                    items.append(Item(name, x, timer(f), counter, per_loop, fc, extra=extra))
                items += _references(backend, mode, value, reg, x)
            items.sort(key=lambda i: (i.series, _x_key(i)))
            clear = None if mode == "hit" else clearer(backend, reg)
            measure(items, plan, f"sizes / {backend} / {mode}", clear)
            panels.append(_panel(backend, mode, items))
    return {
        "title": "Hit and miss time against the value's size (a list of dicts with 200-byte bodies)",
        "ylabel": "median, µs per call",
        "xlabel": "value size, KB (pickled)",
        "xscale": "log",
        "yscale": "log",
        "unit": "µs per call",
        "panels": panels,
        "notes": "near= series on memcached and redis only (the tier is off for LocMemCache).",
    }


def _map_items(backend: str, plan: Plan, reg: Any) -> tuple[list[Item], list[Item]]:
    """The hit and the miss points of the map family on one backend."""
    from django.core.cache import caches

    cache = caches[backend]
    f, counter, fc = cachedcall_fn(backend, VALUE)
    # With the near tier (off for locmem, in this process already): the batch served from it.
    near = cachedcall_fn(backend, VALUE, near=True) if backend != "locmem" else None
    hand, hand_count, tag = hand_fn(backend, VALUE)
    multi_count = [0]

    @reg.cache_multi_on_arguments(namespace=_tag())
    def multi(*ns: int) -> list[Any]:
        multi_count[0] += len(ns)
        return [VALUE for _ in ns]

    def loop(batch: range) -> list[Any]:
        return [f(i) for i in batch]

    def hand_loop(batch: range) -> list[Any]:
        return [hand(i) for i in batch]

    def get_many(batch: range) -> dict[str, Any]:
        return cache.get_many([f"{tag}:{i}" for i in batch])

    def dogpile_multi(batch: range) -> list[Any]:
        return multi(*batch)

    hits: list[Item] = []
    misses: list[Item] = []
    for n in plan.batches:

        def found_all(n: int = n) -> bool:
            return len(get_many(range(n))) == n

        # measure() warms every item before it times any: the hand-written loop's warm-up
        # stores the entries get_many reads, which found_all checks after each timing.
        hits += [
            Item("cachedcall f.map(range(n))", n, _batches(f.map, n, False), counter, 0, fc),
            Item("cachedcall [f(i) for i in range(n)]", n, _batches(loop, n, False), counter, 0, fc),
            Item("hand-written loop of cache.get", n, _batches(hand_loop, n, False), hand_count, 0),
            Item(
                "hand-written cache.get_many (floor)",
                n,
                _batches(get_many, n, False),
                [0],
                0,
                None,
                found_all,
            ),
            Item("dogpile cache_multi_on_arguments", n, _batches(dogpile_multi, n, False), multi_count, 0),
        ]
        if near is not None:
            near_f, near_counter, near_fc = near
            timer = _batches(near_f.map, n, False)
            hits.append(Item("cachedcall f.map(range(n)), near=True", n, timer, near_counter, 0, near_fc))
        misses += [
            Item("cachedcall f.map(range(n))", n, _batches(f.map, n, True), counter, n),
            Item("cachedcall [f(i) for i in range(n)]", n, _batches(loop, n, True), counter, n),
        ]
    return hits, misses


def batches(plan: Plan, locations: dict[str, str]) -> dict[str, Any]:
    panels = []
    for backend in BACKENDS:
        use_alias(backend)
        reg = region(backend, locations)
        hits, misses = _map_items(backend, plan, reg)
        for mode, items in (("hits", hits), ("misses", misses)):
            items.sort(key=lambda i: (i.series, _x_key(i)))
            clear = None if mode == "hits" else clearer(backend, reg)
            measure(items, plan, f"map / {backend} / {mode}", clear)
            panels.append(_panel(backend, mode, items))
    return {
        "title": "A batch of n calls: f.map() against loops and get_many",
        "ylabel": "median, µs per batch",
        "xlabel": "calls in the batch",
        "xscale": "log",
        "yscale": "log",
        "unit": "µs per batch",
        "panels": panels,
    }


# --- throughput: processes started together, one command queue each ---------------------------

KINDS = ("cachedcall", "hand-written get/set", "dogpile.cache")


def _throughput_worker(locations: dict[str, str], backend: str, commands: Any, results: Any) -> None:
    configure(locations)
    use_alias(backend)
    import cachedcall

    f, f_count, _ = cachedcall_fn(backend, VALUE)
    hand, hand_count, _ = hand_fn(backend, VALUE)
    dogpile, dogpile_count = dogpile_fn(region(backend, locations), VALUE)
    kinds = {KINDS[0]: (f, f_count), KINDS[1]: (hand, hand_count), KINDS[2]: (dogpile, dogpile_count)}
    for call, _ in kinds.values():
        for n in range(8):
            call(n)  # every later call is a hit
    results.put(("ready", 0, 0))
    while (command := commands.get()) is not None:
        kind, start_at, seconds = command
        call, counter = kinds[kind]
        before = counter[0]
        while time.time() < start_at:
            time.sleep(0.0005)
        deadline = start_at + seconds
        done = 0
        # time.time() costs ~50 ns, against hits of 30 µs and more on a server.
        while time.time() < deadline:
            call(done & 7)
            done += 1
        trouble = counter[0] - before + sum(cachedcall.stats()["errors"].values())
        results.put((kind, done, trouble))


def throughput(plan: Plan, locations: dict[str, str]) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    panels = []
    for backend in ("memcached", "redis"):
        started = time.perf_counter()
        results = context.Queue()
        queues = [context.Queue() for _ in range(max(plan.processes))]
        procs = [
            context.Process(target=_throughput_worker, args=(locations, backend, q, results), daemon=True)
            for q in queues
        ]
        for p in procs:
            p.start()
        samples: dict[tuple[str, int], list[float]] = {}
        try:
            for _ in procs:
                results.get(timeout=120)
            for window in range(plan.windows):
                # The kinds take turns in a rotating order, as the timings' rounds do.
                shift = window % len(KINDS)
                for kind in KINDS[shift:] + KINDS[:shift]:
                    for count in plan.processes:
                        # Time for the commands to arrive before the window opens.
                        start_at = time.time() + 0.2
                        for q in queues[:count]:
                            q.put((kind, start_at, plan.window))
                        answers = [results.get(timeout=plan.window + 60) for _ in range(count)]
                        if any(trouble for _, _, trouble in answers):
                            raise RuntimeError(f"throughput {backend} {kind}: a hit missed or failed")
                        total = sum(done for _, done, _ in answers) / plan.window
                        samples.setdefault((kind, count), []).append(total)
        finally:
            for q in queues:
                q.put(None)
            for p in procs:
                p.join(10)
                if p.is_alive():
                    p.terminate()
        series: dict[str, list[dict[str, Any]]] = {}
        for (kind, count), values in sorted(samples.items(), key=lambda kv: kv[0][1]):
            point = {"x": count, "median": statistics.median(values), "samples": [round(v) for v in values]}
            series.setdefault(kind, []).append(point)
        panels.append({"col": backend, "row": "hits", "series": series})
        print(f"throughput / {backend}  ({time.perf_counter() - started:.1f} s)", flush=True)
        for kind, points in series.items():
            line = "  ".join(f"{p['x']}: {p['median']:,.0f}" for p in points)
            print(f"    {kind:<44} {line}", flush=True)
    return {
        "title": "Hits per second of processes hitting one server together",
        "ylabel": "median, calls per second (all processes)",
        "xlabel": f"processes (one thread each, {plan.window:g} s windows)",
        "xscale": "linear",
        "yscale": "linear",
        "unit": "calls per second",
        "panels": panels,
    }


# --- the run -------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import django
    import dogpile
    import pymemcache
    import redis

    import cachedcall

    def version(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=5).stdout.strip()
        except OSError:
            return "unknown"

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "cachedcall": cachedcall.__version__,
        "pymemcache": pymemcache.__version__,
        "redis_py": redis.__version__,
        "dogpile_cache": dogpile.__version__,
        "memcached": version(["memcached", "-V"]),
        "redis_server": version(["redis-server", "--version"]),
    }


MEASURE: dict[str, Callable[[Plan, dict[str, str]], dict[str, Any]]] = {
    "dependencies": dependencies,
    "sizes": sizes,
    "map": batches,
    "throughput": throughput,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Cost curves of cachedcall and its peers.")
    parser.add_argument("--fast", action="store_true", help="few points and short loops (< 90 s)")
    parser.add_argument("--only", choices=FAMILIES, help="measure one family, keep the others' JSON")
    parser.add_argument("--draw-only", action="store_true", help="redraw the PNGs from the JSON")
    parser.add_argument("--json", type=Path, help="the JSON file (default: benchmarks/results/curves.json)")
    parser.add_argument("--charts", type=Path, help="the PNGs' directory (default: docs/_static/curves)")
    args = parser.parse_args(argv)
    path: Path = args.json or RESULTS / ("curves-fast.json" if args.fast else "curves.json")
    charts: Path = args.charts or (RESULTS / "curves-fast" if args.fast else CHARTS)
    if args.draw_only:
        for png in draw(json.loads(path.read_text()), charts):
            print(png)
        return
    plan = FAST if args.fast else FULL
    data: dict[str, Any] = {"families": {}}
    if args.only and path.exists():
        data = json.loads(path.read_text())  # the other families stay as they were measured
    started = time.perf_counter()
    servers = start_servers()
    try:
        locations = {"memcached": servers[0].location, "redis": servers[1].location}
        configure(locations)
        data["meta"] = machine()
        for name in [args.only] if args.only else FAMILIES:
            begun = time.perf_counter()
            family = MEASURE[name](plan, locations)
            family["run"] = {
                "date": data["meta"]["date"],
                "fast": plan.fast,
                "repeats": plan.repeats,
                "min_loop_seconds": plan.min_time,
                "seconds": round(time.perf_counter() - begun, 1),
            }
            data["families"][name] = family
    finally:
        for server in servers:
            server.stop()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    print(f"\n{time.perf_counter() - started:.0f} s; medians written to {path}")
    for png in draw(data, charts):
        print(png)


if __name__ == "__main__":
    main()
