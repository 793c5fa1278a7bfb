"""Approvals in SQL: layout, and the statements the store runs on them.

An approval is kept whole as a JSON document, with the fields lookups need as columns. Votes and
use rewrite it inside the store's write transaction, under the chain-head lock, so two approvers
or two retries never interleave.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Integer, bindparam, insert, select, update

from tether.core.approval import Approval, ApprovalState, Vote
from tether.core.ids import ApprovalId, DecisionId, GrantId, TaskId
from tether.core.scope import ActionKind, JSONValue
from tether.store.schema import UtcMicros, approvals

INSERT = insert(approvals)
SELECT = select(approvals.c.doc).where(approvals.c.approval_id == bindparam("b_id"))
#: The approval read by a write that changes it from what it read (a vote, a use): its row stays
#: locked until the commit, so a change on another replica (another audit partition, another
#: head) waits for it and then reads what it wrote.
LOCK = SELECT.with_for_update()
PENDING_FOR_CALL = (
    select(approvals.c.doc)
    .where(
        approvals.c.agent == bindparam("b_agent"),
        approvals.c.task_id == bindparam("b_task"),
        approvals.c.tool == bindparam("b_tool"),
        approvals.c.action == bindparam("b_action"),
        approvals.c.args_mac == bindparam("b_mac"),
        approvals.c.state == ApprovalState.PENDING.value,
        approvals.c.expires_at > bindparam("b_now", type_=UtcMicros()),
    )
    .order_by(approvals.c.created_at.desc())
    .limit(5)
)
LIST = (
    select(approvals.c.doc)
    .order_by(approvals.c.created_at.desc())
    .limit(bindparam("b_limit", type_=Integer()))
)
REPLACE = (
    update(approvals)
    .where(approvals.c.approval_id == bindparam("b_id"), approvals.c.state == bindparam("b_old"))
    .values(state=bindparam("b_state"), doc=bindparam("b_doc"))
)


def params(approval: Approval) -> dict[str, object]:
    return {
        "approval_id": approval.approval_id,
        "task_id": approval.task_id,
        "agent": approval.agent,
        "tool": approval.tool,
        "action": approval.action.value,
        "dataset": approval.dataset,
        "args_mac": approval.args_mac,
        "state": approval.state.value,
        "created_at": approval.created_at,
        "expires_at": approval.expires_at,
        "doc": to_doc(approval),
    }


def to_doc(approval: Approval) -> dict[str, JSONValue]:
    return {
        "approval_id": approval.approval_id,
        "decision_id": approval.decision_id,
        "task_id": approval.task_id,
        "grant_id": approval.grant_id,
        "agent": approval.agent,
        "tool": approval.tool,
        "action": approval.action.value,
        "dataset": approval.dataset,
        "args": approval.args,
        "args_mac": approval.args_mac,
        "policy_ids": list(approval.policy_ids),
        "why": approval.why,
        "required": approval.required,
        "summary": list(approval.summary),
        "created_at": approval.created_at.isoformat(),
        "expires_at": approval.expires_at.isoformat(),
        "state": approval.state.value,
        "votes": [v.to_json() for v in approval.votes],
        "used_by": approval.used_by,
    }


def from_doc(doc: Any) -> Approval:
    if not isinstance(doc, dict):
        raise ValueError("a stored approval is not an object")
    return Approval(
        approval_id=ApprovalId(str(doc["approval_id"])),
        decision_id=DecisionId(str(doc["decision_id"])),
        task_id=TaskId(str(doc["task_id"])),
        grant_id=GrantId(str(doc["grant_id"])),
        agent=str(doc["agent"]),
        tool=str(doc["tool"]),
        action=ActionKind(doc["action"]),
        dataset=None if doc["dataset"] is None else str(doc["dataset"]),
        args=dict(doc["args"]),
        args_mac=str(doc["args_mac"]),
        policy_ids=tuple(str(p) for p in doc["policy_ids"]),
        why=str(doc["why"]),
        required=int(doc["required"]),
        summary=tuple(str(line) for line in doc["summary"]),
        created_at=datetime.fromisoformat(doc["created_at"]),
        expires_at=datetime.fromisoformat(doc["expires_at"]),
        state=ApprovalState(doc["state"]),
        votes=tuple(
            Vote(
                approver=str(v["approver"]),
                approve=bool(v["approve"]),
                reason=str(v["reason"]),
                at=datetime.fromisoformat(v["at"]),
            )
            for v in doc["votes"]
        ),
        used_by=None if doc["used_by"] is None else DecisionId(str(doc["used_by"])),
    )


_OPEN_FOR_TASKS = select(approvals.c.doc).where(
    approvals.c.task_id.in_(bindparam("b_tasks", expanding=True)),
    approvals.c.state.in_([ApprovalState.PENDING.value, ApprovalState.APPROVED.value]),
)


def end_for_tasks(conn: Connection, task_ids: Sequence[str]) -> list[str]:
    """Expire every approval of ``task_ids`` that could still be voted on or used (their task
    ended): a human can no longer approve it, nor an agent use it. Their ids."""
    ended: list[str] = []
    for row in conn.execute(_OPEN_FOR_TASKS, {"b_tasks": list(task_ids)}).all():
        approval = from_doc(row.doc)
        after = replace(approval, state=ApprovalState.EXPIRED)
        conn.execute(
            REPLACE,
            {
                "b_id": approval.approval_id,
                "b_old": approval.state.value,
                "b_state": after.state.value,
                "b_doc": to_doc(after),
            },
        )
        ended.append(approval.approval_id)
    return ended
