"""Transactions whose snapshot may predate the counters a call read: nothing they compute is
stored.

A ``REPEATABLE READ`` or ``SERIALIZABLE`` transaction reads rows as of its first statement.
A writer may commit and bump after that statement but before our call reads the counters:
the call then sees the new counters and computes from the old rows, and storing the value
would serve those rows to every process until the next bump. So a miss inside such a
transaction computes and returns its value and stores nothing (its single-flight followers
compute their own); hits are still served, since an entry that matches the current
counters holds data at least as new as the snapshot. ``READ COMMITTED`` (Django's default on
PostgreSQL and MySQL) and autocommit read the latest commit at every statement and store as
before.

The level is the database's ``OPTIONS["isolation_level"]`` (the public setting): a level set
by SQL (``SET TRANSACTION ISOLATION LEVEL``, ``default_transaction_isolation``) cannot be seen
without a query per miss, so declare it in ``OPTIONS`` (or in
``CACHEDCALL["SNAPSHOT_DATABASES"]``). SQLite keeps a reading transaction's lock until it ends
in its default journal mode, so no commit can slip under its reads; in WAL mode it reads a
snapshot: list the alias in ``CACHEDCALL["SNAPSHOT_DATABASES"]``. Inside a test case's own
transaction (:mod:`cachedcall.testworld`) nothing commits underneath, so values are stored.

Process state: none.
"""

from __future__ import annotations

from typing import Any

from django.db import connections

from cachedcall import conf
from cachedcall import testworld

__all__: list[str] = []

#: The isolation levels, by vendor, whose transactions read a snapshot (lower case names;
#: PostgreSQL's are the ``IsolationLevel`` enum Django's documentation has you use).
_SNAPSHOT_LEVELS = {
    "postgresql": {"repeatable_read", "serializable", "repeatable read"},
    "mysql": {"repeatable read", "serializable"},
}


def open_snapshot() -> str | None:
    """The alias of a connection in a transaction that may read an old snapshot, or ``None``.

    Only connections already opened in this thread are looked at: a call cannot have read
    through one that is not.
    """
    declared = conf.get().snapshot_databases
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            continue
        snapshot = connection.alias in declared or _reads_snapshot(connection)
        if snapshot and not testworld.in_test_world(connection):
            return connection.alias
    return None


def _reads_snapshot(connection: Any) -> bool:
    levels = _SNAPSHOT_LEVELS.get(connection.vendor)
    if not levels:
        return False
    level = connection.settings_dict.get("OPTIONS", {}).get("isolation_level")
    if level is None:
        return False  # Django's default on both: READ COMMITTED
    if type(level) is int and connection.vendor == "postgresql":
        # A bare number, as psycopg2's constants are: Django reads it through this enum.
        from django.db.backends.postgresql.psycopg_any import IsolationLevel

        level = IsolationLevel(level)
    name = getattr(level, "name", level)  # psycopg's IsolationLevel, or MySQL's string
    return str(name).lower() in levels
