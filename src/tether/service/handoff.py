"""Decisions on a store whose reads wait on the network: read and decided on a worker thread,
written without that thread waiting, answered on the event loop once per committed batch.

An event loop must not wait on PostgreSQL, so the decision's steps (``Authorizer._steps``, a
generator that yields each write and is sent its audit record) cannot run on the loop as they
do on SQLite. Run whole on a worker thread (``asyncio.to_thread``), each decision held its
thread through its group commit and then woke the loop on its own; profiled, handing each
decision back was an eighth of the server's CPU. Here the steps are split where they yield:

    loop ──submit──> worker thread: the steps up to their first write (the token, the facts
                     read, Cedar, the decision, the write built)
                     └─ hands the write to the store's writer thread, and is free
    writer thread:   commits the batch (group commit), then wakes the loop once for the batch
    loop:            sends each write's audit record (or its error) into its steps: the verdict

The steps run in one :class:`contextvars.Context` of their own wherever they run (the task
awaiting them is created in it), so the observer's span and log context (opened on one thread,
closed on the other) stay one context. The worker enters it only while the task awaits, and
leaves it before handing the write over: it is never entered twice at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from tether.core.audit import AuditRecord
from tether.core.verdict import Verdict
from tether.service.ports import DecisionWrite, HandedDecisionLog

#: A decision's steps: yields each write, is sent its audit record, returns the verdict.
Steps = Generator[DecisionWrite, AuditRecord, Verdict]

#: How many decisions read their facts at once: a thread is held only for the read and the
#: decision (the write is handed over), so a few keep a replica's reads in flight, and fewer
#: threads contend for the interpreter.
DECISION_THREADS: Final = 4


class DecisionThreads:
    """The worker threads decisions are read and decided on, started on first use."""

    def __init__(self, size: int = DECISION_THREADS) -> None:
        self._size = size
        self._pool: ThreadPoolExecutor | None = None

    async def decide(
        self, steps: Steps, store: HandedDecisionLog, context: contextvars.Context
    ) -> Verdict:
        """Run ``steps`` to their verdict: up to their first write on a worker thread, the rest
        here. To be awaited in a task running in ``context`` (which ``steps`` run in)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[AuditRecord] = loop.create_future()
        # Started once this task has left ``context`` (at its first await, below).
        loop.call_soon(self._workers().submit, _first_write, context, steps, store, loop, answer)
        try:
            while True:
                try:
                    written = await answer
                except _Answered as early:
                    return early.verdict
                except Exception as error:
                    write = steps.throw(error)
                else:
                    write = steps.send(written)
                answer = loop.create_future()
                try:
                    store.record_decision_handed(write, loop, answer)
                except Exception as error:
                    answer.set_exception(error)  # thrown into the steps, as any failed write
        except StopIteration as done:
            verdict: Verdict = done.value
            return verdict

    def _workers(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            pool = self._pool = ThreadPoolExecutor(
                max_workers=self._size, thread_name_prefix="tether-decide"
            )
        return pool


class _Answered(Exception):
    """The steps ended on their worker thread without a write handed over (an unrecorded
    verdict): carries their verdict to the loop."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.decision_id)
        self.verdict = verdict


def _first_write(
    context: contextvars.Context,
    steps: Steps,
    store: HandedDecisionLog,
    loop: asyncio.AbstractEventLoop,
    answer: asyncio.Future[AuditRecord],
) -> None:
    """On a worker thread: run ``steps`` (in ``context``) to their first write and hand it to
    the store, whose writer sets ``answer`` once its batch is done; or, when the steps end
    without one, set ``answer`` from here. ``context`` is left before the write is handed
    over: the loop may enter it as soon as ``answer`` is set."""
    outcome: BaseException
    try:
        write = context.run(next, steps)
        while True:
            try:
                store.record_decision_handed(write, loop, answer)
            except Exception as error:
                write = context.run(steps.throw, error)
            else:
                return
    except StopIteration as done:
        outcome = _Answered(done.value)
    except BaseException as error:  # a fault in the steps: raised to the caller, as authorize's
        outcome = error
    with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
        loop.call_soon_threadsafe(_set_exception, answer, outcome)


def _set_exception(answer: asyncio.Future[AuditRecord], error: BaseException) -> None:
    if not answer.done():
        answer.set_exception(error)
