"""Group commit: concurrent writes share one transaction and one commit.

A write is handed to :meth:`GroupCommit.submit`, which queues it and waits. Whichever waiting
thread gets the leader's lock first takes everything queued (up to ``max_batch``), runs it in one
transaction (each write in its own savepoint, so one write's refusal leaves the others in) and
commits once; the others find their write done and return its result. No caller returns before
the commit that holds its write succeeded, and if that commit fails every write in the batch
fails with it: nothing is answered that was not made durable.

This is the leader/follower scheme databases use for their own log flushes: no extra thread, no
added latency when there is no contention (a lone caller leads a batch of one), and under load
one commit (and on PostgreSQL one fsync) serves many decisions.

An event loop must not wait on a commit, so :meth:`GroupCommit.submit_async` queues the write
the same way and returns an awaitable. With a ``run_now`` runner (SQLite, whose transaction is
in-process work) the loop leads the batch itself, once the turns of the loop that queue writes
have passed (at most :data:`LEAD_WAIT_TURNS` more): everything queued while the loop ran those
turns' callbacks is written in one transaction, with no thread hand-off
(each hand-off cost a thread wake-up, a self-pipe write and GIL traffic per batch). ``run_now``
never waits for a lock: if the leader's lock or the database's write lock is taken, it raises
:class:`WouldWait` before writing anything, the batch goes back to the head of the queue, and
a writer thread of the group's own (started on first use) leads it, waiting as a thread may.
Without ``run_now`` every async write goes to that writer thread, under the same leader's lock;
so does a write a worker thread hands over for a loop to await
(:meth:`GroupCommit.submit_from_thread`: the thread that decided does not wait for the commit).
Once a batch is done, its results go back to the loop that awaits them together, with one
wake-up of that loop for the batch (not one per write; none when that loop led the batch, whose
awaiters it tells at once), and never before the batch is done: a write a runner finished early
(refused inside the transaction) is heard of with the rest.
Threads and the loop share the queue and the batches. A thread waits on the leader's lock
alone: no event per write.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from tether.core.errors import ErrorCode, Unavailable

W = TypeVar("W")
R = TypeVar("R")

_BUSY = (
    "could not record the decision: another write held the database longer than the busy "
    "timeout; nothing was written"
)


@dataclass(eq=False, slots=True)
class Pending(Generic[W, R]):
    """One queued write and, once its batch is done, its result or the error it raised."""

    work: W
    result: R | None = None
    error: BaseException | None = None
    done: bool = False
    #: The event loop and future awaiting the write (:meth:`GroupCommit.submit_async`); its
    #: outcome is handed over once the whole batch is done, with the batch's other writes.
    waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[R]] | None = field(
        default=None, repr=False
    )

    def finish(self, result: R | None = None, error: BaseException | None = None) -> None:
        self.result, self.error, self.done = result, error, True


#: Runs one batch in one transaction: sets each pending write's result or error (a write it
#: refused), and raises if the transaction itself failed (then every write in it failed).
BatchRunner = Callable[[Sequence[Pending[W, R]]], None]
#: Told of each batch once every write in it is finished, on the thread that finished it and
#: before any awaiting loop hears of it (see :meth:`GroupCommit.__init__`).
Finished = Callable[[Sequence[Pending[W, R]]], None]


#: How many turns of its event loop a batch the loop leads may wait for more of the loop's
#: writes to join it (:meth:`GroupCommit._lead_on_loop`).
LEAD_WAIT_TURNS = 2


class WouldWait(Exception):
    """A runner asked not to wait (``run_now``) found a lock taken; it wrote nothing."""


class GroupCommit(Generic[W, R]):
    def __init__(
        self,
        run: BatchRunner[W, R],
        *,
        max_batch: int = 64,
        wait_seconds: float,
        code: ErrorCode = ErrorCode.AUDIT_UNAVAILABLE,
        run_now: BatchRunner[W, R] | None = None,
        finished: Finished[W, R] | None = None,
    ) -> None:
        """``run_now``: ``run`` without waiting for any lock (raising :class:`WouldWait`, having
        written nothing), for batches an event loop leads itself. ``finished``: told of every
        finished write (committed, refused, or failed with its batch) before its waiter is,
        whichever thread finished it: what a waiter on another thread keys on the write
        (:mod:`tether.store.pending_effects`) is released there."""
        self._run = run
        self._run_now = run_now
        self._finished = finished
        # The loops that have a lead of the queue scheduled (one per loop: a loop closed before
        # its callback ran holds up no other loop's writes), each with the turns its lead has
        # waited and the writes it saw queued when it last looked (see _lead_on_loop).
        self._turns: dict[asyncio.AbstractEventLoop, tuple[int, int]] = {}
        self._max_batch = max_batch
        self._wait = wait_seconds
        self._code = code
        self._leader = threading.Lock()
        self._queued: list[Pending[W, R]] = []
        self._queue_lock = threading.Lock()
        # The writer thread of submit_async: woken when such a write is queued.
        self._wake = threading.Condition(self._queue_lock)
        self._writer: threading.Thread | None = None
        self._closed = False

    def submit(self, work: W) -> R:
        """Queue ``work``, see it committed (leading a batch if nobody else does), and return
        its result; raise what it raised, or ``Unavailable`` when its batch did not commit."""
        pending: Pending[W, R] = Pending(work)
        with self._queue_lock:
            self._queued.append(pending)
        while not pending.done:
            if not self._leader.acquire(timeout=self._wait):
                self._abandon(pending)
                continue
            try:
                if not pending.done:
                    self._lead()
            finally:
                self._leader.release()
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    def submit_async(self, work: W, *, waited_on: bool = False) -> Awaitable[R]:
        """Queue ``work`` and return what the running event loop awaits: its result once its
        batch committed, or the error :meth:`submit` would raise. The loop leads the batch
        (with ``run_now``) unless ``work`` is ``waited_on``: a write some code may block on,
        even on this loop's thread (:mod:`tether.store.pending_effects`), which the writer
        thread must then be free to make."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[R] = loop.create_future()
        pending: Pending[W, R] = Pending(work, waiter=(loop, waiter))
        with self._wake:
            if self._closed:
                raise Unavailable("the store is closed", code=self._code)
            self._queued.append(pending)
            if self._run_now is None or waited_on:
                self._wake_writer()
            elif loop not in self._turns:
                self._turns[loop] = (0, 0)
                loop.call_soon(self._lead_on_loop, loop)
        return waiter

    def submit_from_thread(
        self, work: W, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[R]
    ) -> None:
        """Queue ``work`` from any thread for the writer thread to lead; its outcome is set on
        ``waiter`` (a future of the running ``loop``) with the rest of its batch's, as for
        :meth:`submit_async`: the thread that queued it does not wait for the commit, and the
        loop is woken once per batch, not once per write. Raises ``Unavailable`` once closed."""
        pending: Pending[W, R] = Pending(work, waiter=(loop, waiter))
        with self._wake:
            if self._closed:
                raise Unavailable("the store is closed", code=self._code)
            self._queued.append(pending)
            self._wake_writer()

    def _wake_writer(self) -> None:
        """Start the writer thread if need be, and wake it (holding the queue's lock)."""
        if self._writer is None or not self._writer.is_alive():
            self._writer = threading.Thread(
                target=self._write_forever, name="tether-group-commit", daemon=True
            )
            self._writer.start()
        self._wake.notify()

    def _lead_on_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the event loop, after the callbacks of the turn that queued writes: lead one
        batch without waiting; if a lock is taken, leave it to the writer thread.

        The lead waits a turn while the turn before it queued more writes (requests read in
        the same poll of the sockets run their decisions in the next turn), at most
        :data:`LEAD_WAIT_TURNS` turns and never once the batch is full: one commit then serves
        every decision the loop had in hand, where leading after the first turn committed
        about half as many per batch, and a lone decision waits one idle turn."""
        assert self._run_now is not None
        with self._wake:
            waited, seen = self._turns.get(loop, (0, 0))
            queued = len(self._queued)
            if waited < LEAD_WAIT_TURNS and seen < queued < self._max_batch:
                self._turns[loop] = (waited + 1, queued)
                loop.call_soon(self._lead_on_loop, loop)
                return
            self._turns.pop(loop, None)
        if not self._leader.acquire(blocking=False):
            with self._wake:
                self._wake_writer()  # a thread leads now; the writer takes what it leaves
            return
        try:
            self._lead(self._run_now)
        finally:
            self._leader.release()
        with self._wake:
            if self._queued:  # more than one batch's worth, or queued meanwhile
                self._wake_writer()

    def close(self) -> None:
        """Stop the writer thread once what is queued is written; later async submits fail."""
        with self._wake:
            self._closed = True
            writer = self._writer
            self._wake.notify()
        if writer is not None and writer is not threading.current_thread():
            writer.join()

    def _write_forever(self) -> None:
        """The writer thread: lead a batch whenever writes are queued, until closed."""
        while True:
            with self._wake:
                while not self._queued and not self._closed:
                    self._wake.wait()
                if not self._queued:
                    return  # closed and drained
            if not self._leader.acquire(timeout=self._wait):
                self._abandon_all()
                continue
            try:
                self._lead()
            finally:
                self._leader.release()

    def _abandon_all(self) -> None:
        """The writer could not lead within the wait: every queued write fails, none runs later."""
        with self._queue_lock:
            stuck, self._queued = self._queued, []
            # Finished before the lock is let go: a write out of the queue and not finished
            # is one a leader holds (see _abandon).
            for pending in stuck:
                pending.finish(error=Unavailable(_BUSY, code=self._code))
        self._tell(stuck)
        _hand_back(stuck)

    def _lead(self, run: BatchRunner[W, R] | None = None) -> None:
        with self._queue_lock:
            batch = self._queued[: self._max_batch]
            del self._queued[: self._max_batch]
        if not batch:
            return  # another leader took them first
        requeued = False
        try:
            (run or self._run)(batch)
        except WouldWait:
            # Nothing was written and nothing finished: back to the head of the queue, in
            # order, for the writer thread to lead (it may wait).
            with self._wake:
                self._queued[:0] = batch
                self._wake_writer()
            requeued = True
        except BaseException as error:
            # INVARIANT: a batch whose commit failed answers every write in it with the failure.
            for pending in batch:
                pending.finish(error=error)
            if not isinstance(error, Exception):
                raise
        finally:
            if not requeued:
                for pending in batch:
                    if not pending.done:
                        pending.finish(error=Unavailable("the write was not run", code=self._code))
                self._tell(batch)
                # INVARIANT: an awaiting loop hears of a write only once its whole batch is
                # done (committed, or failed and answered as such), whatever the runner
                # finished first.
                _hand_back(batch)

    def _tell(self, finished: Sequence[Pending[W, R]]) -> None:
        if self._finished is not None and finished:
            self._finished(finished)

    def _abandon(self, pending: Pending[W, R]) -> None:
        """Give up on a write nobody could lead within the wait; it is never run later."""
        with self._queue_lock:
            gave_up = pending in self._queued
            if gave_up:
                self._queued.remove(pending)
                pending.finish(error=Unavailable(_BUSY, code=self._code))
        if gave_up:
            self._tell((pending,))
            return
        # Already taken by a leader, which holds the leader's lock until its batch (this write
        # among it) is finished: wait for that lock, without a bound, as for the write itself.
        with self._leader:
            pass


def _hand_back(batch: Sequence[Pending[W, R]]) -> None:
    """Hand each awaited write's outcome to its loop: one wake-up per loop for the batch, and
    none for the loop that led the batch itself (its awaiters are told at once, in its turn)."""
    settled: dict[asyncio.AbstractEventLoop, list[Pending[W, R]]] = {}
    for pending in batch:
        if pending.waiter is not None:
            settled.setdefault(pending.waiter[0], []).append(pending)
    if not settled:
        return
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None  # a thread's batch: every loop is woken
    for loop, pendings in settled.items():
        if loop is running:
            _settle(pendings)
            continue
        # A closed loop has nobody left to await the results.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, pendings)


def _settle(pendings: Sequence[Pending[W, R]]) -> None:
    """On the waiting loop: hand each write's outcome to its awaiter (unless it gave up)."""
    for pending in pendings:
        assert pending.waiter is not None
        waiter = pending.waiter[1]
        if waiter.done():
            continue
        if pending.error is not None:
            waiter.set_exception(pending.error)
        else:
            waiter.set_result(pending.result)  # type: ignore[arg-type]  # set when no error
