"""The miss protocol on its own: its steps driven by hand, no backend, no thread, no loop.

Each test sends the protocol the answers a backend could give and checks the operations it
asks for, in order: what a sync and an async driver would both perform.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from cachedcall import call
from cachedcall import entry
from cachedcall import steps
from cachedcall.decorators import cached
from cachedcall.decorators import function_cache
from cachedcall.entry import CORRUPT
from cachedcall.entry import FAILED
from cachedcall.entry import MISS
from cachedcall.entry import STALE


def _fc(**options: Any) -> Any:
    @cached(timeout=60, **options)
    def compute(n):
        return n * 2

    fc = function_cache(compute)
    fc.setup()
    return fc


class Script:
    """Drives a step generator, answering each operation with ``answer(op)``; records them."""

    def __init__(self, steps: Any) -> None:
        self.steps = steps
        self.ops: list[tuple[Any, ...]] = []

    def run(self, answer: Any) -> Any:
        reply: Any = None
        send = self.steps.send
        while True:
            try:
                op = send(reply)
            except StopIteration as done:
                return done.value
            self.ops.append(op)
            send = self.steps.send
            try:
                reply = answer(op)
            except BaseException as exc:
                send, reply = self.steps.throw, exc

    def kinds(self) -> list[str]:
        return [op[0] if op[0] != steps.STORE else f"store.{op[2]}" for op in self.ops]


def _miss(fc: Any, state: Any = MISS, versions: Any = (1, 2)) -> call.Miss:
    key = fc.key_for(None, (21,), {})
    return call.Miss(key, fc.static_keys, versions, state, 0.0, (21,), {})


def _answers(compute: Any = 42, **by_kind: Any) -> Any:
    def answer(op: tuple[Any, ...]) -> Any:
        name = op[0] if op[0] != steps.STORE else f"store.{op[2]}"
        if name == steps.COMPUTE:
            if isinstance(compute, BaseException):
                raise compute
            return compute
        value = by_kind.get(name, True)
        return value(op) if callable(value) else value

    return answer


def test_a_plain_miss_computes_then_writes_one_entry_stamped_with_what_it_read():
    fc = _fc(single_flight=False)
    miss = _miss(fc)
    script = Script(call.after_miss(fc, miss, None, (miss.key, "me")))
    assert script.run(_answers()) == 42
    assert script.kinds() == ["compute", "store.write"]
    _, store, _, key, written, timeout, sign = script.ops[1]
    assert (store, key, timeout, sign) == (fc.store, miss.key, 60, False)
    assert written[1] == (1, 2) and pickle.loads(written[4]) == 42


def test_a_failed_read_computes_and_stores_nothing_even_with_a_lock():
    fc = _fc(single_flight=False, lock=True)
    miss = _miss(fc, state=FAILED, versions=None)
    script = Script(call.after_miss(fc, miss, None, (miss.key, "me")))
    assert script.run(_answers()) == 42
    assert script.kinds() == ["compute"]


def test_a_corrupt_entry_is_deleted_and_lost_counters_are_seeded_before_computing():
    fc = _fc(single_flight=False)
    miss = _miss(fc, state=CORRUPT, versions=(1, None))
    seeded = {miss.counter_keys[1]: 99}
    script = Script(call.after_miss(fc, miss, None, (miss.key, "me")))
    assert script.run(_answers(**{"store.seed": seeded})) == 42
    assert script.kinds() == ["store.delete", "store.seed", "compute", "store.write"]
    assert script.ops[0][3] == [miss.key]
    assert script.ops[1][3] == [miss.counter_keys[1]]
    assert script.ops[3][4][1] == (1, 99)  # stamped with the seeded counter


def test_a_counter_that_cannot_be_seeded_means_nothing_is_stored():
    fc = _fc(single_flight=False)
    miss = _miss(fc, versions=(None, None))
    script = Script(call.after_miss(fc, miss, None, (miss.key, "me")))
    assert script.run(_answers(**{"store.seed": None})) == 42
    assert script.kinds() == ["store.seed", "compute"]


def test_a_lock_holder_computes_then_stores_then_unlocks():
    fc = _fc(single_flight=False, lock=True)
    miss = _miss(fc)
    script = Script(call.after_miss(fc, miss, None, (miss.key, "me")))
    assert script.run(_answers(**{"store.add": True})) == 42
    assert script.kinds() == ["store.add", "compute", "store.write", "store.delete"]
    assert script.ops[0][3] == script.ops[3][3][0] == miss.key + ":L"


def test_a_lock_waiter_polls_and_serves_the_holders_value_without_computing():
    fc = _fc(single_flight=False, lock=True, lock_wait=5)
    miss = _miss(fc)
    stored = entry.wire(entry.pack((1, 2), 0.1, 84, None), miss.key, False)
    polls = iter([{"x": 1}, {miss.key: stored, **dict(zip(miss.counter_keys, (1, 2), strict=True))}])
    script = Script(call.after_miss(fc, miss, None, (miss.key, "me")))
    answer = _answers(**{"store.add": False, steps.READ: lambda op: next(polls), steps.SLEEP: None})
    assert script.run(answer) == 84
    assert script.kinds() == ["store.add", "sleep", "read", "store.add", "sleep", "read"]
    assert steps.COMPUTE not in script.kinds()


def test_a_failing_computation_releases_its_lock_and_raises():
    fc = _fc(single_flight=False, lock=True)
    miss = _miss(fc)
    script = Script(call.after_miss(fc, miss, None, (miss.key, "me")))
    with pytest.raises(ZeroDivisionError):
        script.run(_answers(compute=ZeroDivisionError(), **{"store.add": True}))
    assert script.kinds() == ["store.add", "compute", "release"]


def test_a_stale_entry_another_process_refreshes_is_served_at_once():
    fc = _fc(single_flight=False, stale=30)
    miss = _miss(fc, state=STALE)
    old = entry.pack((1, 2), 0.1, "old", 1.0)
    script = Script(call.after_miss(fc, miss, old, (miss.key, "me")))
    assert script.run(_answers(**{"store.add": False})) == "old"
    assert script.kinds() == ["store.add"]


def test_a_stale_entry_this_caller_claims_is_recomputed_under_its_lock():
    fc = _fc(single_flight=False, stale=30)
    miss = _miss(fc, state=STALE)
    old = entry.pack((1, 2), 0.1, "old", 1.0)
    script = Script(call.after_miss(fc, miss, old, (miss.key, "me")))
    assert script.run(_answers(**{"store.add": True})) == 42
    assert script.kinds() == ["store.add", "compute", "store.write", "store.delete"]


def test_a_follower_waits_for_its_leader_and_gets_a_copy_of_its_value():
    fc = _fc()
    miss = _miss(fc)
    leader_flight, leads = fc.flights.join(miss.key, miss.key, "leader")
    assert leads
    script = Script(call.after_miss(fc, miss, None, (miss.key, "follower")))

    def wait(op: tuple[Any, ...]) -> bool:
        fc.flights.land(miss.key, leader_flight, miss.key, entry.pack((1, 2), 0.1, [7], None), None)
        return True

    assert script.run(_answers(**{call.WAIT: wait})) == [7]
    assert script.kinds() == ["wait"]


def test_refresh_reads_only_the_counters_then_computes_and_stores():
    fc = _fc(single_flight=False)
    key = fc.key_for(None, (21,), {})
    counters = dict(zip(fc.static_keys, (5, 6), strict=True))
    script = Script(call.refresh_steps(fc, (key, fc.static_keys), (21,), {}))
    assert script.run(_answers(**{"store.read": counters})) == 42
    assert script.kinds() == ["store.read", "compute", "store.write"]
    assert script.ops[0][1] is fc.counters and script.ops[2][4][1] == (5, 6)
