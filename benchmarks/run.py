"""Benchmarks: a decorated call against the hand-written pattern and the peers, same run.

    pip install -e ".[bench]"
    python benchmarks/run.py                 # everything; prints a table, writes JSON, then
                                             # the cost curves (benchmarks/curves.py)
    python benchmarks/run.py --fast          # fewer processes and values, for a quick look
    python benchmarks/run.py --no-curves     # the table only

The master process starts memcached and redis-server on free loopback ports and hands their
addresses to pyperf's worker processes on the command line. A function with one int
argument returns a list of 20 small dicts (the peers are measured on the same). Medians are
reported, and ratios against the hand-written ``cache.get``/``cache.set`` pattern measured in
the same run.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

import pyperf  # noqa: E402

VALUE = [{"id": i, "name": f"class {i}", "weekday": i % 7} for i in range(20)]
BACKENDS = ("locmem", "memcached", "redis")
FIFTY = list(range(100, 150))
RESULTS = ROOT / "benchmarks" / "results"


def add_cmdline_args(cmd: list[str], args: Any) -> None:
    cmd.extend(["--memcached", args.memcached, "--redis", args.redis])
    if args.only:
        cmd.extend(["--only", args.only])


def configure(args: Any) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django
    from django.conf import settings

    memcached_options = {
        "connect_timeout": 0.5,
        "timeout": 0.5,
        "retry_attempts": 0,
        "dead_timeout": 5,
        "use_pooling": True,
    }
    caches = {
        "locmem": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "OPTIONS": {"MAX_ENTRIES": 1_000_000},
        },
        "memcached": {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": args.memcached,
            "OPTIONS": memcached_options,
        },
        "redis": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://{args.redis}/0",
        },
    }
    django.setup()
    settings.CACHES = {"default": caches["locmem"], **caches}


def use_alias(alias: str, sign: bool = False) -> None:
    from django.conf import settings

    from cachedcall import conf

    settings.CACHEDCALL = {"CACHE": alias, "SIGN": sign}
    conf._reset(setting="CACHEDCALL")


# --- the scenarios -----------------------------------------------------------------------------


def build(backend: str, args: Any) -> dict[str, Any]:
    """Return ``{name: time_func}`` for one backend; each time_func(loops) -> seconds."""
    from cache_memoize import cache_memoize
    from django.core.cache import caches
    from django.test import RequestFactory
    from django.views.decorators.cache import cache_page

    import cachedcall
    from cachedcall import cached
    from cachedcall import cached_view
    from cachedcall.decorators import function_cache
    from tests.testapp.models import Club
    from tests.testapp.models import ClubClass
    from tests.testapp.models import Tag

    cache = caches[backend]
    club = Club(pk=7, name="chess")  # a saved-looking instance: keyed by pk, no query

    def compute(n: int) -> list[dict[str, Any]]:
        return VALUE

    def hand(n: int) -> list[dict[str, Any]]:
        key = f"classes:{n}"
        value = cache.get(key)
        if value is None:
            value = compute(n)
            cache.set(key, value, 300)
        return value

    def hand3(n: int, club: Any, weekday: int | None = None) -> list[dict[str, Any]]:
        key = f"classes:{n}:{club.pk}:{weekday}"
        value = cache.get(key)
        if value is None:
            value = compute(n)
            cache.set(key, value, 300)
        return value

    one = cached(timeout=300, cache=backend)(compute)

    async def ahand(n: int) -> list[dict[str, Any]]:
        key = f"classes:{n}"
        value = await cache.aget(key)
        if value is None:
            value = compute(n)
            await cache.aset(key, value, 300)
        return value

    @cached(timeout=300, cache=backend)
    def three(n: int, club: Any, weekday: int | None = None) -> list[dict[str, Any]]:
        return VALUE

    dep1 = cached(timeout=300, cache=backend, depends_on=[ClubClass], prefix="dep1")(compute)
    dep3 = cached(timeout=300, cache=backend, depends_on=[Club, ClubClass, Tag], prefix="dep3")(compute)

    @cached(timeout=300, cache=backend)
    async def acompute(n: int) -> list[dict[str, Any]]:
        return VALUE

    # Not warmed here: the scenarios run with CACHEDCALL["SIGN"] on (see main), and pyperf's
    # warm-up call stores their first, signed, entry.
    signed = cached(timeout=300, cache=backend, prefix="signed")(compute)
    under_load = cached(timeout=300, cache=backend, stale=60, early=1.0, prefix="under_load")(compute)
    locked = cached(timeout=300, cache=backend, lock=True, prefix="locked")(compute)

    # The near tier: the same function with its entries kept in this process too (on Redis
    # invalidated by the server's push, on memcached checked by a read of its counters).
    near = cached(timeout=300, cache=backend, near=True, prefix="near")(compute)
    shared = cached(timeout=300, cache=backend, near=True, copy=False, prefix="near_shared")(compute)
    # A 100 KB value (500 dicts with 200-byte bodies), where transferring and unpickling the
    # entry is most of a hit.
    big = [{"id": i, "name": f"row {i}", "body": bytes(range(200))} for i in range(500)]

    def compute_big(n: int) -> list[dict[str, Any]]:
        return big

    def hand_big(n: int) -> list[dict[str, Any]]:
        value = cache.get(f"big:{n}")
        if value is None:
            value = compute_big(n)
            cache.set(f"big:{n}", value, 300)
        return value

    one_big = cached(timeout=300, cache=backend, prefix="big")(compute_big)
    near_big = cached(timeout=300, cache=backend, near=True, prefix="near_big")(compute_big)
    shared_big = cached(timeout=300, cache=backend, near=True, copy=False, prefix="shared_big")(compute_big)

    memoize = cache_memoize(300, cache_alias=backend)(compute)
    dogpile = _dogpile(backend, args)(compute)

    scenarios: dict[str, Any] = {
        "raw cache.get (floor)": _loop(lambda: cache.get("classes:1")),
        "hand-written": _loop(lambda: hand(1)),
        "cachedcall": _loop(lambda: one(1)),
        "hand-written, 3 args": _loop(lambda: hand3(1, club, weekday=2)),
        "cachedcall, 3 args": _loop(lambda: three(1, club, weekday=2)),
        "cachedcall, depends_on 1 model": _loop(lambda: dep1(1)),
        "cachedcall, depends_on 3 models": _loop(lambda: dep3(1)),
        "cachedcall, signed": _loop(lambda: signed(1)),
        "cachedcall, stale=60 early=1": _loop(lambda: under_load(1)),
        "hand-written, async": _async_loop(ahand),
        "cachedcall, async": _async_loop(acompute),
        "cachedcall, near=True": _loop(lambda: near(1)),
        "cachedcall, near=True, copy=False": _loop(lambda: shared(1)),
        "100 KB: hand-written": _loop(lambda: hand_big(1)),
        "100 KB: cachedcall": _loop(lambda: one_big(1)),
        "100 KB: cachedcall, near=True": _loop(lambda: near_big(1)),
        "100 KB: cachedcall, near=True, copy=False": _loop(lambda: shared_big(1)),
        "django-cache-memoize": _loop(lambda: memoize(1)),
        "dogpile.cache": _loop(lambda: dogpile(1)),
        # A page that calls the function for 50 clubs, all hits: the loop a hand-writer
        # writes, the get_many one could write by hand, and one map().
        "50 hits: hand-written loop": _loop(lambda: [hand(n) for n in FIFTY]),
        "50 hits: hand-written get_many": _loop(lambda: cache.get_many([f"classes:{n}" for n in FIFTY])),
        "50 hits: cachedcall loop": _loop(lambda: [one(n) for n in FIFTY]),
        "50 hits: cachedcall map()": _loop(lambda: one.map(FIFTY)),
        "50 hits: cachedcall map(), near=True": _loop(lambda: near.map(FIFTY)),
        "50 hits: cachedcall map(), near=True, copy=False": _loop(lambda: shared.map(FIFTY)),
        "miss: hand-written": _miss(hand),
        "miss: cachedcall": _miss(one),
        "miss: cachedcall, depends_on 3 models": _miss(dep3),
        "miss: cachedcall, signed": _miss(signed),
        "miss: cachedcall, lock=True": _miss(locked),
        "miss: django-cache-memoize": _miss(memoize),
        "miss: dogpile.cache": _miss(dogpile),
    }

    # Views: a cached_view hit against Django's cache_page hit, through RequestFactory.
    factory = RequestFactory()
    from django.http import HttpResponse

    def page(request: Any) -> HttpResponse:
        return HttpResponse("x" * 2000)

    ours = cached_view(300, cache=backend)(page)
    djangos = cache_page(300, cache=backend)(page)
    request = factory.get("/clubs/chess/")
    scenarios["view: cache_page"] = _loop(lambda: djangos(request))
    scenarios["view: cached_view"] = _loop(lambda: ours(request))

    # The floor of a hit: one get_many of exactly the keys cachedcall reads (its entry and
    # counters), with nothing else. What a hit costs above it is the library's own work.
    keys_one = [one.key(1), *function_cache(one).counter_keys((1,), {})]
    keys_dep3 = [dep3.key(1), *function_cache(dep3).counter_keys((1,), {})]
    scenarios[f"raw get_many of its {len(keys_one)} keys (floor)"] = _loop(lambda: cache.get_many(keys_one))
    scenarios[f"raw get_many of 3 models' {len(keys_dep3)} keys (floor)"] = _loop(
        lambda: cache.get_many(keys_dep3)
    )
    if backend == "locmem":
        # The near tier is off for LocMemCache (in this process already): nothing to show.
        for name in [n for n in scenarios if "near=True" in n]:
            del scenarios[name]
    # Three calls: a miss, a hit read from the cache (and kept), a near hit.
    for warm in (
        hand,
        one,
        dep1,
        dep3,
        memoize,
        dogpile,
        near,
        shared,
        hand_big,
        one_big,
        near_big,
        shared_big,
    ):
        warm(1), warm(1), warm(1)
    for n in FIFTY:
        hand(n), one(n)
        near(n), near(n), shared(n), shared(n)  # a miss, then a hit that is kept (Redis)
    hand3(1, club, weekday=2)
    three(1, club, weekday=2)
    asyncio.run(acompute(1))
    asyncio.run(ahand(1))
    ours(request), djangos(request)
    assert cachedcall.is_enabled()
    return scenarios


def in_process() -> dict[str, Any]:
    """Scenarios with no backend: the function itself, the switch off, cachetools."""
    import cachetools

    import cachedcall
    from cachedcall import cached

    def compute(n: int) -> list[dict[str, Any]]:
        return VALUE

    one = cached(timeout=300)(compute)
    ttl: cachetools.TTLCache[Any, Any] = cachetools.TTLCache(maxsize=1000, ttl=300)
    floor = cachetools.cached(ttl)(compute)
    floor(1)

    def switched_off(loops: int) -> float:
        with cachedcall.disabled():
            return _loop(lambda: one(1))(loops)

    return {
        "call the function directly": _loop(lambda: compute(1)),
        "cachedcall, switched off": switched_off,
        "cachetools (in-process floor)": _loop(lambda: floor(1)),
    }


def _loop(call: Any) -> Any:
    def time_func(loops: int) -> float:
        started = time.perf_counter()
        for _ in range(loops):
            call()
        elapsed = time.perf_counter() - started
        _check_no_cache_errors()
        return elapsed

    return time_func


def _check_no_cache_errors() -> None:
    # A failing cache fails open, which would time the function, not the cache: refuse.
    import cachedcall

    errors = cachedcall.stats()["errors"]
    if errors:
        raise RuntimeError(f"cache errors during the benchmark: {errors}; the numbers would be meaningless")


def _async_loop(func: Any) -> Any:
    def time_func(loops: int) -> float:
        async def run() -> float:
            started = time.perf_counter()
            for _ in range(loops):
                await func(1)
            return time.perf_counter() - started

        elapsed = asyncio.run(run())
        _check_no_cache_errors()
        return elapsed

    return time_func


_miss_counter = [10_000_000 + os.getpid() * 100_000_000]


def _miss(func: Any) -> Any:
    # Every call uses an argument never seen before, so every call is a miss (get + set).
    def time_func(loops: int) -> float:
        start = _miss_counter[0]
        _miss_counter[0] += loops
        started = time.perf_counter()
        for n in range(start, start + loops):
            func(n)
        elapsed = time.perf_counter() - started
        _check_no_cache_errors()
        return elapsed

    return time_func


def _dogpile(backend: str, args: Any) -> Any:
    from dogpile.cache import make_region

    if backend == "memcached":
        host, port = args.memcached.rsplit(":", 1)
        region = make_region().configure(
            "dogpile.cache.pymemcache", expiration_time=300, arguments={"url": [f"{host}:{port}"]}
        )
    elif backend == "redis":
        host, port = args.redis.rsplit(":", 1)
        region = make_region().configure(
            "dogpile.cache.redis", expiration_time=300, arguments={"host": host, "port": int(port)}
        )
    else:
        region = make_region().configure("dogpile.cache.memory_pickle", expiration_time=300)
    return region.cache_on_arguments()


# --- the table -----------------------------------------------------------------------------------


def report(results: dict[str, float], path: Path) -> str:
    lines = []
    for backend in BACKENDS:
        base = results.get(f"{backend}/hand-written")
        base3 = results.get(f"{backend}/hand-written, 3 args")
        base_miss = results.get(f"{backend}/miss: hand-written")
        view_base = results.get(f"{backend}/view: cache_page")
        rows = [(k.split("/", 1)[1], v) for k, v in results.items() if k.startswith(backend + "/")]
        if not rows:
            continue
        lines.append(f"\n{backend}")
        lines.append(f"  {'scenario':<42}{'median':>12}{'ratio':>9}  against")
        for name, value in rows:
            if name.startswith("miss:"):
                against, ref = "hand-written miss", base_miss
            elif name.startswith("view:"):
                against, ref = "cache_page", view_base
            elif name.startswith("100 KB:"):
                against, ref = "100 KB: hand-written", results.get(f"{backend}/100 KB: hand-written")
            elif "3 args" in name:
                against, ref = "hand-written, 3 args", base3
            elif "async" in name:
                against, ref = "hand-written, async", results.get(f"{backend}/hand-written, async")
            else:
                against, ref = "hand-written", base
            ratio = f"{value / ref:.2f}x" if ref else ""
            lines.append(f"  {name:<42}{value * 1e6:>9.1f} µs{ratio:>9}  {against}")
    local = [(k.split("/", 1)[1], v) for k, v in results.items() if k.startswith("process/")]
    if local:
        direct = results["process/call the function directly"]
        lines.append("\nin process")
        for name, value in local:
            extra = (
                f"  (+{(value - direct) * 1e9:.0f} ns over a direct call)" if "switched off" in name else ""
            )
            lines.append(f"  {name:<42}{value * 1e6:>9.3f} µs{extra}")
    text = "\n".join(lines)
    path.write_text(json.dumps({"medians_seconds": results, "table": text}, indent=2))
    return text


def main() -> None:
    runner = pyperf.Runner(add_cmdline_args=add_cmdline_args, processes=6, values=5, warmups=1)
    runner.argparser.add_argument("--memcached", default="")
    runner.argparser.add_argument("--redis", default="")
    runner.argparser.add_argument("--only", default="", help="run only scenarios whose name has this text")
    runner.argparser.add_argument(
        "--no-curves", action="store_true", help="skip the cost curves (benchmarks/curves.py) after the table"
    )
    args = runner.parse_args()
    servers = []
    if not args.worker and not args.memcached:
        from tests import servers as test_servers

        memcached, redis = test_servers.memcached().start(), test_servers.redis().start()
        servers = [memcached, redis]
        args.memcached, args.redis = memcached.location, redis.location
    configure(args)
    results: dict[str, float] = {}
    try:
        groups = [("process", in_process())] + [(b, build(b, args)) for b in BACKENDS]
        for group, scenarios in groups:
            for name, time_func in scenarios.items():
                full = f"{group}/{name}"
                if args.only and args.only not in full:
                    continue
                # Counters live in the same alias as the values, as in a real deployment:
                # a hit is then one get_many of the entry and its counters on that backend.
                use_alias(group if group in BACKENDS else "default", sign="signed" in name)
                bench = runner.bench_time_func(full, time_func)
                if bench is not None and not args.worker:
                    results[full] = bench.median()
    finally:
        for server in servers:
            server.stop()
    if not args.worker and results:
        RESULTS.mkdir(exist_ok=True)
        print(report(results, RESULTS / "latest.json"))
        print(f"\nmedians written to {RESULTS / 'latest.json'}")
    if not args.worker and not args.only and not args.no_curves:
        # The cost curves, in the same run: the README's table and charts come from one
        # command. In a process of their own: this one's Django holds backends of the
        # servers above, which are stopped, and the curves start servers of their own.
        import subprocess

        curves = [sys.executable, str(ROOT / "benchmarks" / "curves.py"), *(["--fast"] if args.fast else [])]
        subprocess.run(curves, check=True)


if __name__ == "__main__":
    main()
