"""Steps and their drivers: the operations the call protocol yields, and who performs them.

:mod:`cachedcall.call` (and :mod:`cachedcall.batch`) write what a call does as generators
that do no I/O themselves: each yields an operation (a tuple, the first item says which)
and is sent its result, or has its exception thrown in. :func:`drive` performs them in the
caller's thread, :func:`adrive` on the event loop; they are the only code that differs
between sync and async after a miss.

``(READ, fc, key, counter_keys)`` the entry and its counters -> found dict or ``None``
``(STORE, store, name, *args)`` a :class:`backend.Store` operation -> its result
``(RELEASE, store, keys)``      delete a lock after a failed computation (async: from a worker
                                thread, since a cancelled task cannot await any more)
``(SLEEP, seconds)``            a lock waiter's pause
``(WAIT, flight)``              a follower waits for its leader -> whether it landed
``(COMPUTE,)``                  run the function -> its result (its exception is thrown in)
``(CALL, args, kwargs)``        run it with these arguments (one call of ``f.map()``)
``(RUN, callable)``             other blocking work (the near tier's connect) -> its result;
                                async: in a worker thread

Process state: none.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from typing import Any

from cachedcall import flights

__all__: list[str] = []

READ, STORE, RELEASE, SLEEP, WAIT, COMPUTE = "read", "store", "release", "sleep", "wait", "compute"
CALL, RUN = "call", "run"
DONE = "done"
Steps = Generator[tuple[Any, ...], Any, Any]


def advance(steps: Steps, reply: Any, error: BaseException | None) -> tuple[Any, ...]:
    """Send the last operation's result (or throw its exception) in; return the next
    operation, or ``(DONE, value)`` when the steps are over."""
    try:
        return steps.send(reply) if error is None else steps.throw(error)
    except StopIteration as done:
        return (DONE, done.value)


def drive(steps: Steps, wrapped: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run ``steps`` in this thread."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        op = advance(steps, reply, error)
        kind, error, reply = op[0], None, None
        try:
            if kind is COMPUTE:
                reply = wrapped(*args, **kwargs)
            elif kind is CALL:
                reply = wrapped(*op[1], **op[2])
            elif kind is STORE:
                reply = op[1].run(op[2], *op[3:])
            elif kind is READ:
                reply = op[1].read(op[2], op[3])
            elif kind is RELEASE:
                reply = op[1].delete(op[2])
            elif kind is SLEEP:
                time.sleep(op[1])
            elif kind is WAIT:
                event = op[1].event
                reply = event is not None and event.wait(flights.WAIT)
            elif kind is RUN:
                reply = op[1]()
            else:
                return op[1]
        except BaseException as exc:
            error = exc


async def adrive(steps: Steps, wrapped: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run ``steps`` on the event loop: blocking operations in a worker thread."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        op = advance(steps, reply, error)
        kind, error, reply = op[0], None, None
        try:
            if kind is COMPUTE:
                reply = await wrapped(*args, **kwargs)
            elif kind is CALL:
                reply = await wrapped(*op[1], **op[2])
            elif kind is STORE:
                reply = await op[1].arun(op[2], *op[3:])
            elif kind is READ:
                reply = await op[1].aread(op[2], op[3])
            elif kind is RELEASE:
                # Maybe cancelled: awaiting anything more is not safe. A worker thread
                # deletes the lock and closes its own connection.
                asyncio.get_running_loop().run_in_executor(None, op[1].release_detached, op[2])
            elif kind is SLEEP:
                await asyncio.sleep(op[1])
            elif kind is WAIT:
                reply = await flights.wait_async(op[1])
            elif kind is RUN:
                reply = await asyncio.get_running_loop().run_in_executor(None, op[1])
            else:
                return op[1]
        except BaseException as exc:
            error = exc
