"""Throughput: 2 processes x 4 threads hitting memcached for a fixed time.

    python benchmarks/throughput.py [--seconds 5]

Reports calls per second for cachedcall and for the hand-written get/set pattern, each run
alone on a memcached the script starts on a free loopback port.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

VALUE = [{"id": i, "name": f"class {i}", "weekday": i % 7} for i in range(20)]
PROCESSES, THREADS = 2, 4


def worker(kind: str, location: str, seconds: float, start_at: float, out: Any) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django
    from django.conf import settings

    django.setup()
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": location,
            "OPTIONS": {"timeout": 0.5, "connect_timeout": 0.5, "retry_attempts": 0, "use_pooling": True},
        }
    }
    from django.core.cache import caches

    from cachedcall import cached

    def compute(n: int) -> list[dict[str, Any]]:
        return VALUE

    decorated = cached(timeout=300)(compute)

    def hand(n: int) -> list[dict[str, Any]]:
        cache = caches["default"]
        value = cache.get(f"classes:{n}")
        if value is None:
            value = compute(n)
            cache.set(f"classes:{n}", value, 300)
        return value

    call = decorated if kind == "cachedcall" else hand
    counts = [0] * THREADS

    def run(index: int) -> None:
        for n in range(8):
            call(n)  # warm: every later call is a hit
        while time.time() < start_at:
            time.sleep(0.001)
        deadline = start_at + seconds
        done = 0
        while time.time() < deadline:
            call(done % 8)
            done += 1
        counts[index] = done

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(sum(counts))


def measure(kind: str, location: str, seconds: float) -> float:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    start_at = time.time() + 3.0  # time for the processes to import Django and warm up
    procs = [
        context.Process(target=worker, args=(kind, location, seconds, start_at, out))
        for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=seconds + 60) for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    from tests import servers

    server = servers.memcached().start()
    try:
        results = {
            kind: measure(kind, server.location, args.seconds) for kind in ("hand-written", "cachedcall")
        }
    finally:
        server.stop()
    base = results["hand-written"]
    print(f"throughput, {PROCESSES} processes x {THREADS} threads, memcached hits, {args.seconds:g} s each")
    for kind, rps in results.items():
        print(f"  {kind:<14}{rps:>10,.0f} calls/s  {rps / base:.2f}x")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "throughput.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
