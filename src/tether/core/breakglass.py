"""Break-glass: explicit, time-boxed emergency elevation that is never inherited.

A break-glass request names a task and the extra scopes it needs, and why. It becomes active only
after N distinct human approvers (default 2) other than the requester say yes; one no ends it.
Once active it lasts a bounded window, then ends by itself. It is bound to the task and its
agent: a delegated agent never receives it. After it is used, a human must write a review note;
until then it stays on the open-reviews list.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NewType

from tether.core.approval import Vote
from tether.core.errors import Conflict, ErrorCode, Forbidden, InvalidRequest
from tether.core.scope import JSONValue, Scope

BreakGlassId = NewType("BreakGlassId", str)


class BreakGlassState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    DENIED = "denied"
    EXPIRED = "expired"  # never approved in time
    ENDED = "ended"  # its window ran out


@dataclass(frozen=True, slots=True)
class BreakGlass:
    breakglass_id: BreakGlassId
    task_id: str
    agent: str
    scopes: tuple[Scope, ...]
    reason: str
    requested_by: str
    requested_at: datetime
    decide_by: datetime
    window_seconds: int
    required: int
    state: BreakGlassState
    votes: tuple[Vote, ...] = ()
    active_from: datetime | None = None
    active_until: datetime | None = None
    review: str | None = None
    reviewed_by: str | None = None
    reviewed_at: datetime | None = None

    def state_at(self, now: datetime) -> BreakGlassState:
        if self.state is BreakGlassState.PENDING and now >= self.decide_by:
            return BreakGlassState.EXPIRED
        if (
            self.state is BreakGlassState.ACTIVE
            and self.active_until is not None
            and now >= self.active_until
        ):
            return BreakGlassState.ENDED
        return self.state

    def is_active_at(self, now: datetime) -> bool:
        return self.state_at(now) is BreakGlassState.ACTIVE

    @property
    def needs_review(self) -> bool:
        """Every break-glass that was ever active needs a review note."""
        return self.active_from is not None and self.review is None

    @property
    def approvals(self) -> int:
        return sum(1 for v in self.votes if v.approve)

    def scope_for(self, tool: str) -> Scope | None:
        for scope in self.scopes:
            if scope.tool == tool:
                return scope
        return None

    def to_json(self, now: datetime) -> dict[str, JSONValue]:
        return {
            "breakglass_id": self.breakglass_id,
            "task_id": self.task_id,
            "agent": self.agent,
            "scopes": [s.to_json() for s in self.scopes],
            "reason": self.reason,
            "requested_by": self.requested_by,
            "requested_at": self.requested_at.isoformat(),
            "decide_by": self.decide_by.isoformat(),
            "window_seconds": self.window_seconds,
            "required": self.required,
            "approvals": self.approvals,
            "state": self.state_at(now).value,
            "votes": [v.to_json() for v in self.votes],
            "active_from": self.active_from.isoformat() if self.active_from else None,
            "active_until": self.active_until.isoformat() if self.active_until else None,
            "needs_review": self.needs_review,
            "review": self.review,
            "reviewed_by": self.reviewed_by,
            "reviewed_at": self.reviewed_at.isoformat() if self.reviewed_at else None,
        }


def vote_breakglass(
    request: BreakGlass, approver: str, approve: bool, reason: str, now: datetime
) -> BreakGlass:
    """One human's decision; N distinct approvers other than the requester activate it."""
    if (
        not approver
        or approver.startswith("spiffe://")
        or hmac.compare_digest(approver, request.agent)
    ):
        raise Forbidden("workloads cannot approve break-glass", code=ErrorCode.NOT_AN_APPROVER)
    if hmac.compare_digest(approver, request.requested_by):
        # INVARIANT: break-glass needs people other than the one asking for it.
        raise Forbidden(
            "the requester cannot approve their own break-glass", code=ErrorCode.NOT_AN_APPROVER
        )
    state = request.state_at(now)
    if state is not BreakGlassState.PENDING:
        raise Conflict(
            f"the break-glass request is {state.value}", code=ErrorCode.APPROVAL_NOT_PENDING
        )
    if any(v.approver == approver for v in request.votes):
        raise Conflict("this approver has already decided", code=ErrorCode.APPROVAL_NOT_PENDING)
    updated = replace(request, votes=(*request.votes, Vote(approver, approve, reason, now)))
    if not approve:
        return replace(updated, state=BreakGlassState.DENIED)
    if updated.approvals >= request.required:
        return replace(
            updated,
            state=BreakGlassState.ACTIVE,
            active_from=now,
            active_until=now + timedelta(seconds=request.window_seconds),
        )
    return updated


def write_review(request: BreakGlass, reviewer: str, note: str, now: datetime) -> BreakGlass:
    """The post-incident review; allowed once the break-glass was active, written once."""
    if request.active_from is None:
        raise Conflict(
            "only a break-glass that was active needs a review", code=ErrorCode.APPROVAL_NOT_PENDING
        )
    if request.review is not None:
        raise Conflict("the review is already written", code=ErrorCode.APPROVAL_NOT_PENDING)
    if not note.strip() or len(note) > 10_000:
        raise InvalidRequest("the review note must be 1 to 10000 characters")
    if reviewer.startswith("spiffe://"):
        raise Forbidden("workloads cannot review break-glass", code=ErrorCode.NOT_AN_APPROVER)
    return replace(request, review=note, reviewed_by=reviewer, reviewed_at=now)
