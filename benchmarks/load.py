"""The load test: the example project under gunicorn, a 3-node memcached pool, wrk, a writer.

    pip install -e ".[load]"; apt-get install wrk memcached redis-server
    python benchmarks/load.py                 # 20 s per run; prints the table, writes JSON
    python benchmarks/load.py --smoke         # 3 s runs of cachedcall only; exit 1 on an error
                                              # or a stale page (CI runs this)

For each run: fresh memcached nodes, gunicorn with 4 sync workers serving the club pages,
wrk (2 threads, 16 connections) asking for random clubs, and a writer process editing one
class every 20 ms throughout. Runs: no caching (the switch off), the hand-written get/set
pattern, cachedcall; and cachedcall again with one memcached node killed a third of the
way in and restarted at two thirds. PostgreSQL holds the data (a database made and dropped
here), Redis the version counters and the test's own bookkeeping.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from tests import servers  # noqa: E402

RUNS = {
    "no caching": {"page": "/clubs/", "env": {"CACHEDCALL_ENABLED": "0"}},
    "hand-written get/set": {"page": "/hand/", "env": {}},
    "cachedcall": {"page": "/clubs/", "env": {}},
    "cachedcall, node killed + restarted": {"page": "/clubs/", "env": {}, "kill": True},
}
SMOKE = ("cachedcall", "cachedcall, node killed + restarted")
CLUBS, CLASSES = 10, 12


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    for binary in ("wrk", "memcached", "redis-server"):
        if shutil.which(binary) is None:
            sys.exit(f"{binary} is not installed (apt-get install {binary})")
    duration = 3.0 if args.smoke else args.duration
    names = SMOKE if args.smoke else tuple(RUNS)
    redis_server = servers.redis().start()
    db = f"cachedcall_load_{os.getpid()}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "benchmarks.loadsite",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "example")]),
        "LOAD_DB": db,
        "LOAD_REDIS": redis_server.location,
    }
    _psql(f"CREATE DATABASE {db}")
    results: dict[str, dict[str, Any]] = {}
    try:
        _manage(env, "migrate", "-v", "0")
        subprocess.run(
            [sys.executable, "-m", "benchmarks.loadsite", "seed", str(CLUBS), str(CLASSES)],
            env=env,
            check=True,
        )
        for name in names:
            results[name] = run(name, RUNS[name], env, duration, args.workers)
            print(f"{name}: {results[name]}", flush=True)
    finally:
        redis_server.stop()
        _psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    table = report(results, duration, args.workers)
    print(table)
    if not args.smoke:
        out = ROOT / "benchmarks" / "results"
        out.mkdir(exist_ok=True)
        (out / "load.json").write_text(json.dumps({"runs": results, "table": table}, indent=2))
    bad = [n for n in names if n != "hand-written get/set" and (results[n]["errors"] or results[n]["stale"])]
    if bad:
        print(f"FAILED: errors or stale pages in {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


def run(
    name: str, spec: dict[str, Any], base_env: dict[str, str], duration: float, workers: int
) -> dict[str, Any]:
    nodes = [servers.memcached().start() for _ in range(3)]
    env = {**base_env, **spec["env"], "LOAD_MEMCACHED": ",".join(n.location for n in nodes)}
    side = _side(env)
    side.delete("stale")
    port = servers.free_port()
    gunicorn = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            str(workers),
            "-b",
            f"127.0.0.1:{port}",
            "-t",
            "30",
            "--log-level",
            "warning",
            "clubsite.wsgi:application",
        ],
        env=env,
    )
    writer = None
    try:
        _wait_for(port, gunicorn, spec["page"])
        writer = subprocess.Popen([sys.executable, "-m", "benchmarks.loadsite", "writer", "0.02"], env=env)
        before = int(side.get("seq") or 0)
        if spec.get("kill"):
            threading.Thread(target=_kill_and_restart, args=(nodes[0], duration), daemon=True).start()
        wrk = subprocess.run(
            [
                "wrk",
                "-t2",
                "-c16",
                f"-d{duration:g}s",
                "--latency",
                "-s",
                str(ROOT / "benchmarks" / "load.lua"),
                f"http://127.0.0.1:{port}",
            ],
            env={**env, "PAGE": spec["page"], "CLUBS": str(CLUBS)},
            capture_output=True,
            text=True,
            check=True,
        )
        writes = int(side.get("seq") or 0) - before
    finally:
        if writer is not None:
            writer.terminate()
            writer.wait(10)
        gunicorn.send_signal(signal.SIGTERM)
        gunicorn.wait(30)
        for node in nodes:
            node.stop()
    result = parse_wrk(wrk.stdout)
    result["stale"] = int(side.get("stale") or 0)
    result["writes"] = writes
    return result


def _kill_and_restart(node: servers.Server, duration: float) -> None:
    time.sleep(duration / 3)
    node.stop()
    time.sleep(duration / 3)
    node.start()


def parse_wrk(text: str) -> dict[str, Any]:
    def seconds(percent: str) -> float:
        # Anchored to the start of a line: the thread stats' "+/- Stdev" column ends in a
        # percentage too ("95.50%"), and an unanchored "50%" once matched it.
        found = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
        if found is None:
            raise ValueError(f"no {percent}% latency in wrk's output:\n{text}")
        return float(found.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[found.group(2)]

    requests = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),  # type: ignore[union-attr]
        "p50": seconds("50"),
        "p99": seconds("99"),
        "errors": (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, socket.groups())) if socket else 0),
    }


def report(results: dict[str, dict[str, Any]], duration: float, workers: int) -> str:
    lines = [
        f"{duration:g} s per run, gunicorn {workers} workers, wrk -t2 -c16, writer every 20 ms, "
        "3 memcached nodes + Redis counters",
        f"{'run':<38}{'req/s':>8}{'p50':>9}{'p99':>9}{'errors':>8}{'stale':>7}{'writes':>8}",
    ]
    for name, r in results.items():
        lines.append(
            f"{name:<38}{r['rps']:>8.0f}{r['p50'] * 1e3:>7.1f}ms{r['p99'] * 1e3:>7.1f}ms"
            f"{r['errors']:>8}{r['stale']:>7}{r['writes']:>8}"
        )
    return "\n".join(lines)


def _side(env: dict[str, str]) -> Any:
    import redis

    return redis.Redis.from_url(f"redis://{env['LOAD_REDIS']}/1")


def _psql(sql: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "example" / "manage.py"), *args], env=env, check=True)


def _wait_for(port: int, process: subprocess.Popen[bytes], page: str) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        raise RuntimeError("gunicorn did not start")
    # The port answers once the master listens; each worker still imports the project on
    # its first request. Warm them all up, so that wrk's 2 s timeout measures serving, not
    # booting: as many concurrent requests as wrk will make, until all answer at once.
    import concurrent.futures
    import urllib.request

    def get(n: int) -> float:
        started = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{page}club-{n % CLUBS}/", timeout=30) as r:
            r.read()
        return time.monotonic() - started

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        while time.monotonic() < deadline and max(pool.map(get, range(16))) > 0.5:
            pass


if __name__ == "__main__":
    sys.exit(main())
