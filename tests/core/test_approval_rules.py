"""Pure approval rules: who may vote, when, and what a vote does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tether.core.approval import Approval, ApprovalState, cast_vote, check_use
from tether.core.errors import Conflict, Forbidden
from tether.core.ids import ApprovalId, DecisionId, GrantId, TaskId
from tether.core.scope import ActionKind

NOW = datetime(2026, 1, 1, tzinfo=UTC)
AGENT = "spiffe://td/agent/a"


def pending(required: int = 1) -> Approval:
    return Approval(
        approval_id=ApprovalId("apr_1"),
        decision_id=DecisionId("dec_1"),
        task_id=TaskId("tsk_1"),
        grant_id=GrantId("grt_1"),
        agent=AGENT,
        tool="payments.transfer",
        action=ActionKind.SPEND,
        dataset=None,
        args={"amount": 500},
        args_mac="mac-1",
        policy_ids=("p",),
        why="why",
        required=required,
        summary=("s",),
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=15),
        state=ApprovalState.PENDING,
    )


def test_the_agent_itself_and_any_workload_cannot_vote() -> None:
    with pytest.raises(Forbidden):
        cast_vote(pending(), AGENT, True, "", NOW)
    with pytest.raises(Forbidden):
        cast_vote(pending(), "spiffe://td/agent/other", True, "", NOW)


def test_n_distinct_approvers_and_any_deny_ends_it() -> None:
    one = cast_vote(pending(2), "approver:a", True, "", NOW)
    assert one.state is ApprovalState.PENDING
    with pytest.raises(Conflict):
        cast_vote(one, "approver:a", True, "", NOW)
    assert cast_vote(one, "approver:b", True, "", NOW).state is ApprovalState.APPROVED
    assert cast_vote(one, "approver:b", False, "", NOW).state is ApprovalState.DENIED


def test_expired_approvals_take_no_votes_and_allow_nothing() -> None:
    late = NOW + timedelta(minutes=15)
    with pytest.raises(Conflict):
        cast_vote(pending(), "approver:a", True, "", late)
    approved = cast_vote(pending(), "approver:a", True, "", NOW)
    kw = dict(
        agent=AGENT,
        task_id="tsk_1",
        tool="payments.transfer",
        action=ActionKind.SPEND,
        dataset=None,
        args_mac="mac-1",
    )
    assert check_use(approved, now=NOW, **kw) is None  # type: ignore[arg-type]
    expired = check_use(approved, now=late, **kw)  # type: ignore[arg-type]
    assert expired is not None and expired.code.value == "approval_expired"
    other = check_use(approved, now=NOW, **{**kw, "args_mac": "mac-2"})  # type: ignore[arg-type]
    assert other is not None and other.code.value == "approval_mismatch"
    wrong_dataset = check_use(approved, now=NOW, **{**kw, "dataset": "crm"})  # type: ignore[arg-type]
    assert wrong_dataset is not None and wrong_dataset.code.value == "approval_mismatch"
