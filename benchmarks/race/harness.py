"""The race harness: run the scenarios, check every read, print and save the results.

    python benchmarks/race.py                      # every scenario, 10,000 reads each
    python benchmarks/race.py --short              # 1,500 reads each: CI's form
    python benchmarks/race.py --scenario eviction  # one (repeat the option for more)
    python benchmarks/race.py --self-test          # the checker must see what it should
    python benchmarks/race.py --list

A run makes a PostgreSQL database of its own (``cachedcall_race_<pid>``, and a replica
``..._replica`` for the replica scenario), migrates it once and drops it at the end. Each
scenario then gets fresh memcached and Redis servers on free ports, a writer process and
three reader processes (:mod:`benchmarks.race.worker`), a fault thread and, for the
replica, a copier thread; the logs are judged by :mod:`benchmarks.race.check`.

Output: one line per scenario, ``name: N stale of M reads (worst age X ms)``, a Markdown
table, and a JSON file (``benchmarks/results/race-<time>.json``, or ``--out``). Exit status
1 when any scenario has a stale read inside the promise (or a read that raised), 0
otherwise. Outside the promise, so counted apart: stale reads that start during a counter
store's outage or within :data:`RETRY_WINDOW` after it (the window the README documents),
and the scenarios marked ``promise=False`` (writes the README says need a ``bump()``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import queue
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.race import check
from benchmarks.race import servers
from benchmarks.race.copier import Copier
from benchmarks.race.faults import Faults
from benchmarks.race.scenarios import BY_NAME
from benchmarks.race.scenarios import SCENARIOS
from benchmarks.race.scenarios import SELF_TESTS
from benchmarks.race.scenarios import Scenario

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
PG = {
    "host": os.environ.get("PGHOST", "127.0.0.1"),
    "port": os.environ.get("PGPORT", "5432"),
    "user": os.environ.get("PGUSER", "postgres"),
}
READS = {"short": 1_500, "full": 10_000}
#: Seconds of reading per scenario: (short, full); faults need the dead timeout (5 s) and
#: the retries after it to play out.
DURATION = {"plain": (3.0, 15.0), "long": (10.0, 20.0), "evict": (5.0, 15.0)}
REPLICA_LAG = 0.2
#: Where the worker processes import cachedcall from (``--library``): this checkout unless told.
LIBRARY = [str(ROOT)]
#: Whether the scenarios run with the near tier on (``--near``).
NEAR = False
#: The README's window after a counter store answers again, before the writer's retried
#: bump lands: "at most 0.25 s plus one client timeout" (0.5 s in the recommended OPTIONS).
RETRY_WINDOW = 0.75
#: The replica promise counts from the landing of each bump's repeat (REPLICA_LAG after
#: it), which the writer logs and the judge uses; for a library that logs no repeats, a
#: fixed allowance for the landing instead (the repeat thread's wake-up and its incrs).
REPEAT_LANDING = 0.05


def _pg(sql: str) -> None:
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as connection:
        connection.execute(sql)


def _env(**extra: str) -> dict[str, str]:
    """The environment of a worker: cachedcall from :data:`LIBRARY`, the harness from ROOT.

    Workers run in their scenario's folder, not in ROOT, so that ROOT's own ``cachedcall``
    does not come first on ``sys.path`` when ``--library`` names another one.
    """
    path = [*LIBRARY, str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p), **extra}


def _dsn(name: str) -> str:
    return f"host={PG['host']} port={PG['port']} user={PG['user']} dbname={name}"


class Process:
    """One worker process, its stdout read line by line into a queue."""

    def __init__(self, name: str, spec: dict[str, Any], folder: Path) -> None:
        self.name = name
        path = folder / f"{name}.json"
        spec["log"] = str(folder / f"{name}.log.json")
        path.write_text(json.dumps(spec))
        self.log = Path(spec["log"])
        self.stderr = folder / f"{name}.stderr"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.race.worker", str(path)],
            cwd=folder,
            env=_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr.open("w"),
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put("")

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            line = ""
        try:
            message: dict[str, Any] = json.loads(line)
        except ValueError:
            message = {}
        if message.get("event") != event:
            self.kill()
            tail = self.stderr.read_text()[-3000:] if self.stderr.exists() else ""
            raise RuntimeError(f"{self.name}: expected {event!r}, got {line!r}\n{tail}")
        return message

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


def _layout(
    scenario: Scenario,
) -> tuple[list[servers.Server], dict[str, Any], dict[str, Any], list[str], Any]:
    """Start the scenario's servers; return them, CACHES, CACHEDCALL, the entry aliases the
    readers use, and the server the fault hits."""
    cachedcall: dict[str, Any] = {"NEAR": True} if NEAR else {}
    target = None
    if scenario.layout == "named":
        mc = servers.memcached().start()
        return [mc], {"default": servers.LOCMEM, "mc": servers.memcached_config(mc)}, cachedcall, ["mc"], None
    redis = servers.redis().start()
    mc = (servers.small_memcached() if scenario.layout == "evict" else servers.memcached()).start()
    started = [redis, mc]
    caches = {"default": servers.memcached_config(mc), "entries": servers.redis_config(redis)}
    if scenario.layout == "evict":
        target = mc
    if scenario.layout == "versions":
        counters = servers.memcached().start()
        started.append(counters)
        caches["counters"] = servers.memcached_config(counters)
        cachedcall["VERSIONS_CACHE"] = "counters"
        target = counters
    if scenario.layout == "replica":
        cachedcall["REPLICA_LAG"] = REPLICA_LAG
    return started, caches, cachedcall, ["default", "entries"], target


def run_scenario(
    scenario: Scenario, db: str, replica_db: str | None, short: bool, seed: int
) -> dict[str, Any]:
    kind = "long" if scenario.long else "evict" if scenario.fault == "evict" else "plain"
    duration = DURATION[kind][0 if short else 1]
    total = READS["short" if short else "full"]
    folder = Path(tempfile.mkdtemp(prefix=f"race-{scenario.name}-"))
    started, caches, cachedcall, aliases, target = _layout(scenario)
    processes: list[Process] = []
    copier = None
    faults = None
    began = time.monotonic()
    try:
        base = {"db": db, "caches": caches, "cachedcall": cachedcall}
        writer_settings = dict(base)
        if scenario.sabotage == "no-bumps":
            # No alias of the writer holds counters: its bumps reach no one.
            writer_settings["caches"] = {alias: servers.DUMMY for alias in caches}
        writer = Process(
            "writer",
            {
                "role": "writer",
                "settings": writer_settings,
                "seed": seed,
                "ops": scenario.ops,
                "answers": scenario.reads,
                "pause": scenario.pause,
            },
            folder,
        )
        processes.append(writer)
        notes = list(writer.expect("ready", 120)["notes"])
        if scenario.layout == "replica":
            assert replica_db is not None
            copier = Copier(_dsn(db), _dsn(replica_db))
            copier.copy_now()
        plan = [[name, alias] for name in scenario.reads for alias in aliases]
        for i, mode in enumerate(scenario.readers):
            reader_settings: dict[str, Any] = dict(base)
            if mode == "repeatable_read":
                reader_settings["isolation"] = "repeatable_read"
            if scenario.layout == "replica":
                reader_settings.update(replica_db=replica_db, router=True)
            if scenario.sabotage == "uncached":
                reader_settings["cachedcall"] = {**cachedcall, "ENABLED": False}
            calls = total // len(scenario.readers) + (i < total % len(scenario.readers))
            spec = {
                "role": "reader",
                "settings": reader_settings,
                "seed": seed * 10 + i + 1,
                "functions": plan,
                "mode": "autocommit" if mode == "autocommit" else "atomic",
                "isolation": mode,
                "calls": calls,
            }
            processes.append(Process(f"reader-{i}", spec, folder))
        for process in processes[1:]:
            for note in process.expect("ready", 120)["notes"]:
                if note not in notes:
                    notes.append(note)
        t0 = time.monotonic() + 0.3
        for process in processes:
            process.send(f"go {t0} {duration}")
        if copier is not None:
            copier.start()
        faults = Faults(scenario.fault, target, t0)
        faults.start()
        for process in processes[1:]:
            process.expect("done", duration * 6 + 120)
        writer.send("stop")
        writer.expect("done", 60)
        for process in processes:
            process.process.wait(30)
    finally:
        if faults is not None:
            faults.stop.set()
            faults.join(10)
        if copier is not None:
            copier.close()
        for process in processes:
            process.kill()
        for server in started:
            server.stop()
    elapsed = time.monotonic() - began
    return _judge(scenario, folder, processes, faults, copier, notes, seed, elapsed, duration)


def _judge(
    scenario: Scenario,
    folder: Path,
    processes: list[Process],
    faults: Faults | None,
    copier: Copier | None,
    notes: list[str],
    seed: int,
    elapsed: float,
    duration: float,
) -> dict[str, Any]:
    written = json.loads(processes[0].log.read_text())
    timeline = check.Timeline(written["seed_answers"], written["writes"])
    reads: list[check.Read] = []
    reader_stats = []
    for i, process in enumerate(processes[1:]):
        logged = json.loads(process.log.read_text())
        reader_stats.append(logged["stats"])
        mode = json.loads((folder / f"{process.name}.json").read_text())["isolation"]
        reads.extend(check.Read(*record, mode=mode, reader=i) for record in logged["reads"])
    windows = faults.windows if faults is not None else []
    lag = reference = None
    landing: dict[str, Any] = {}
    if scenario.layout == "replica":
        lag = REPLICA_LAG + REPEAT_LANDING
        repeats = [tuple(made) for made in written.get("repeats", []) if made[2] != math.inf]
        if repeats:
            # Judged from the repeats' landings as logged (check.landings), not a fixed allowance.
            reference, late = check.landings(timeline, REPLICA_LAG, repeats, REPEAT_LANDING)  # type: ignore[arg-type]
            late.sort()
            landing = {
                "repeats": len(repeats),
                "p50_ms": round(late[len(late) // 2] * 1000, 1) if late else None,
                "p99_ms": round(late[len(late) * 99 // 100] * 1000, 1) if late else None,
                "max_ms": round(late[-1] * 1000, 1) if late else None,
            }
        else:
            notes.append(f"no repeats logged: judged with a fixed {REPEAT_LANDING * 1000:.0f} ms landing")
    result = check.judge(
        timeline, reads, replica_lag=lag, reference=reference, windows=windows, grace=RETRY_WINDOW
    )
    if landing:
        result["repeat_landing"] = landing
    t0 = min((r.t_start for r in reads), default=0.0)
    result.update(
        name=scenario.name,
        what=scenario.what,
        promise=scenario.promise,
        seed=seed,
        seconds=round(elapsed, 1),
        read_seconds=duration,
        writes=len(written["writes"]),
        write_errors=written["errors"][:5],
        writer_stats=written["stats"],
        reader_stats=reader_stats,
        notes=notes,
        outage_windows=[[round(a - t0, 2), round(b - t0, 2)] for a, b in windows],
        fault=dict(faults.counts) if faults is not None else {},
    )
    # The readers' near hits per alias ("default" is memcached, "entries" Redis): that the
    # tier served, not just that it was on.
    near_hits: Counter[str] = Counter()
    for stats in reader_stats:
        near_hits.update(stats.get("near", {}).get("hits", {}))
    result["near_hits"] = dict(near_hits)
    if copier is not None:
        result["replica_max_lag_ms"] = round(copier.max_lag() * 1000, 1)
        lags = sorted(copier.lags())
        result["replica_lag_ms"] = {
            "p50": round(lags[len(lags) // 2] * 1000, 1) if lags else None,
            "p99": round(lags[len(lags) * 99 // 100] * 1000, 1) if lags else None,
            "over_allowed": sum(lag > REPLICA_LAG for lag in lags),
            "applied": len(lags),
            "slowest_ms": {k: round(v * 1000, 1) for k, v in copier.slowest.items()},
        }
        result["replica_allowed_lag_ms"] = REPLICA_LAG * 1000
        if copier.error:
            notes.append(f"copier failed: {copier.error}")
        if copier.max_lag() > REPLICA_LAG or copier.error:
            # Outside the promise (a replica lagging more than the setting): an entry
            # computed from it may be served until its next bump, so no read can be excused
            # one by one. The counts are shown; the scenario does not fail the run.
            result["inconclusive"] = (
                f"the replica lagged {copier.max_lag() * 1000:.0f} ms, more than REPLICA_LAG "
                f"({REPLICA_LAG * 1000:.0f} ms): rerun"
            )
            notes.append(result["inconclusive"])
    if written["errors"]:
        notes.append(f"{len(written['errors'])} write blocks raised (their state was still logged)")
    return result


def line(result: dict[str, Any]) -> str:
    text = (
        f"{result['name']}: {result['stale']} stale of {result['reads']} reads "
        f"(worst age {result['worst_age_ms']:.1f} ms)"
    )
    extras = []
    if result["impossible"]:
        extras.append(f"{result['impossible']} never held")
    if result["errors"]:
        extras.append(f"{result['errors']} reads raised")
    if result["outage_windows"]:
        windows = ", ".join(f"{a:.2f}-{b:.2f} s" for a, b in result["outage_windows"])
        extras.append(
            f"outage {windows} after t0; {result['in_windows']} more stale reads started in it or "
            f"the {RETRY_WINDOW} s after it (the documented window, excluded)"
        )
    if NEAR:
        served = ", ".join(f"{alias} {n}" for alias, n in sorted(result["near_hits"].items())) or "none"
        extras.append(f"near hits: {served}")
    if not result["promise"]:
        extras.append("outside the promise: never fails")
    if result.get("inconclusive"):
        extras.append(f"inconclusive: {result['inconclusive']}")
    if "replica_max_lag_ms" in result:
        extras.append(
            f"replica lag max {result['replica_max_lag_ms']:.0f} ms, {result['lagged']} reads older than "
            "the primary within the allowed lag"
        )
    if result.get("repeat_landing"):
        landing = result["repeat_landing"]
        extras.append(
            f"repeats landed {landing['p50_ms']:.1f} ms (median) and {landing['max_ms']:.1f} ms (worst) "
            "after REPLICA_LAG"
        )
    if result["fault"].get("evictions") is not None:
        fault = result["fault"]
        extras.append(
            f"{fault['evictions']} evictions, {fault['counters_disappeared']} counters and "
            f"{fault['entries_disappeared']} entries seen disappearing"
        )
    return text + (f" [{'; '.join(extras)}]" if extras else "")


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| scenario | stale | reads | worst age | hits | writes | notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        hits = r["outcomes"].get("hit", 0)
        notes = "; ".join(r["notes"])
        rows.append(
            f"| {r['name']} | {r['stale']} | {r['reads']} | {r['worst_age_ms']:.1f} ms | "
            f"{100 * hits / max(1, r['reads']):.0f} % | {r['writes']} | {notes} |"
        )
    return "\n".join(rows)


def failed(result: dict[str, Any]) -> bool:
    if not result["promise"] or result.get("inconclusive"):
        return False
    return bool(result["stale"] or result["errors"])


@contextlib.contextmanager
def database(with_replica: bool) -> Any:
    """A database for this run (and its replica), migrated; dropped afterwards."""
    db = f"cachedcall_race_{os.getpid()}"
    replica = f"{db}_replica" if with_replica else None
    _pg(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    _pg(f"CREATE DATABASE {db}")
    try:
        folder = Path(tempfile.mkdtemp(prefix="race-migrate-"))
        spec = folder / "migrate.json"
        spec.write_text(json.dumps({"settings": {"db": db}}))
        env = _env(RACE_CONFIG=str(spec), DJANGO_SETTINGS_MODULE="benchmarks.race.settings")
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", "-v", "0"], cwd=folder, env=env, check=True
        )
        if replica is not None:
            _pg(f"DROP DATABASE IF EXISTS {replica} WITH (FORCE)")
            _pg(f"CREATE DATABASE {replica} TEMPLATE {db}")
        yield db, replica
    finally:
        if replica is not None:
            _pg(f"DROP DATABASE IF EXISTS {replica} WITH (FORCE)")
        _pg(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def _run(chosen: list[Scenario], short: bool, seed: int) -> list[dict[str, Any]]:
    results = []
    with database(any(s.layout == "replica" for s in chosen)) as (db, replica):
        for i, scenario in enumerate(chosen):
            result = run_scenario(scenario, db, replica, short, seed + i)
            print(line(result), flush=True)
            results.append(result)
    return results


def _save(results: list[dict[str, Any]], out: str | None, seed: int, short: bool, started: float) -> Path:
    version = subprocess.run(
        [sys.executable, "-c", "import cachedcall; print(cachedcall.__file__, cachedcall.__version__)"],
        cwd=tempfile.gettempdir(),
        env=_env(),
        capture_output=True,
        text=True,
    ).stdout.split()
    path = Path(out) if out else RESULTS / f"race-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    document = {
        "seed": seed,
        "short": short,
        "near": NEAR,
        "seconds": round(time.monotonic() - started, 1),
        "cachedcall": version,
        "commit": commit.strip(),
        "scenarios": results,
    }
    path.write_text(json.dumps(document, indent=1, default=str))
    return path


def self_test(short: bool, seed: int) -> int:
    """The checker must count no stale read with caching off, and find them with bumps off."""
    problems = check.self_test()
    print(f"checker on hand-made timelines: {problems or 'ok'}", flush=True)
    results = _run(SELF_TESTS, short, seed)
    uncached, no_bumps = results
    if uncached["stale"] or uncached["errors"]:
        problems.append(f"caching off, yet {uncached['stale']} stale reads: the checker has false positives")
    if uncached["outcomes"].get("hit"):
        problems.append("caching off, yet hits were recorded")
    if not no_bumps["stale"]:
        problems.append("bumps off, yet no stale read found: the checker is blind")
    blind = sorted(
        name
        for name, fn in no_bumps["by_function"].items()
        if fn["hits"] and not fn["stale"] and not name.startswith(("orphan_count", "child_count"))
    )
    print(f"bumps off: stale reads per function: {_per_function(no_bumps)}", flush=True)
    if blind:
        print(f"  (no stale read caught for {', '.join(blind)}: rarely written, or lucky)", flush=True)
    print("self-test: " + ("ok" if not problems else "FAILED: " + "; ".join(problems)), flush=True)
    return 1 if problems else 0


def _per_function(result: dict[str, Any]) -> str:
    return ", ".join(
        f"{name} {fn['stale']}/{fn['reads']}" for name, fn in sorted(result["by_function"].items())
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stale reads after a commit: the race harness (issue 15).")
    parser.add_argument("--short", action="store_true", help="1,500 reads per scenario (CI)")
    parser.add_argument("--scenario", action="append", choices=sorted(BY_NAME), help="run only these")
    parser.add_argument("--out", help="where to write the JSON results")
    parser.add_argument("--seed", type=int, help="the writer's and readers' seed (default: random)")
    parser.add_argument("--self-test", action="store_true", help="check the checker")
    parser.add_argument("--list", action="store_true", help="list the scenarios")
    parser.add_argument(
        "--near",
        action="store_true",
        help="readers and writer with CACHEDCALL['NEAR'] on: the near tier (Redis pushed, memcached checked)",
    )
    parser.add_argument(
        "--library", help="the folder holding the cachedcall package to test (default: this checkout)"
    )
    args = parser.parse_args(argv)
    global NEAR
    NEAR = args.near
    if args.library:
        LIBRARY[:] = [str(Path(args.library).resolve())]
        if not (Path(LIBRARY[0]) / "cachedcall" / "__init__.py").exists():
            parser.error(f"--library {args.library}: no cachedcall/__init__.py there")
    if args.list:
        for s in (*SCENARIOS, *SELF_TESTS):
            print(f"{s.name:<20} {s.what}")
        return 0
    seed = args.seed if args.seed is not None else random.randrange(1, 2**31)
    near = " with the near tier on" if NEAR else ""
    print(f"seed {seed} (rerun with --seed {seed}); cachedcall from {LIBRARY[0]}{near}", flush=True)
    started = time.monotonic()
    if args.self_test:
        return self_test(args.short, seed)
    chosen = [BY_NAME[name] for name in args.scenario] if args.scenario else SCENARIOS
    results = _run(chosen, args.short, seed)
    print()
    print(table(results))
    path = _save(results, args.out, seed, args.short, started)
    print(f"\n{len(results)} scenarios in {time.monotonic() - started:.0f} s; results in {path}")
    bad = [r["name"] for r in results if failed(r)]
    if bad:
        print(f"stale reads inside the promise: {', '.join(bad)}")
    return 1 if bad else 0
