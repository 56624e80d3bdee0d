"""The order of ``on_commit()`` callbacks: ours first, behind a gate on Django's internals.

A bump waits for its commit as a robust ``on_commit()`` callback; a non-robust callback of
someone else's that raises stops every callback after it, so ours must run first. That
needs Django's private ``run_on_commit`` list (:class:`Hooks` reorders it when the commit
drains it), and seeing whether a bump is still queued reads it too: both only where
:func:`gate` found the installed Django keeps the list as assumed. Where the gate is
closed, bumps use ``on_commit()`` alone.

Process state: ``_gates``, per database wrapper class, whether the gate is open; it
describes the installed code, not anything that happened, so nothing resets it.
"""

from __future__ import annotations

import logging
import threading
from functools import partial
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

__all__: list[str] = []

logger = logging.getLogger("cachedcall")


class Hooks(list):  # type: ignore[type-arg]
    """A connection's ``run_on_commit`` list that runs our bumps first at commit.

    A non-robust callback of someone else's that raises stops every callback after it, so
    ours must run before theirs. Moving ours to the front when they are registered would
    break ``captureOnCommitCallbacks`` (it slices the list from its length at entry), so the
    order changes only when Django starts draining the list with ``pop(0)`` at commit.
    """

    _ordered = False

    def pop(self, index: Any = -1) -> Any:
        if index == 0 and not self._ordered:
            self._ordered = True
            ours = [entry for entry in self if getattr(entry[1], "is_bump", False)]
            if ours:
                self[:] = ours + [entry for entry in self if not getattr(entry[1], "is_bump", False)]
        return super().pop(index)


_gates: dict[type[BaseDatabaseWrapper], bool] = {}
_gates_lock = threading.Lock()


def gate(connection: BaseDatabaseWrapper) -> bool:
    """Whether ``connection``'s class keeps ``run_on_commit`` as assumed; probed once per class."""
    cls = type(connection)
    gate = _gates.get(cls)
    if gate is None:
        with _gates_lock:
            gate = _gates.get(cls)
            if gate is None:
                reason = probe(cls)
                gate = _gates[cls] = reason is None
                if reason is not None:
                    logger.info(
                        "cachedcall: %s.%s keeps on_commit() callbacks in a way this version "
                        "does not know (%s); bumps use the public on_commit() alone, so a "
                        "failing callback registered before one can stop it.",
                        cls.__module__,
                        cls.__qualname__,
                        reason,
                    )
    return gate


def probe(cls: type[BaseDatabaseWrapper]) -> str | None:
    """Run ``cls``'s own transaction methods on a bare instance; return what differs, or None.

    What :mod:`cachedcall.bumps` and :class:`Hooks` assume: ``on_commit()`` appends ``(savepoint
    ids, func, robust)`` tuples in place; a commit puts a new list in place and drains the
    old one with ``pop(0)``; a rollback, of a savepoint too, puts a new list in place. It
    runs the code, since some installs ship no source; only the steps that need a database
    are stubbed, and a Django that needs more of the instance closes the gate by raising.
    """

    ran: list[str] = []

    class Ours:
        is_bump = True

        def __call__(self) -> None:
            ran.append("ours")

    ours, a, b = Ours(), partial(ran.append, "a"), partial(ran.append, "b")
    try:

        class Probe(cls):  # type: ignore[misc,valid-type]
            validate_thread_sharing = _savepoint_rollback = _rollback = staticmethod(lambda *_: None)
            _savepoint_allowed = staticmethod(lambda: True)

        # savepoint_rollback() and rollback() refuse to run in an event loop's thread; the
        # probe touches no database, so it calls the functions they wrap.
        savepoint_rollback: Any = getattr(Probe.savepoint_rollback, "__wrapped__", Probe.savepoint_rollback)
        rollback: Any = getattr(Probe.rollback, "__wrapped__", Probe.rollback)
        db: Any = object.__new__(Probe)
        db.in_atomic_block, db.savepoint_ids = True, ["s1"]
        hooks = db.run_on_commit = Hooks()
        db.on_commit(a)
        db.on_commit(b)
        db.on_commit(ours, robust=True)
        entry = hooks[-1] if db.run_on_commit is hooks and len(hooks) == 3 else None
        if not (type(entry) is tuple and len(entry) == 3 and entry[1] is ours and entry[2] is True):
            return "on_commit() does not append (savepoint ids, func, robust) tuples in place"
        db.savepoint_ids = ["s1", "s2"]
        db.on_commit(partial(ran.append, "dropped"))
        savepoint_rollback(db, "s2")
        if db.run_on_commit is hooks or [e[1] for e in db.run_on_commit] != [a, b, ours]:
            return "a savepoint rollback does not put a new list in place"
        hooks = db.run_on_commit = Hooks(db.run_on_commit)
        db.in_atomic_block = False
        Probe.run_and_clear_commit_hooks(db)
        if ran != ["ours", "a", "b"] or not hooks._ordered or db.run_on_commit is hooks:
            return "a commit does not swap in a new list and drain the old one with pop(0)"
        left = db.run_on_commit = [({"s1"}, a, False)]
        rollback(db)
        if db.run_on_commit is left or db.run_on_commit:
            return "a rollback does not put a new list in place"
    except Exception as exc:
        return f"probing it raised {exc!r}"
    return None
