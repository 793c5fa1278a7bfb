"""Human approvals, bound to the exact call (OWASP ASI09).

An approval names the agent, task, tool, action, dataset and a keyed digest of the arguments. It
is single-use, expires (expiry means deny), records who approved, and may need N distinct
approvers. Any approver's deny ends it. Its summary is written by tether from facts, never by a
model, so a fluent agent cannot talk an approver into anything.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from tether.core.errors import Conflict, ErrorCode, Forbidden
from tether.core.ids import ApprovalId, DecisionId, GrantId, TaskId
from tether.core.scope import ActionKind, JSONValue
from tether.core.verdict import Reason, ReasonCode


class ApprovalState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    USED = "used"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Vote:
    approver: str
    approve: bool
    reason: str
    at: datetime

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "approver": self.approver,
            "approve": self.approve,
            "reason": self.reason,
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Approval:
    approval_id: ApprovalId
    decision_id: DecisionId
    task_id: TaskId
    grant_id: GrantId
    agent: str
    tool: str
    action: ActionKind
    dataset: str | None
    args: dict[str, JSONValue]
    args_mac: str
    policy_ids: tuple[str, ...]
    why: str
    required: int
    summary: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    state: ApprovalState
    votes: tuple[Vote, ...] = ()
    used_by: DecisionId | None = None

    def state_at(self, now: datetime) -> ApprovalState:
        """The state as of ``now``: a pending or approved approval past its expiry is expired."""
        if self.state in (ApprovalState.PENDING, ApprovalState.APPROVED) and now >= self.expires_at:
            return ApprovalState.EXPIRED
        return self.state

    @property
    def approvals(self) -> int:
        return sum(1 for v in self.votes if v.approve)

    def to_json(self, now: datetime) -> dict[str, JSONValue]:
        return {
            "approval_id": self.approval_id,
            "decision_id": self.decision_id,
            "task_id": self.task_id,
            "agent": self.agent,
            "tool": self.tool,
            "action": self.action.value,
            "dataset": self.dataset,
            "args": self.args,
            "policy_ids": list(self.policy_ids),
            "why": self.why,
            "required": self.required,
            "approvals": self.approvals,
            "summary": list(self.summary),
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "state": self.state_at(now).value,
            "votes": [v.to_json() for v in self.votes],
            "used_by": self.used_by,
        }


def cast_vote(
    approval: Approval, approver: str, approve: bool, reason: str, now: datetime
) -> Approval:
    """Record one approver's decision; raises when the vote is not allowed."""
    if not approver or approver.startswith("spiffe://"):
        raise Forbidden("workloads cannot approve", code=ErrorCode.NOT_AN_APPROVER)
    if hmac.compare_digest(approver, approval.agent):
        # INVARIANT: an agent never approves its own request.
        raise Forbidden("an agent cannot approve its own request", code=ErrorCode.NOT_AN_APPROVER)
    state = approval.state_at(now)
    if state is not ApprovalState.PENDING:
        raise Conflict(f"the approval is {state.value}", code=ErrorCode.APPROVAL_NOT_PENDING)
    if any(v.approver == approver for v in approval.votes):
        raise Conflict("this approver has already decided", code=ErrorCode.APPROVAL_NOT_PENDING)
    votes = (*approval.votes, Vote(approver, approve, reason, now))
    updated = replace(approval, votes=votes)
    if not approve:
        return replace(updated, state=ApprovalState.DENIED)
    if updated.approvals >= approval.required:
        return replace(updated, state=ApprovalState.APPROVED)
    return updated


def check_use(
    approval: Approval,
    *,
    agent: str,
    task_id: str,
    tool: str,
    action: ActionKind,
    dataset: str | None,
    args_mac: str,
    now: datetime,
) -> Reason | None:
    """Why ``approval`` cannot authorize this call, or ``None`` when it can (once)."""
    bound = (
        hmac.compare_digest(approval.agent, agent)
        and approval.task_id == task_id
        and approval.tool == tool
        and approval.action is action
        and approval.dataset == dataset
    )
    if not bound:
        return Reason(ReasonCode.APPROVAL_MISMATCH, "the approval was given for another call")
    if not hmac.compare_digest(approval.args_mac, args_mac):
        return Reason(
            ReasonCode.APPROVAL_MISMATCH, "the approval was given for different arguments"
        )
    state = approval.state_at(now)
    if state is ApprovalState.APPROVED:
        return None
    messages = {
        ApprovalState.PENDING: "the approval is still pending; wait for an approver",
        ApprovalState.DENIED: "an approver denied this call",
        ApprovalState.USED: "the approval was already used; each approval allows one call",
        ApprovalState.EXPIRED: "the approval expired; expiry means deny",
    }
    codes = {
        ApprovalState.PENDING: ReasonCode.APPROVAL_PENDING,
        ApprovalState.DENIED: ReasonCode.APPROVAL_DENIED,
        ApprovalState.USED: ReasonCode.APPROVAL_USED,
        ApprovalState.EXPIRED: ReasonCode.APPROVAL_EXPIRED,
    }
    return Reason(codes[state], messages[state])
