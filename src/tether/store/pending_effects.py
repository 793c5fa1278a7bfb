"""Which tasks have an effect (or an observation) written after the answer and not yet committed.

An enforcement point that answers before its effect is written (the MCP gateway) queues the
effect into the decisions' group commit (:mod:`tether.store.decision_log`). Until that commit,
the facts a decision on the task reads (budget usage, the anomaly signal's history, the audit
chain) would miss it. So every decision first waits here for the effects queued on its task and
the tasks it was delegated from (:meth:`PendingEffects.wait`), on whatever door and thread it
came by.

The observation of what a result showed the agent (argument provenance) is queued the same way,
under every task of the chain it is recorded for. A write whose batch did not commit is
remembered as failed, under its tasks, until the same write is made (the gateway's queue retries
it) or refused for good (already reported, unknown decision): meanwhile every decision on those
tasks is refused with the error that kept the write out (``Unavailable``, with its code), as the
gateway refuses the task's next call while its effects fail. The failure itself is logged by
whoever queued the write.

Threads wait on one condition variable; the event loop never waits here in the gateway, which
awaits each effect's commit before it decides the task's next call.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from tether.core.errors import ErrorCode, Unavailable


class PendingEffects:
    def __init__(self, *, wait_seconds: float, code: ErrorCode = ErrorCode.STORE_UNAVAILABLE):
        self._wait = wait_seconds
        self._code = code
        self._changed = threading.Condition()
        #: Per task: how many writes queued on it are not yet committed or failed.
        self._queued: dict[str, int] = {}
        #: Per task: the writes (by key) whose batch failed, with the error it failed with.
        self._failed: dict[str, dict[str, Unavailable]] = {}

    def add(self, task_ids: Sequence[str]) -> None:
        """A write the decisions on ``task_ids`` wait for was queued (before the writer has
        it)."""
        with self._changed:
            for task_id in task_ids:
                self._queued[task_id] = self._queued.get(task_id, 0) + 1

    def done(self, task_ids: Sequence[str], key: str, failed: Unavailable | None) -> None:
        """The queued write known as ``key`` was committed or refused for good (``failed``
        ``None``), or its batch did not commit (``failed``: the error)."""
        with self._changed:
            for task_id in task_ids:
                left = self._queued.get(task_id, 0) - 1
                if left > 0:
                    self._queued[task_id] = left
                else:
                    self._queued.pop(task_id, None)
                self._settle(task_id, key, failed)
            self._changed.notify_all()

    def written(self, task_ids: Sequence[str], key: str) -> None:
        """The write known as ``key`` was made outside the queue (or refused for good): a
        failure remembered for it is over."""
        if not self._failed:
            return
        with self._changed:
            for task_id in task_ids:
                self._settle(task_id, key, None)

    def _settle(self, task_id: str, key: str, failed: Unavailable | None) -> None:
        if failed is not None:
            self._failed.setdefault(task_id, {})[key] = failed
            return
        marks = self._failed.get(task_id)
        if marks is not None:
            marks.pop(key, None)
            if not marks:
                del self._failed[task_id]

    def wait(self, task_ids: Sequence[str]) -> None:
        """Return once no write queued on any of ``task_ids`` waits for its commit; raise
        ``Unavailable`` if one of theirs failed to commit (and was not written since), or if
        the wait outlasts the store's bound."""
        if not self._queued and not self._failed:
            return  # the common case: nothing outstanding anywhere
        with self._changed:
            # INVARIANT: a decision reads a task's facts only after the writes queued on the
            # task are committed (or it is refused).
            if not self._changed.wait_for(
                lambda: not any(t in self._queued for t in task_ids), timeout=self._wait
            ):
                raise Unavailable(
                    "what an earlier call on this task did is still waiting to be written, so "
                    "this call is not decided; retry once the store accepts writes",
                    code=self._code,
                )
            for task_id in task_ids:
                marks = self._failed.get(task_id)
                if marks:
                    error = next(iter(marks.values()))
                    raise Unavailable(
                        "what an earlier call on this task did could not be written, so this "
                        f"call is not decided until it is: {error.message}",
                        code=error.code,
                    )
