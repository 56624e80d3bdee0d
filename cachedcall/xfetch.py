"""Probabilistic early refresh (XFetch; Vattani, Chierichetti and Lowenstein, VLDB 2015).

A caller that reads a fresh entry recomputes it anyway with probability
``exp(-remaining / (beta * delta))``, where ``remaining`` is the time left before the entry
expires and ``delta`` how long its computation took. Refreshes become likely only close to
expiry, and one caller among many usually refreshes before everybody misses at once: the
stampede is avoided without any coordination between processes.

The module is named after the algorithm: "refresh" is the name of ``f.refresh()``.

Process state: :data:`rand` and :data:`clock`, replaceable by tests.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

__all__: list[str] = []

#: Where the decision gets its randomness and its clock; tests replace them.
rand: Callable[[], float] = random.random
clock: Callable[[], float] = time.time


def early(expires: float, delta: float, beta: float) -> bool:
    """Whether this caller should refresh an entry that is still fresh.

    ``-delta * beta * log(u)`` for ``u`` uniform in (0, 1] is exponentially distributed
    with mean ``beta * delta``; refreshing when it reaches past the expiry time happens with
    probability ``exp(-remaining / (beta * delta))``.
    """
    u = rand()
    if u <= 0.0:
        return True  # log(0): an infinitely early draw
    return clock() - delta * beta * math.log(u) >= expires


def forget() -> None:
    """Use the real randomness and clock again."""
    global rand, clock
    rand, clock = random.random, time.time
