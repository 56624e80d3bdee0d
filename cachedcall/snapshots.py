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

Process state: ``_memo``, the aliases that read a snapshot for the settings in effect
(recomputed when ``CACHEDCALL`` or ``DATABASES`` change; :func:`forget` drops it).
"""

from __future__ import annotations

from typing import Any

from django.db import connections

from cachedcall import conf
from cachedcall import testworld

__all__: list[str] = []

_memo: list[tuple[Any, Any, tuple[str, ...]] | None] = [None]

#: The isolation levels, by vendor, whose transactions read a snapshot (lower case names;
#: PostgreSQL's are the ``IsolationLevel`` enum Django's documentation has you use).
_SNAPSHOT_LEVELS = {
    "postgresql": {"repeatable_read", "serializable", "repeatable read"},
    "mysql": {"repeatable read", "serializable"},
}


def open_snapshot() -> str | None:
    """The alias of a connection in a transaction that may read an old snapshot, or ``None``.

    Only the databases whose settings say they read a snapshot are looked at, and only
    whether this thread's connection to one is in a transaction (nothing is queried).
    """
    candidates = _candidates()
    if not candidates:
        return None  # the common case, decided without looking at any connection
    for alias in candidates:
        connection = connections[alias]
        if connection.in_atomic_block and not testworld.in_test_world(connection):
            return alias
    return None


def _candidates() -> tuple[str, ...]:
    """The database aliases whose transactions read a snapshot, from the settings alone
    (memoized per ``CACHEDCALL`` and ``DATABASES``: this is asked on every miss)."""
    from django.conf import settings as django_settings

    ours, databases = conf.get(), django_settings.DATABASES
    held = _memo[0]
    if held is not None and held[0] is ours and held[1] is databases:
        return held[2]
    found = tuple(
        alias
        for alias, config in databases.items()
        if alias in ours.snapshot_databases or _declares_snapshot(config)
    )
    _memo[0] = (ours, databases, found)
    return found


def forget() -> None:
    """Drop the memoized candidates."""
    _memo[0] = None


def _declares_snapshot(config: Any) -> bool:
    engine = str(config.get("ENGINE", ""))
    vendor = "postgresql" if "postgres" in engine else "mysql" if "mysql" in engine else None
    if vendor is None:
        return False
    return _reads_snapshot(vendor, config.get("OPTIONS", {}).get("isolation_level"))


def _reads_snapshot(vendor: str, level: Any) -> bool:
    levels = _SNAPSHOT_LEVELS[vendor]
    if level is None:
        return False  # Django's default on both: READ COMMITTED
    if type(level) is int and vendor == "postgresql":
        # A bare number, as psycopg2's constants are: Django reads it through this enum.
        from django.db.backends.postgresql.psycopg_any import IsolationLevel

        level = IsolationLevel(level)
    name = getattr(level, "name", level)  # psycopg's IsolationLevel, or MySQL's string
    return str(name).lower() in levels
