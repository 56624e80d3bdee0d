"""Before/after on the hit path: two source trees, alternating processes, ratios per process.

    python benchmarks/ab.py /path/to/old/checkout /path/to/new/checkout [--rounds 12]

A refactoring must not make the hit path slower, but on a shared 2-core VM absolute times
drift by 10-20 % between runs, more than the difference to look for. So each process times
a hit of cachedcall AND the hand-written pattern on the same alias, interleaved, and keeps
their ratio; processes alternate between the two trees, round after round, and the table
gives the median ratio per tree and their difference. The scenarios are those of
``benchmarks/run.py`` that a refactoring of the call path can move: locmem (no network to
hide CPU) and memcached, started here on a free port.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import asyncio, json, os, sys, time
sys.path.insert(0, sys.argv[1])
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
import django
from django.conf import settings
django.setup()
settings.CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "OPTIONS": {"MAX_ENTRIES": 100000},
    },
    "memcached": {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": sys.argv[2],
        "OPTIONS": {"connect_timeout": 0.5, "timeout": 0.5, "retry_attempts": 0, "use_pooling": True},
    },
}
import cachedcall
from cachedcall import cached, cached_view
from django.core.cache import caches
from django.http import HttpResponse
from django.test import RequestFactory
from tests.testapp.models import Club, ClubClass, Tag
assert cachedcall.__file__.startswith(sys.argv[1]), cachedcall.__file__
VALUE = [{"id": i, "name": f"class {i}", "weekday": i % 7} for i in range(20)]
club = Club(pk=7, name="chess")
out = {}
for alias, loops in (("default", 20000), ("memcached", 2000)):
    # The trees share the memcached, and entry formats may differ: a namespace per tree.
    settings.CACHEDCALL = {"CACHE": alias, "KEY_PREFIX": sys.argv[3]}
    from cachedcall import conf
    conf.forget() if hasattr(conf, "forget") else conf._reset(setting="CACHEDCALL")
    cache = caches[alias]
    def compute(n):
        return VALUE
    def hand(n):
        value = cache.get(f"classes:{n}")
        if value is None:
            value = compute(n)
            cache.set(f"classes:{n}", value, 300)
        return value
    one = cached(timeout=300, cache=alias, prefix=f"one{alias}")(compute)
    @cached(timeout=300, cache=alias, prefix=f"three{alias}")
    def three(n, club, weekday=None):
        return VALUE
    dep3 = cached(timeout=300, cache=alias, depends_on=[Club, ClubClass, Tag], prefix=f"dep3{alias}")(compute)
    @cached(timeout=300, cache=alias, prefix=f"async{alias}")
    async def acompute(n):
        return VALUE
    page = cached_view(300, cache=alias, prefix=f"view{alias}")(lambda request: HttpResponse("x" * 2000))
    request = RequestFactory().get("/clubs/chess/")
    async def async_loop(n):
        for _ in range(n):
            await acompute(1)
    scenarios = {
        "hand-written": lambda: hand(1),
        "cachedcall": lambda: one(1),
        "cachedcall, 3 args": lambda: three(1, club, weekday=2),
        "cachedcall, depends_on 3 models": lambda: dep3(1),
        "cachedcall_view": lambda: page(request),
    }
    for call in scenarios.values():
        call()
    asyncio.run(acompute(1))
    best = {name: float("inf") for name in [*scenarios, "cachedcall, async"]}
    for _ in range(5):  # interleaved repeats; the best of each is the least disturbed
        for name, call in scenarios.items():
            started = time.perf_counter()
            for _ in range(loops):
                call()
            best[name] = min(best[name], (time.perf_counter() - started) / loops)
        started = time.perf_counter()
        asyncio.run(async_loop(loops))
        best["cachedcall, async"] = min(best["cachedcall, async"], (time.perf_counter() - started) / loops)
    errors = cachedcall.stats()["errors"]
    assert not errors, errors
    for name, seconds in best.items():
        out[f"{alias}/{name}"] = seconds
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests import servers

    memcached = servers.memcached().start()
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    try:
        for _ in range(args.rounds):
            for label in ("before", "after"):
                tree = str(Path(getattr(args, label)).resolve())
                env = {**os.environ, "PYTHONPATH": tree}
                result = subprocess.run(
                    [sys.executable, "-c", CHILD, tree, memcached.location, f"ab{label}"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=600,
                    cwd=tree,
                )
                if result.returncode:
                    raise SystemExit(result.stderr)
                runs[label].append(json.loads(result.stdout.strip().splitlines()[-1]))
    finally:
        memcached.stop()
    names = [k for k in runs["before"][0] if not k.endswith("/hand-written")]
    print(f"{args.rounds} rounds; median of per-process ratios to the hand-written hit on the same alias")
    print(f"{'scenario':<44}{'before':>10}{'after':>10}{'change':>9}   (median time after)")
    for name in names:
        alias = name.split("/")[0]
        ratio = {
            label: statistics.median(run[name] / run[f"{alias}/hand-written"] for run in runs[label])
            for label in runs
        }
        after = statistics.median(run[name] for run in runs["after"]) * 1e6
        change = (ratio["after"] / ratio["before"] - 1) * 100
        print(f"{name:<44}{ratio['before']:>9.3f}x{ratio['after']:>9.3f}x{change:>+8.1f}%   ({after:.1f} µs)")


if __name__ == "__main__":
    main()
