"""What an attacker plants in a shared cache: a pickle whose loading runs code.

Unpickling a :class:`Planted` appends to :data:`ran` (it could as well call ``os.system``);
a test that finds :data:`ran` empty after reading planted bytes proves nothing ran.
"""

from __future__ import annotations

ran: list[str] = []


def record(what: str) -> str:
    ran.append(what)
    return what


class Planted:
    """What an attacker stores: unpickling it calls record (it could call os.system)."""

    def __reduce__(self):
        return (record, ("planted pickle executed",))
