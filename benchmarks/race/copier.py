"""The replica: a second PostgreSQL database that a thread keeps ~50 ms behind the primary.

Every few milliseconds the copier reads all the ``race_`` tables of the primary in ONE
statement (one snapshot: one committed state, as a replica replays whole transactions),
as JSON text, and keeps it with the moment it began; it applies the newest snapshot that
is at least ``delay`` old to the replica in ONE statement too (a PL/pgSQL function that
empties the tables and refills them from the JSON: one transaction, so readers of the
replica see the old state or the new one, never a mix). Two round trips a cycle, and the
thread and its two server processes run at a raised priority (when the harness may), so
that a loaded machine does not stretch the lag past what the scenario allows; the lags it
achieved are reported (:meth:`Copier.lags`).

Process state: the thread's connections, queue and the moments it applied snapshots.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from typing import Any

import psycopg
from psycopg import sql

#: The nice value of the copier's thread and its PostgreSQL backends (root only).
PRIORITY = -10


class Copier(threading.Thread):
    def __init__(self, primary: str, replica: str, delay: float = 0.05) -> None:
        super().__init__(name="race-copier", daemon=True)
        self.delay = delay
        self.source = psycopg.connect(primary, autocommit=True)
        self.target = psycopg.connect(replica, autocommit=True)
        # A replica needs no durability here; a commit waiting for a shared disk's fsync
        # would stretch the lag by hundreds of milliseconds.
        self.target.execute("SET synchronous_commit = off")
        rows = self.source.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'race\\_%' "
            "ORDER BY tablename"
        ).fetchall()
        self.tables = [r[0] for r in rows]
        parts = [
            sql.SQL("{}, (SELECT coalesce(json_agg(t), '[]') FROM {} t)").format(
                sql.Literal(name), sql.Identifier(name)
            )
            for name in self.tables
        ]
        self.read = sql.SQL("SELECT json_build_object({})::text").format(sql.SQL(", ").join(parts))
        self.target.execute(
            sql.SQL(
                """CREATE OR REPLACE FUNCTION race_apply(data json) RETURNS void AS $$
                DECLARE name text;
                BEGIN
                    FOREACH name IN ARRAY {tables} LOOP
                        EXECUTE format('DELETE FROM %I', name);
                    END LOOP;
                    FOREACH name IN ARRAY {tables} LOOP
                        EXECUTE format(
                            'INSERT INTO %I SELECT * FROM json_populate_recordset(NULL::%I, $1 -> %L)',
                            name, name, name
                        ) USING data;
                    END LOOP;
                END $$ LANGUAGE plpgsql"""
            ).format(
                tables=sql.SQL("ARRAY[{}]::text[]").format(sql.SQL(", ").join(map(sql.Literal, self.tables)))
            )
        )
        self.stop = threading.Event()
        #: (when the applied snapshot began, when it was applied), monotonic.
        self.applied: list[tuple[float, float]] = []
        self.error: str | None = None
        #: The slowest snapshot and apply, in seconds (what a lag spike came from).
        self.slowest = {"snapshot": 0.0, "apply": 0.0}

    def snapshot(self) -> tuple[float, str]:
        began = time.monotonic()
        row = self.source.execute(self.read).fetchone()
        assert row is not None
        self.slowest["snapshot"] = max(self.slowest["snapshot"], time.monotonic() - began)
        return began, row[0]

    def apply(self, snapshot: tuple[float, str]) -> None:
        began = time.monotonic()
        self.target.execute("SELECT race_apply(%s::json)", [snapshot[1]])
        self.applied.append((snapshot[0], time.monotonic()))
        self.slowest["apply"] = max(self.slowest["apply"], time.monotonic() - began)

    def copy_now(self) -> None:
        self.apply(self.snapshot())

    def _raise_priority(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PRIORITY)
            for connection in (self.source, self.target):
                os.setpriority(os.PRIO_PROCESS, connection.info.backend_pid, PRIORITY)
        except (PermissionError, OSError):
            pass  # not root: the lag it achieves is reported either way

    def run(self) -> None:
        self._raise_priority()
        queue: collections.deque[Any] = collections.deque()
        try:
            # The lag counts from the start of the run (the copy made before it held since).
            self.applied.clear()
            self.copy_now()
            while not self.stop.is_set():
                queue.append(self.snapshot())
                due = None
                while queue and queue[0][0] <= time.monotonic() - self.delay:
                    due = queue.popleft()
                if due is not None:
                    self.apply(due)
                time.sleep(0.003)
        except Exception as exc:
            self.error = repr(exc)

    def lags(self) -> list[float]:
        """For each applied snapshot, how far behind the primary the replica was at worst
        while it held it: from the moment the snapshot began until the next was applied."""
        return [b[1] - a[0] for a, b in zip(self.applied, self.applied[1:], strict=False)]

    def max_lag(self) -> float:
        return max(self.lags(), default=0.0)

    def close(self) -> None:
        self.stop.set()
        if self.is_alive():
            self.join(5)
        self.source.close()
        self.target.close()
