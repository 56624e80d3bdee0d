"""A test's own transaction is the test's world: writes in it count as committed.

Django's ``TestCase`` (and pytest-django's ``db`` fixture, which is built on it) runs each
test inside ``atomic()`` blocks that it rolls back afterwards; they never commit, so a bump
waiting for their commit would never happen, and every call depending on a row the test
wrote would bypass the cache. Here, a bump requested while only such blocks are open
happens at once, and so does one that waited for a block of the test's own ``atomic()``
once that block is done; read-your-writes still holds inside the test's own blocks.

When the test's block is rolled back, the rows it wrote are gone but the entries computed
from them are stamped with the counters as bumped: each such counter is bumped once more,
lazily, by the next call or bump of that thread (:func:`settle`), before it reads anything.

Recognising the test's blocks reads two Django internals, ``connection.atomic_blocks`` and
the ``_from_testcase`` mark ``TestCase`` puts on its ``Atomic`` objects (Django 3.2+),
behind a gate (:func:`available`): without them every write waits for a commit, as outside
tests. ``tests/test_testworld.py`` is the contract test.

Process state: :data:`active`, ``_local.watched`` (per thread): ``(database alias, test block, keys)`` of
the bumps made inside a test's block, until that block is gone; :func:`forget` drops them.
``_available``: whether the gate is open (it describes the installed Django). Nothing
forgets the records: they are bumps owed, made by :func:`settle` once their block is gone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

from django.db import connections

__all__: list[str] = []

_local = threading.local()
_available: list[bool] = []
#: Whether any thread of this process ever made a bump inside a test's block: read on the
#: hit path (as ``events.active``), so that processes that never run tests pay nothing.
active = False


def available() -> bool:
    """Whether the installed Django marks the blocks of its test cases as we expect."""
    if not _available:
        from django.db import connection
        from django.db import transaction

        block = transaction.atomic()
        _available.append(
            isinstance(getattr(connection, "atomic_blocks", None), list)
            and getattr(block, "_from_testcase", None) is False
        )
    return _available[0]


def in_test_world(connection: Any) -> bool:
    """Whether the open ``atomic()`` blocks of ``connection`` are all a test case's own."""
    blocks: list[Any] | None = getattr(connection, "atomic_blocks", None)
    if not blocks or not available():
        return False
    return all(getattr(block, "_from_testcase", False) for block in blocks)


def watching() -> bool:
    """Whether this thread made bumps inside a test's block that may need repeating (cheap)."""
    return bool(getattr(_local, "watched", None))


def watch(connection: Any, keys: Iterable[str]) -> None:
    """Remember that ``keys`` were bumped inside the innermost test block of ``connection``."""
    global active
    active = True
    watched: list[tuple[str, Any, list[str]]] | None = getattr(_local, "watched", None)
    if watched is None:
        watched = _local.watched = []
    block = connection.atomic_blocks[-1]
    for alias, each, held in watched:
        if alias == connection.alias and each is block:
            held.extend(keys)
            return
    watched.append((connection.alias, block, list(keys)))


def settle(bump_now: Callable[[Iterable[str]], object]) -> None:
    """Bump once more the keys bumped inside test blocks that have been rolled back since."""
    watched: list[tuple[str, Any, list[str]]] | None = getattr(_local, "watched", None)
    if not watched:
        return
    gone = [record for record in watched if not _open(*record[:2])]
    if gone:
        _local.watched = [record for record in watched if record not in gone]
        bump_now(dict.fromkeys(key for record in gone for key in record[2]))


def _open(alias: str, block: Any) -> bool:
    return any(each is block for each in connections[alias].atomic_blocks)
