"""Worker processes for the cross-process lock tests (tests/test_under_load.py).

``python -m tests.stampede <cache config json> crowd <start at> <threads>``: that many
threads call :func:`popular` at the same wall-clock instant; prints how many computed.
``python -m tests.stampede <cache config json> die``: takes the lock of :func:`popular`'s
entry by starting its computation, says so, and dies with ``os._exit`` while holding it.
``crowd-mc``: as ``crowd``, with the config as the alias ``"mc"`` beside a LocMemCache
default, calling :func:`popular_mc` (``cache="mc"``).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from cachedcall import cached

computed = 0
_lock = threading.Lock()
DURATION = 0.5


# Named explicitly: run with -m, this module is __main__ in the workers.
@cached(timeout=60, lock=True, lock_ttl=2, lock_wait=10, prefix="tests.stampede.popular")
def popular(n: int) -> dict[str, int]:
    global computed
    with _lock:
        computed += 1
    if os.environ.get("STAMPEDE_DIE"):
        print("holding", flush=True)
        os._exit(3)
    time.sleep(DURATION)
    return {"n": n, "pid": os.getpid()}


@cached(timeout=60, cache="mc", lock=True, lock_ttl=2, lock_wait=10, prefix="tests.stampede.popular_mc")
def popular_mc(n: int) -> dict[str, int]:
    return popular.__wrapped__(n)


def main() -> None:
    config, mode = json.loads(sys.argv[1]), sys.argv[2]
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django
    from django.conf import settings

    django.setup()
    settings.CACHES = {"default": config}
    function = popular
    if mode == "crowd-mc":
        settings.CACHES = {
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "mc": config,
        }
        function = popular_mc
    if mode == "die":
        os.environ["STAMPEDE_DIE"] = "1"
        popular(1)
        return
    start_at, count = float(sys.argv[3]), int(sys.argv[4])
    barrier = threading.Barrier(count)
    results: list[object] = []

    def crowd() -> None:
        barrier.wait()
        time.sleep(max(0.0, start_at - time.time()))
        results.append(function(1)["n"])

    threads = [threading.Thread(target=crowd) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [1] * count, results
    print(json.dumps({"computed": computed}), flush=True)


if __name__ == "__main__":
    main()
