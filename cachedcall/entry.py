"""The stored entry: its layout, and the one place where stored bytes become objects.

An entry is stored as a plain tuple of builtins, never as an instance of a class of ours,
so that what is on the wire does not depend on where our classes live::

    (FORMAT, versions, created, duration, payload, expires)

``FORMAT`` names the layout and the Django version that wrote the entry.

``versions`` are the counter values the entry was computed under (the generations first,
then the model versions: see :data:`GENERATIONS`); ``payload`` is the value pickled by us,
not by the backend, so that a value that no longer unpickles (a class renamed by a deploy,
planted bytes) is a miss of this entry and not an error that takes the counters read in the
same round trip down with it; ``expires`` is the wall-clock end of freshness when the entry
outlives it (``stale=``, ``early=``), else ``None``.

Outside this module an entry is an :class:`Entry`; no other module knows the layout.

Process state: none (:mod:`cachedcall.signing` keeps the derived keys).
"""

from __future__ import annotations

import enum
import functools
import pickle
import time
from typing import Any
from typing import NamedTuple

import django

from cachedcall import signing
from cachedcall import xfetch

__all__: list[str] = []

#: The marker of "nothing here": a miss, an option not given. A cached ``None`` is a value.
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING", "__slots__": ()})()

#: The layout's version and the Django version the entry was written under: pickles of
#: model instances are only guaranteed within one Django version, so after an upgrade,
#: rolling or not, an entry written under another version is a miss (and is overwritten).
FORMAT = (3, django.__version__)
#: The first versions of every entry are generations: the global one (:func:`cachedcall.reset`)
#: and the function's (``invalidate_all()``). The rest are model versions, which ``soft=``
#: may serve past.
GENERATIONS = 2


class Entry(NamedTuple):
    """A stored entry, as read or about to be written."""

    format: tuple[int, str]
    versions: tuple[Any, ...]
    created: float
    duration: float
    payload: bytes
    expires: float | None


class ReadState(enum.Enum):
    """What a read found for a call."""

    #: Current and fresh: serve it.
    HIT = "hit"
    #: Nothing usable: compute.
    MISS = "miss"
    #: The backend did not answer: compute, store nothing.
    FAILED = "failed"
    #: Something that must be deleted: compute and overwrite.
    CORRUPT = "corrupt"
    #: An old value that may be served while one caller recomputes (``stale=``, ``soft=``).
    STALE = "stale"
    #: A fresh value that this caller was drawn to refresh (XFetch, ``early=``).
    EARLY = "early"


HIT, MISS, FAILED, CORRUPT, STALE, EARLY = ReadState
# Entry._make checks the length in Python; _opened() has already: a C call is enough.
_entry: Any = functools.partial(tuple.__new__, Entry)


class Unreadable(ValueError):
    """Stored data that is not an entry of ours, or whose value does not unpickle."""


def pack(versions: tuple[Any, ...], duration: float, value: Any, fresh_for: float | None) -> Entry:
    """Return the entry for ``value``; raise what pickle raises for an unpicklable one."""
    now = time.time()
    expires = None if fresh_for is None else now + fresh_for
    return Entry(FORMAT, versions, now, duration, pickle.dumps(value, pickle.HIGHEST_PROTOCOL), expires)


def wire(entry: Entry, key: str, sign: bool) -> Any:
    """Return what is written for ``entry`` under ``key``: a plain tuple, or signed bytes."""
    raw = tuple(entry)
    return signing.seal(key, raw) if sign else raw


def _opened(stored: Any, key: str, sign: bool) -> tuple[Any, ...] | None:
    """The wire tuple of an entry of ours; ``None`` for one written under another Django or
    layout (a plain miss); :class:`Unreadable` for anything else."""
    raw = signing.unseal(key, stored) if sign else stored
    if type(raw) is not tuple or len(raw) != 6:
        raise Unreadable("not a cachedcall entry")
    if raw[0] != FORMAT:
        if type(raw[0]) is tuple or raw[0] == 2:  # ours, from another version
            return None
        raise Unreadable("not a cachedcall entry")
    return raw


def value(payload: bytes) -> Any:
    """Unpickle an entry's value; :class:`Unreadable` when it does not unpickle."""
    try:
        return pickle.loads(payload)
    except Exception as exc:
        raise Unreadable(f"the stored value does not unpickle: {exc!r}") from exc


def classify(
    stored: Any,
    key: str,
    versions: tuple[Any, ...],
    sign: bool,
    stale: float,
    early: float | None,
    soft: bool,
    want_entry: bool = False,
) -> tuple[ReadState, Any, Entry | None]:
    """Decide what a read found: ``(state, value, entry)``.

    ``value`` is the unpickled value for ``HIT`` (else ``MISSING``); ``entry`` is given for
    ``STALE`` and ``EARLY``, and for ``HIT`` when ``want_entry``. Raise
    :class:`signing.BadSignature` or :class:`Unreadable` for something to delete.

    :param versions: the counter values read with the entry, in the order it was stamped.
    :param stale: seconds past its freshness an entry may still be served while refreshed.
    :param early: XFetch's beta, or ``None``.
    :param soft: a model version bump serves the old value while one caller recomputes.
    """
    if stored is None:
        return MISS, MISSING, None
    if sign or type(stored) is not tuple or len(stored) != 6 or stored[0] != FORMAT:
        # Signed, foreign or of another version: the full check (the common case, an
        # unsigned entry of ours, skips the call: this is the hit path).
        raw = _opened(stored, key, sign)
        if raw is None:
            return MISS, MISSING, None
    else:
        raw = stored
    stamped = raw[1]
    if stamped == versions:
        expires = raw[5]
        if expires is not None:
            now = xfetch.clock()
            if now >= expires:
                if now < expires + stale:
                    return STALE, MISSING, _entry(raw)
                return MISS, MISSING, None
            if early is not None and xfetch.early(expires, raw[3], early):
                return EARLY, MISSING, _entry(raw)
        try:
            found = pickle.loads(raw[4])
        except Exception as exc:
            raise Unreadable(f"the stored value does not unpickle: {exc!r}") from exc
        return HIT, found, _entry(raw) if want_entry else None
    if soft and None not in versions and stamped[:GENERATIONS] == versions[:GENERATIONS]:
        # Only model versions moved (not reset() or invalidate_all(), and no counter was
        # lost and re-seeded): the function asked for soft invalidation.
        return STALE, MISSING, _entry(raw)
    return MISS, MISSING, None


def stamp(stored: Any, key: str, sign: bool) -> tuple[tuple[Any, ...], float] | None:
    """``(versions, created)`` of a stored entry of ours, for the near tier to keep it by;
    ``None`` for anything else (it is then not kept, and the read reports it)."""
    try:
        raw = _opened(stored, key, sign)
    except ValueError:
        return None
    return None if raw is None else (raw[1], raw[2])


def current_value(stored: Any, key: str, versions: tuple[Any, ...], sign: bool) -> tuple[Any, Entry | None]:
    """``(value, entry)`` of a current entry, else ``(MISSING, None)``; never raises.

    What a lock waiter polls for: whatever is unreadable is left for the next call's
    :func:`classify` to report and delete.
    """
    if stored is None:
        return MISSING, None
    try:
        raw = _opened(stored, key, sign)
        if raw is not None and raw[1] == versions:
            return value(raw[4]), _entry(raw)
    except ValueError:
        pass
    return MISSING, None
