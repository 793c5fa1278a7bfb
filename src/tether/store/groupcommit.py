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
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from tether.core.errors import ErrorCode, Unavailable

W = TypeVar("W")
R = TypeVar("R")


@dataclass(eq=False)
class Pending(Generic[W, R]):
    """One queued write and, once its batch is done, its result or the error it raised."""

    work: W
    result: R | None = None
    error: BaseException | None = None
    done: bool = False
    _event: threading.Event = field(default_factory=threading.Event, repr=False)

    def finish(self, result: R | None = None, error: BaseException | None = None) -> None:
        self.result, self.error, self.done = result, error, True
        self._event.set()


#: Runs one batch in one transaction: sets each pending write's result or error (a write it
#: refused), and raises if the transaction itself failed (then every write in it failed).
BatchRunner = Callable[[Sequence[Pending[W, R]]], None]


class GroupCommit(Generic[W, R]):
    def __init__(
        self,
        run: BatchRunner[W, R],
        *,
        max_batch: int = 64,
        wait_seconds: float,
        code: ErrorCode = ErrorCode.AUDIT_UNAVAILABLE,
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._wait = wait_seconds
        self._code = code
        self._leader = threading.Lock()
        self._queued: list[Pending[W, R]] = []
        self._queue_lock = threading.Lock()

    def submit(self, work: W) -> R:
        """Queue ``work``, see it committed (leading a batch if nobody else does), and return
        its result; raise what it raised, or ``Unavailable`` when its batch did not commit."""
        pending: Pending[W, R] = Pending(work)
        with self._queue_lock:
            self._queued.append(pending)
        while not pending.done:
            if not self._leader.acquire(timeout=self._wait):
                self._abandon(pending)
                break
            try:
                if not pending.done:
                    self._lead()
            finally:
                self._leader.release()
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    def _lead(self) -> None:
        with self._queue_lock:
            batch = self._queued[: self._max_batch]
            del self._queued[: self._max_batch]
        try:
            self._run(batch)
        except BaseException as error:
            # INVARIANT: a batch whose commit failed answers every write in it with the failure.
            for pending in batch:
                pending.finish(error=error)
            if not isinstance(error, Exception):
                raise
        finally:
            for pending in batch:
                if not pending.done:
                    pending.finish(error=Unavailable("the write was not run", code=self._code))

    def _abandon(self, pending: Pending[W, R]) -> None:
        """Give up on a write nobody could lead within the wait; it is never run later."""
        with self._queue_lock:
            if pending in self._queued:
                self._queued.remove(pending)
                pending.finish(
                    error=Unavailable(
                        "could not record the decision: another write held the database longer "
                        "than the busy timeout; nothing was written",
                        code=self._code,
                    )
                )
                return
        # Already taken by a leader: its batch finishes it; wait for that.
        pending._event.wait()
