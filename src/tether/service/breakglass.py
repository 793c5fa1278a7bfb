"""Break-glass: emergency scopes beyond policy, for a bounded time, after N humans say yes.

Requested by the task's agent or by an approver; approved by N distinct approvers other than the
requester (default 2); active for a bounded window (default 15 minutes, capped); audited as its
own class (``breakglass_*`` records, and every decision it allows is a ``breakglass_decision``);
bound to the task and its agent, so it is never passed to a delegated agent; and once used, it
stays on the open-reviews list until a human writes the post-incident review.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from tether.core.audit import AuditKind
from tether.core.breakglass import (
    BreakGlass,
    BreakGlassId,
    BreakGlassState,
    vote_breakglass,
    write_review,
)
from tether.core.errors import Conflict, ErrorCode, InvalidRequest, NotFound
from tether.core.ids import IdFactory, TaskId
from tether.core.scope import Scope
from tether.core.task import TaskState
from tether.service.ports import AuditEntry, Clock, TaskStore
from tether.service.recording import Recorder


class BreakGlassStore(Protocol):
    def create(self, bg: BreakGlass, audit: AuditEntry) -> None: ...

    def get(self, breakglass_id: str) -> BreakGlass | None: ...

    def for_task(self, task_id: str) -> Sequence[BreakGlass]: ...

    def list(self, limit: int = 100) -> Sequence[BreakGlass]: ...

    def update(
        self,
        breakglass_id: str,
        apply: Callable[[BreakGlass], BreakGlass],
        audit: Callable[[BreakGlass], AuditEntry],
    ) -> BreakGlass: ...


@dataclass(frozen=True, slots=True)
class BreakGlassSettings:
    window_seconds: int = 900
    max_window_seconds: int = 3600
    decide_within_seconds: int = 900
    required_approvers: int = 2


class BreakGlassService:
    def __init__(
        self,
        *,
        store: TaskStore,
        requests: BreakGlassStore,
        clock: Clock,
        ids: IdFactory,
        recorder: Recorder,
        settings: BreakGlassSettings,
    ) -> None:
        self._store = store
        self._requests = requests
        self._clock = clock
        self._ids = ids
        self._rec = recorder
        self._settings = settings

    def request(
        self,
        requested_by: str,
        task_id: TaskId,
        scopes: Sequence[Scope],
        reason: str,
        window_seconds: int | None = None,
        *,
        as_agent: str | None = None,
    ) -> BreakGlass:
        """Ask for emergency ``scopes`` on ``task_id``. ``as_agent`` is set when the task's own
        agent asks (it must own the task)."""
        task = self._store.get_task(task_id)
        if task is None or (as_agent is not None and not hmac.compare_digest(task.agent, as_agent)):
            raise NotFound(f"no task {task_id!r}", code=ErrorCode.TASK_NOT_FOUND)
        now = self._clock.now()
        if task.state is not TaskState.OPEN or now >= task.expires_at:
            raise InvalidRequest(
                "break-glass applies to an open task; open a task first",
                code=ErrorCode.INVALID_FIELD,
            )
        if not reason.strip() or len(reason) > 2000:
            raise InvalidRequest(
                "give a reason of 1 to 2000 characters", code=ErrorCode.INVALID_FIELD
            )
        if not scopes or len(scopes) > 16 or len({s.tool for s in scopes}) != len(scopes):
            raise InvalidRequest("name 1 to 16 scopes, one per tool", code=ErrorCode.INVALID_SCOPE)
        window = window_seconds if window_seconds is not None else self._settings.window_seconds
        if not 60 <= window <= self._settings.max_window_seconds:
            raise InvalidRequest(
                f"window_seconds must be between 60 and {self._settings.max_window_seconds}",
                code=ErrorCode.INVALID_FIELD,
            )
        bg = BreakGlass(
            breakglass_id=BreakGlassId(self._ids.breakglass()),
            task_id=task.task_id,
            agent=task.agent,
            scopes=tuple(scopes),
            reason=reason,
            requested_by=requested_by,
            requested_at=now,
            decide_by=now + timedelta(seconds=self._settings.decide_within_seconds),
            window_seconds=window,
            required=self._settings.required_approvers,
            state=BreakGlassState.PENDING,
        )
        self._requests.create(
            bg,
            self._rec.entry(
                AuditKind.BREAKGLASS_REQUESTED,
                now,
                agent=task.agent,
                task_id=task.task_id,
                body={
                    "breakglass_id": bg.breakglass_id,
                    "requested_by": requested_by,
                    "scopes": [s.to_json() for s in scopes],
                    "reason": reason,
                    "window_seconds": window,
                    "required": bg.required,
                },
            ),
        )
        return bg

    def get(self, breakglass_id: str) -> BreakGlass:
        found = self._requests.get(breakglass_id)
        if found is None:
            raise NotFound(
                f"no break-glass request {breakglass_id}", code=ErrorCode.BREAKGLASS_NOT_FOUND
            )
        return found

    def list(self, limit: int = 100) -> Sequence[BreakGlass]:
        return self._requests.list(limit)

    def vote(self, approver: str, breakglass_id: str, approve: bool, reason: str) -> BreakGlass:
        now = self._clock.now()
        request = self._requests.get(breakglass_id)
        if request is not None:
            task = self._store.get_task(TaskId(request.task_id))
            if task is None or not task.is_open_at(now):
                raise Conflict(
                    "the task this break-glass was asked for has ended, and the request with "
                    "it; nothing to approve",
                    code=ErrorCode.TASK_NOT_OPEN,
                )

        def audit(after: BreakGlass) -> AuditEntry:
            return self._rec.entry(
                AuditKind.BREAKGLASS_VOTED,
                now,
                agent=after.agent,
                task_id=after.task_id,
                body={
                    "breakglass_id": after.breakglass_id,
                    "approver": approver,
                    "approve": approve,
                    "reason": reason[:1000],
                    "state": after.state.value,
                    "active_until": after.active_until.isoformat() if after.active_until else None,
                },
            )

        return self._requests.update(
            breakglass_id,
            lambda bg: vote_breakglass(bg, approver, approve, reason[:1000], now),
            audit,
        )

    def review(self, reviewer: str, breakglass_id: str, note: str) -> BreakGlass:
        now = self._clock.now()

        def audit(after: BreakGlass) -> AuditEntry:
            return self._rec.entry(
                AuditKind.BREAKGLASS_REVIEWED,
                now,
                agent=after.agent,
                task_id=after.task_id,
                body={"breakglass_id": after.breakglass_id, "reviewer": reviewer, "note": note},
            )

        return self._requests.update(
            breakglass_id, lambda bg: write_review(bg, reviewer, note, now), audit
        )

    def active_for(self, task_id: str, agent: str) -> BreakGlass | None:
        """The active break-glass of this task for its own agent, if any (never inherited)."""
        now = self._clock.now()
        for bg in self._requests.for_task(task_id):
            if bg.is_active_at(now) and hmac.compare_digest(bg.agent, agent):
                return bg
        return None
