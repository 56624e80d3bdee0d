"""The stale-read checker: which reads returned data the database did not hold while they ran.

The method, exactly:

1. **States.** One writer process makes every write, one *write block* at a time (an
   operation in autocommit, or several in one ``transaction.atomic()``). Write ``k`` turns
   committed state ``S(k-1)`` into ``S(k)``; ``S(0)`` is the seed. The writer records
   ``t_begin(k)`` (``time.monotonic()`` just before the block) and ``t_done(k)`` (just after it
   returned: commit and on-commit callbacks, our bumps among them, done), then computes the
   answer of every reader function for every argument *from the database*, with the
   undecorated function, before its next write: nobody else writes, so that is ``S(k)``'s
   answer. ``CLOCK_MONOTONIC`` is one clock for every process of the machine.
2. **Reads.** A reader records ``t_start`` and ``t_end`` (monotonic, around the call), the
   function, the arguments and a digest of the result. Every reader function runs exactly
   one ``SELECT``, so a computed result is one committed state's answer, never a mix.
3. **What held during a call.** ``S(j)`` may have been the committed state at some moment of
   ``[t_ref, t_end]`` iff write ``j`` may have committed before ``t_end``
   (``t_begin(j) < t_end``) and write ``j+1`` had not surely committed before ``t_ref``
   (not ``t_done(j+1) < t_ref``). So the states that held are ``j_min..j_max`` with
   ``j_min = #{k: t_done(k) < t_ref}`` and ``j_max = #{k: t_begin(k) < t_end}``.
4. **Verdict.** A read is *fresh* when its result equals the answer of some state in
   ``j_min..j_max``; answers are compared by value, so an old state whose answer equals a
   current one is fine. Otherwise it is *stale* when it equals the answer of an earlier
   state (its *age* is ``t_ref - t_done(m)``, ``m`` the write that first changed that
   answer after the newest state that had it), and *impossible* when no state had it
   before ``t_end`` (a torn or corrupt value; never expected, counted as stale too).

``t_ref`` is the promise's starting point: ``t_start`` for a call in autocommit or in a
READ COMMITTED transaction (each statement sees what committed before it began); the
moment the transaction began for a REPEATABLE READ reader (its snapshot is taken at its
first statement, after that moment: a value from its own snapshot is fine for itself; that
it never reaches anyone else is what the autocommit *observer* beside it checks);
for reads routed to a lagging replica, the last write whose bump's repeat (made
``REPLICA_LAG`` after it), or a later write's, had landed when the call began: ``t_ref`` is
just after that write's ``t_done`` (the library promises nothing fresher; the primary's
states are the reference). The writer logs, from the library's DEBUG records, which bumps
each repeat made (those due from a first to a last time) and when it landed; the repeat
that made write ``k``'s last bumps is the last one whose dues reach into
``[t_begin(k) + REPLICA_LAG, t_done(k) + REPLICA_LAG]`` (see :func:`landings`). A write that
no repeat covers (it bumped nothing), and every write of a library that logs no repeats,
is required a fixed allowance after ``t_done + REPLICA_LAG``.

Every uncertainty (a process descheduled between its clock read and its work) widens
``j_min..j_max``, so timing noise can hide a stale read but never invent one. The
``--self-test`` runs check both directions: with caching off no read may be stale (no
false positives), with the writer's bumps switched off stale reads must be found (no
blind checker); :func:`self_test` checks the arithmetic on hand-made timelines.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
from collections import Counter
from collections import defaultdict
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

__all__ = ["Read", "Timeline", "fingerprint", "judge", "landings", "self_test"]

FRESH, STALE, IMPOSSIBLE = "fresh", "stale", "impossible"


def fingerprint(result: Any) -> tuple[str, str]:
    """``(digest, preview)`` of a result: equal results, equal digests, in every process."""
    text = json.dumps(result, separators=(",", ":"), sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest(), text[:100]


def answer_key(name: str, args: Iterable[Any]) -> str:
    return f"{name}{json.dumps(list(args))}"


@dataclass
class Read:
    """One call a reader made."""

    name: str
    alias: str
    args: list[Any]
    t_start: float
    t_end: float
    digest: str | None
    preview: str
    #: When the reader's transaction began (None in autocommit).
    t_txn: float | None
    outcome: str | None
    error: str | None
    mode: str
    reader: int

    @property
    def key(self) -> str:
        return answer_key(self.name, self.args)


class Timeline:
    """The writer's committed states: their time bounds and each answer's change points."""

    def __init__(self, seed_answers: dict[str, list[str]], writes: list[list[Any]]) -> None:
        #: t_begin(k) and t_done(k) of write k = 1..N, at index k - 1.
        self.begins = [w[1] for w in writes]
        self.dones = [w[2] for w in writes]
        self.what = ["seed", *(w[3] for w in writes)]
        self.changes: dict[str, tuple[list[int], list[str]]] = {}
        for key, (digest, _) in seed_answers.items():
            self.changes[key] = ([0], [digest])
        self.previews: dict[str, str] = {d: p for d, p in seed_answers.values()}
        for k, write in enumerate(writes, start=1):
            for key, (digest, preview) in write[4].items():
                points, digests = self.changes.setdefault(key, ([], []))
                points.append(k)
                digests.append(digest)
                self.previews.setdefault(digest, preview)

    def window(self, t_ref: float, t_end: float) -> tuple[int, int]:
        """``(j_min, j_max)``: the states that may have held at some moment of the call."""
        return bisect.bisect_left(self.dones, t_ref), bisect.bisect_left(self.begins, t_end)

    def judge(self, key: str, digest: str, t_ref: float, t_end: float) -> tuple[str, float | None, int]:
        """``(verdict, age in seconds, the write that outdated it)`` of one result."""
        points, digests = self.changes[key]
        j_min, j_max = self.window(t_ref, t_end)
        # The change points in force at j_min .. j_max.
        first = bisect.bisect_right(points, j_min) - 1
        last = bisect.bisect_right(points, j_max) - 1
        if digest in digests[first : last + 1]:
            return FRESH, None, 0
        for i in range(first - 1, -1, -1):
            if digests[i] == digest:
                outdated_by = points[i + 1]
                return STALE, t_ref - self.dones[outdated_by - 1], outdated_by
        return IMPOSSIBLE, None, 0


def judge(
    timeline: Timeline,
    reads: list[Read],
    *,
    replica_lag: float | None = None,
    reference: Callable[[float], float] | None = None,
    windows: Iterable[tuple[float, float]] = (),
    grace: float = 0.0,
) -> dict[str, Any]:
    """Judge every read; return the counts a scenario reports.

    :param replica_lag: reads go to a replica this much behind at most (seconds): judged
        from ``t_start - replica_lag``, or from ``reference(t_start)`` when given (see
        :func:`landings`).
    :param windows: outage windows (monotonic). A stale read that starts inside one or up
        to ``grace`` seconds after it is in the window the README documents (the counter
        store answers again before the writer's retried bump lands): counted apart, in
        ``in_windows``, not in ``stale``.
    """
    windows = list(windows)
    out: dict[str, Any] = {
        "reads": 0,
        "stale": 0,
        "impossible": 0,
        "worst_age_ms": 0.0,
        "errors": 0,
        "in_windows": 0,
        "lagged": 0,
        "outcomes": Counter(),
        "stale_outcomes": Counter(),
        "by_function": defaultdict(lambda: {"reads": 0, "stale": 0, "hits": 0, "worst_age_ms": 0.0}),
        "by_mode": defaultdict(lambda: {"reads": 0, "stale": 0}),
        "outdated_by": Counter(),
        "examples": [],
    }
    for read in reads:
        if read.error is not None or read.digest is None:
            out["errors"] += 1
            if len(out["examples"]) < 8:
                out["examples"].append({"error": read.error, "function": read.name, "args": read.args})
            continue
        t_ref = read.t_txn if read.mode == "repeatable_read" and read.t_txn is not None else read.t_start
        if replica_lag is not None:
            if timeline.judge(read.key, read.digest, t_ref, read.t_end)[0] != FRESH:
                out["lagged"] += 1  # older than the primary, but within the allowed lag
            t_ref = reference(t_ref) if reference is not None else t_ref - replica_lag
        verdict, age, outdated_by = timeline.judge(read.key, read.digest, t_ref, read.t_end)
        fn = out["by_function"][f"{read.name}@{read.alias}"]
        out["reads"] += 1
        fn["reads"] += 1
        fn["hits"] += read.outcome == "hit"
        out["outcomes"][read.outcome or "?"] += 1
        out["by_mode"][read.mode]["reads"] += 1
        if verdict == FRESH:
            continue
        if any(start <= read.t_start <= end + grace for start, end in windows):
            out["in_windows"] += 1
            continue
        out["stale"] += 1
        fn["stale"] += 1
        out["by_mode"][read.mode]["stale"] += 1
        out["stale_outcomes"][read.outcome or "?"] += 1
        if verdict == IMPOSSIBLE:
            out["impossible"] += 1
        else:
            assert age is not None
            out["worst_age_ms"] = max(out["worst_age_ms"], age * 1000)
            fn["worst_age_ms"] = max(fn["worst_age_ms"], age * 1000)
            out["outdated_by"][timeline.what[outdated_by]] += 1
        if len(out["examples"]) < 8:
            out["examples"].append(
                {
                    "verdict": verdict,
                    "function": f"{read.name}@{read.alias}",
                    "args": read.args,
                    "mode": read.mode,
                    "outcome": read.outcome,
                    "age_ms": None if age is None else round(age * 1000, 1),
                    "returned": read.preview,
                    "outdated_by": timeline.what[outdated_by] if verdict == STALE else None,
                }
            )
    out["worst_age_ms"] = round(out["worst_age_ms"], 1)
    for fn in out["by_function"].values():
        fn["worst_age_ms"] = round(fn["worst_age_ms"], 1)
    out["outdated_by"] = dict(out["outdated_by"].most_common(10))
    for name in ("outcomes", "stale_outcomes", "by_function", "by_mode"):
        out[name] = dict(out[name])
    return out


def landings(
    timeline: Timeline, lag: float, repeats: list[tuple[float, float, float]], fallback: float
) -> tuple[Callable[[float], float], list[float]]:
    """The replica scenario's reference: from a read's start, the time it is judged from.

    :param repeats: ``(first due, last due, landed)`` of each repeat the writer's library
        made, in order: it made every bump due from the first to the last.
    :param fallback: for a write no repeat covers (it bumped nothing), the landing assumed
        after ``t_done + lag``.
    :returns: the reference, and for each write covered how long after ``t_done + lag`` its
        repeat landed (seconds: the repeat's own landing, reported).

    The bumps of write ``k`` were made during it, so their repeats were due within
    ``[t_begin(k) + lag, t_done(k) + lag]``, where no other write's are (the writer makes one
    write at a time); the last repeat whose dues reach into that window made the last of them.
    """
    firsts = [first for first, _, _ in repeats]
    landed: list[float] = []
    late: list[float] = []
    for begin, done in zip(timeline.begins, timeline.dones, strict=True):
        i = bisect.bisect_right(firsts, done + lag) - 1
        if i >= 0 and repeats[i][1] >= begin + lag:
            landed.append(repeats[i][2])
            late.append(repeats[i][2] - done - lag)
        else:
            landed.append(done + lag + fallback)
    # Once a write's repeat has landed, nothing computed before it may be returned, which
    # covers every earlier write too: a write is required from the first landing among its
    # own and every later one's (a running minimum from the end, nondecreasing).
    for k in range(len(landed) - 2, -1, -1):
        landed[k] = min(landed[k], landed[k + 1])

    def reference(t_start: float) -> float:
        j = bisect.bisect_right(landed, t_start)  # the writes required by now
        # Just after write j's t_done, whatever the clock's magnitude (window() counts the
        # writes done strictly before the reference).
        return math.nextafter(timeline.dones[j - 1], math.inf) if j else -math.inf

    return reference, late


@dataclass
class _Case:
    digest: str
    t_start: float
    t_end: float
    expect: str
    mode: str = "autocommit"
    t_txn: float | None = None
    lag: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def self_test() -> list[str]:
    """Check the verdicts on a hand-made timeline; return the failures (empty: all right)."""
    # S0 -> a, write 1 in [1.0, 1.1] -> b, write 2 in [2.0, 2.1] -> c, write 3 in [3.0, 3.1] -> a.
    writes = [
        [1, 1.0, 1.1, "w1", {"f[]": ["b", "b"]}],
        [2, 2.0, 2.1, "w2", {"f[]": ["c", "c"]}],
        [3, 3.0, 3.1, "w3", {"f[]": ["a", "a"]}],
    ]
    timeline = Timeline({"f[]": ["a", "a"]}, writes)
    cases = [
        _Case("a", 0.5, 0.6, FRESH),
        _Case("a", 1.05, 1.2, FRESH),  # write 1 was not surely committed when the call began
        _Case("b", 1.05, 1.2, FRESH),
        _Case("a", 1.2, 1.3, STALE),  # began after write 1 returned: 100 ms old
        _Case("c", 1.2, 1.3, IMPOSSIBLE),  # write 2 had not begun by the end
        _Case("zzz", 1.2, 1.3, IMPOSSIBLE),
        _Case("b", 2.2, 2.3, STALE),
        _Case("a", 2.2, 2.3, STALE),
        _Case("a", 3.2, 3.3, FRESH),  # S3's answer equals S0's: compared by value
        _Case("b", 0.5, 2.05, FRESH),  # a long call: any state that held during it
        _Case("a", 1.5, 1.6, FRESH, mode="repeatable_read", t_txn=0.9),
        _Case("a", 1.5, 1.6, STALE, mode="repeatable_read", t_txn=1.2),
        _Case("a", 1.5, 1.6, STALE, mode="read_committed", t_txn=0.9),
        _Case("a", 1.25, 1.3, FRESH, lag=0.2),
        _Case("a", 1.35, 1.4, STALE, lag=0.2),
    ]
    failures = []
    for case in cases:
        read = Read(
            "f",
            "default",
            [],
            case.t_start,
            case.t_end,
            case.digest,
            "",
            case.t_txn,
            None,
            None,
            case.mode,
            0,
        )
        result = judge(timeline, [read], replica_lag=case.lag)
        got = FRESH if not result["stale"] else IMPOSSIBLE if result["impossible"] else STALE
        if got != case.expect:
            failures.append(f"{case}: {got}")
    # Write 1's bumps were due at 1.25 and 1.28 and their repeat landed at 1.36: a read from
    # 1.35 may still return the seed's answer, one from 1.37 may not. Write 2's repeat was
    # made in two (the second landed at 2.4); write 3 bumped nothing: 50 ms assumed.
    repeats = [(1.25, 1.28, 1.36), (2.22, 2.25, 2.26), (2.28, 2.28, 2.4)]
    reference, late = landings(timeline, 0.2, repeats, fallback=0.05)
    # Write 1 bumped nothing here; write 2's repeat landed at 2.4: from then on, write 1's
    # answer is required too (the seed's "a" is stale), not only after 1.1 + 0.2 + 0.05.
    only_later = [(2.22, 2.25, 2.4)]
    later_reference, _ = landings(timeline, 0.2, only_later, fallback=5.0)
    read = Read("f", "default", [], 2.45, 2.46, "a", "", None, None, None, "autocommit", 0)
    if not judge(timeline, [read], replica_lag=0.2, reference=later_reference)["stale"]:
        failures.append("a write with no repeat, before one whose repeat landed, was not required")
    # The reference stays just after t_done on a clock far from zero (past 2**24 s).
    far = Timeline({"f[]": ["a", "a"]}, [[1, 2.0**25, 2.0**25 + 0.1, "w1", {"f[]": ["b", "b"]}]])
    far_reference, _ = landings(far, 0.2, [(2.0**25 + 0.25, 2.0**25 + 0.25, 2.0**25 + 0.3)], fallback=0.05)
    read = Read("f", "default", [], 2.0**25 + 0.8, 2.0**25 + 0.81, "a", "", None, None, None, "autocommit", 0)
    if not judge(far, [read], replica_lag=0.2, reference=far_reference)["stale"]:
        failures.append("on a clock past 2**24 s, a read after the repeat landed was not judged")
    if [round(x, 3) for x in late] != [0.06, 0.1]:
        failures.append(f"the repeats' landings: {late}")
    for t_start, digest, expect in (
        (1.35, "a", FRESH),
        (1.37, "a", STALE),
        (2.35, "b", FRESH),
        (2.41, "b", STALE),
        (3.33, "c", FRESH),
        (3.36, "c", STALE),
    ):
        t_end = t_start + 0.01
        read = Read("f", "default", [], t_start, t_end, digest, "", None, None, None, "autocommit", 0)
        got = judge(timeline, [read], replica_lag=0.2, reference=reference)
        if (FRESH if not got["stale"] else STALE) != expect:
            failures.append(f"a read of {digest} at {t_start} after {repeats}: {got['stale']} stale")
    read = Read("f", "default", [], 1.2, 1.3, "a", "", None, None, None, "autocommit", 0)
    age = judge(timeline, [read])["worst_age_ms"]
    if age != 100.0:
        failures.append(f"age of a read 100 ms after write 1: {age}")
    excused = judge(timeline, [read], windows=[(1.0, 1.15)], grace=0.1)
    if excused["stale"] or excused["in_windows"] != 1:
        failures.append(f"a stale read 50 ms after an outage window, grace 100 ms: {excused}")
    return failures
