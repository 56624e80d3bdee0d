"""The writer and reader processes of a scenario::

    python -m benchmarks.race.worker <spec.json>

The spec, written by the harness, holds the Django settings of the process (read by
:mod:`benchmarks.race.settings`) and its part. Both roles print one JSON line ``ready`` on
stdout when set up, wait for ``go <t0> <duration>`` on stdin, start at monotonic time
``t0``, write their log (JSON) to the spec's ``log`` path and print ``done``. The writer
writes until it reads ``stop``; a reader makes its ``calls`` calls spread over
``duration`` seconds, then stops.

The writer seeds the tables, then loops: one write block (:func:`writes.run_block`),
its times, and the answers of every reader function computed from the database by the
undecorated functions (only those that changed are logged). A reader calls its
``@cached`` functions with random arguments, in autocommit or inside transactions of one
to eight calls (``SELECT 1`` first, so that a REPEATABLE READ snapshot is taken then), and
logs each call with its outcome (hit, miss, ...) as ``cachedcall.events`` reports it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any


def _say(**message: Any) -> None:
    print(json.dumps(message), flush=True)


def _wait_go() -> tuple[float, float]:
    line = sys.stdin.readline().split()
    if not line or line[0] != "go":
        raise SystemExit(f"expected 'go <t0> <duration>', got {line!r}")
    return float(line[1]), float(line[2])


def _sleep_until(moment: float) -> None:
    pause = moment - time.monotonic()
    if pause > 0:
        time.sleep(pause)


def _settings_notes() -> list[str]:
    """Load the CACHEDCALL settings; a library that does not know ``REPLICA_LAG`` yet runs
    without it, and says so."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    from cachedcall import conf

    try:
        conf.get()
    except ImproperlyConfigured as exc:
        if "REPLICA_LAG" not in str(exc):
            raise
        settings.CACHEDCALL = {k: v for k, v in settings.CACHEDCALL.items() if k != "REPLICA_LAG"}
        conf.forget()
        conf.get()
        return ["REPLICA_LAG is not a known CACHEDCALL setting of this library: ran without it"]
    return []


def _repeats_logged() -> list[list[float]]:
    """``[first due, last due, landed]`` (monotonic) of each repeat of the writer's bumps, as
    the library logs them at DEBUG, filled while the writer runs (see
    :func:`benchmarks.race.check.landings`)."""
    repeats: list[list[float]] = []

    class Landings(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message, args = str(record.msg), record.args
            if not isinstance(args, tuple):
                return
            if message.startswith("cachedcall: repeating the bumps"):
                repeats.append([float(args[1]), float(args[2]), math.inf])
            elif message.startswith("cachedcall: repeated the bumps") and repeats:
                repeats[-1][2] = float(args[1])

    log = logging.getLogger("cachedcall")
    for handler in log.handlers:  # the stderr handler keeps showing INFO and up only
        handler.setLevel(max(handler.level, logging.INFO))
    log.setLevel(logging.DEBUG)
    log.addHandler(Landings())
    return repeats


def writer(spec: dict[str, Any], notes: list[str]) -> None:
    import cachedcall
    from benchmarks.race import readers
    from benchmarks.race import writes
    from benchmarks.race.check import answer_key
    from benchmarks.race.check import fingerprint

    rng = random.Random(spec["seed"])
    writes.seed(rng)
    wanted = [(name, args) for name in spec["answers"] for args in readers.FUNCTIONS[name].args]

    def answers() -> dict[str, tuple[str, str]]:
        computed: dict[tuple[Any, ...], tuple[str, str]] = {}
        out = {}
        for name, args in wanted:
            plain = readers.FUNCTIONS[name].plain
            if (plain, args) not in computed:
                computed[plain, args] = fingerprint(plain(*args))
            out[answer_key(name, args)] = computed[plain, args]
        return out

    previous = answers()
    seed_answers = previous
    repeats = _repeats_logged()
    _say(event="ready", notes=notes)
    t0, _ = _wait_go()
    stop = threading.Event()

    def listen() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()

    threading.Thread(target=listen, daemon=True).start()
    _sleep_until(t0)
    log: list[list[Any]] = []
    errors: list[str] = []
    ops, pause = spec["ops"], spec["pause"]
    k = 0
    while not stop.is_set():
        k += 1
        t_begin = time.monotonic()
        try:
            what = writes.run_block(rng, ops)
        except Exception as exc:
            # The state is whatever the database holds now: the answers below read it.
            what = f"error: {exc!r}"
            errors.append(what)
        t_done = time.monotonic()
        now = answers()
        log.append([k, t_begin, t_done, what, {key: v for key, v in now.items() if previous.get(key) != v}])
        previous = now
        time.sleep(rng.uniform(0, pause))
    Path(spec["log"]).write_text(
        json.dumps(
            {
                "seed_answers": seed_answers,
                "writes": log,
                "errors": errors,
                "stats": cachedcall.stats(),
                "repeats": repeats,
            }
        )
    )
    _say(event="done", writes=len(log))


def reader(spec: dict[str, Any], notes: list[str]) -> None:
    from django.db import connection
    from django.db import transaction

    import cachedcall
    from benchmarks.race import readers
    from benchmarks.race.check import fingerprint

    plan = [tuple(pair) for pair in spec["functions"]]
    functions = readers.build(plan)  # type: ignore[arg-type]
    rng = random.Random(spec["seed"])
    outcomes: list[str] = []
    try:
        from cachedcall.events import subscribe

        subscribe(lambda event: outcomes.append(event.outcome) if event.is_call else None)
        recording = None
    except ImportError:
        # An older cachedcall: one recording for the whole run, its new events per call.
        from cachedcall.testing import record

        recording = record().__enter__()
    # Warm up (S(0) holds until t0): every entry computed once, connections open.
    for name, alias in plan:
        for args in readers.FUNCTIONS[name].args:
            functions[name, alias](*args)
    if recording is not None:
        recording.clear()
    outcomes.clear()
    _say(event="ready", notes=notes)
    t0, duration = _wait_go()
    calls, mode = spec["calls"], spec["mode"]
    period = duration / calls
    records: list[list[Any]] = []

    def one(t_txn: float | None) -> None:
        name, alias = rng.choice(plan)
        args = rng.choice(readers.FUNCTIONS[name].args)
        outcomes.clear()
        error = None
        t_start = time.monotonic()
        try:
            digest, preview = fingerprint(functions[name, alias](*args))
        except Exception as exc:
            digest, preview, error = None, "", repr(exc)
        t_end = time.monotonic()
        if recording is not None:
            outcomes.extend(e.outcome for e in recording.filter() if e.outcome != "stored")
            recording.clear()
        outcome = outcomes[0] if outcomes else None
        records.append([name, alias, list(args), t_start, t_end, digest, preview, t_txn, outcome, error])

    i = 0
    while i < calls:
        _sleep_until(t0 + i * period)
        if mode == "autocommit":
            one(None)
            i += 1
            continue
        block = min(calls - i, rng.randint(1, 8))
        t_txn = time.monotonic()
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")  # the snapshot of a REPEATABLE READ transaction
            for _ in range(block):
                _sleep_until(t0 + i * period)
                one(t_txn)
                i += 1
    Path(spec["log"]).write_text(json.dumps({"reads": records, "stats": cachedcall.stats()}))
    _say(event="done", reads=len(records))


def main() -> None:
    spec_path = sys.argv[1]
    os.environ["RACE_CONFIG"] = spec_path
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.race.settings"
    spec = json.loads(Path(spec_path).read_text())
    import django

    django.setup()
    notes = _settings_notes()
    if spec["role"] == "writer":
        writer(spec, notes)
    else:
        reader(spec, notes)


if __name__ == "__main__":
    main()
