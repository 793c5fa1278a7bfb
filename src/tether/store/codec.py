"""Rows to domain values and back: the only place that knows how a value is laid out in SQL.

Scopes go through :meth:`Scope.to_json` / :meth:`Scope.from_json`, so a scope read back is checked
by the same rules as one that came in over the API. Audit bodies are stored as the canonical JSON
the chain hashed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tether.core.audit import AuditKind, AuditRecord, ChainFormat, canonical_json
from tether.core.budget import Budgets
from tether.core.effect import Effect, EffectStatus
from tether.core.ids import DecisionId, EffectId, GrantId, TaskId
from tether.core.scope import ActionKind, JSONValue, Scope
from tether.core.task import Grant, GrantState, Intent, Task, TaskState
from tether.core.verdict import Decision
from tether.service.ports import DecisionRecord

Row = Mapping[Any, Any]
"""A result row's mapping (``Row._mapping``) or the parameters of an insert."""


def _scopes_json(scopes: tuple[Scope, ...]) -> list[JSONValue]:
    return [s.to_json() for s in scopes]


def _scopes(raw: object) -> tuple[Scope, ...]:
    if not isinstance(raw, list):
        raise ValueError("stored scopes are not a list")
    return tuple(Scope.from_json(s) for s in raw)


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


# -- tasks and grants ----------------------------------------------------------------------------


def task_params(task: Task) -> dict[str, object]:
    return {
        "task_id": task.task_id,
        "agent": task.agent,
        "intent": task.intent.to_json(),
        "requested": _scopes_json(task.requested),
        "granted": _scopes_json(task.granted),
        "state": task.state.value,
        "opened_at": task.opened_at,
        "expires_at": task.expires_at,
        "ended_at": task.ended_at,
        "parent_task_id": task.parent_task_id,
        "budgets": task.budgets.to_json(),
        "label": task.label,
        "workflow_step": task.workflow_step,
        "observed": task.observed,
        "provenance_secret": (
            None if task.provenance_secret is None else task.provenance_secret.hex()
        ),
    }


def task_from_row(row: Row) -> Task:
    intent = row["intent"]
    if not isinstance(intent, dict):
        raise ValueError("stored intent is not an object")
    return Task(
        task_id=TaskId(row["task_id"]),
        agent=str(row["agent"]),
        intent=Intent(
            workflow=str(intent["workflow"]),
            purpose=str(intent["purpose"]),
            on_behalf_of=str(intent["on_behalf_of"]),
        ),
        requested=_scopes(row["requested"]),
        granted=_scopes(row["granted"]),
        state=TaskState(row["state"]),
        opened_at=row["opened_at"],
        expires_at=row["expires_at"],
        ended_at=row["ended_at"],
        parent_task_id=None if row["parent_task_id"] is None else TaskId(row["parent_task_id"]),
        budgets=Budgets.from_json(row["budgets"]),
        label=str(row["label"]),
        workflow_step=None if row["workflow_step"] is None else str(row["workflow_step"]),
        observed=int(row["observed"]),
        provenance_secret=(
            None if row["provenance_secret"] is None else bytes.fromhex(row["provenance_secret"])
        ),
    )


def grant_params(grant: Grant) -> dict[str, object]:
    return {
        "grant_id": grant.grant_id,
        "task_id": grant.task_id,
        "agent": grant.agent,
        "scopes": _scopes_json(grant.scopes),
        "issued_at": grant.issued_at,
        "expires_at": grant.expires_at,
        "state": grant.state.value,
        "policy_revision": grant.policy_revision,
        "delegators": list(grant.delegators),
        "parent_grant_id": grant.parent_grant_id,
    }


def grant_from_row(row: Row) -> Grant:
    return Grant(
        grant_id=GrantId(row["grant_id"]),
        task_id=TaskId(row["task_id"]),
        agent=str(row["agent"]),
        scopes=_scopes(row["scopes"]),
        issued_at=row["issued_at"],
        expires_at=row["expires_at"],
        state=GrantState(row["state"]),
        policy_revision=str(row["policy_revision"]),
        delegators=tuple(str(d) for d in row["delegators"]),
        parent_grant_id=(
            None if row["parent_grant_id"] is None else GrantId(row["parent_grant_id"])
        ),
    )


# -- decisions and effects -----------------------------------------------------------------------


def decision_params(decision: DecisionRecord) -> dict[str, object]:
    return {
        "decision_id": decision.decision_id,
        "task_id": decision.task_id,
        "grant_id": decision.grant_id,
        "agent": decision.agent,
        "tool": decision.tool,
        "action": decision.action.value,
        "dataset": decision.dataset,
        "decision": decision.decision.value,
        "decided_at": decision.decided_at,
    }


def decision_from_row(row: Row) -> DecisionRecord:
    task_id, grant_id = row["task_id"], row["grant_id"]
    return DecisionRecord(
        decision_id=DecisionId(row["decision_id"]),
        task_id=None if task_id is None else TaskId(task_id),
        grant_id=None if grant_id is None else GrantId(grant_id),
        agent=str(row["agent"]),
        tool=str(row["tool"]),
        action=ActionKind(row["action"]),
        dataset=_opt_str(row["dataset"]),
        decision=Decision(row["decision"]),
        decided_at=row["decided_at"],
    )


def effect_params(effect: Effect) -> dict[str, object]:
    return {
        "effect_id": effect.effect_id,
        "decision_id": effect.decision_id,
        "status": effect.status.value,
        "records": effect.records,
        "bytes": effect.bytes,
        "recipients": list(effect.recipients),
        "reported_at": effect.reported_at,
    }


def effect_from_row(row: Row) -> Effect:
    recipients = row["recipients"]
    if not isinstance(recipients, list):
        raise ValueError("stored recipients are not a list")
    return Effect(
        effect_id=EffectId(row["effect_id"]),
        decision_id=DecisionId(row["decision_id"]),
        status=EffectStatus(row["status"]),
        records=_opt_int(row["records"]),
        bytes=_opt_int(row["bytes"]),
        recipients=tuple(str(r) for r in recipients),
        reported_at=row["reported_at"],
    )


# -- audit ---------------------------------------------------------------------------------------


def audit_at(at: datetime) -> str:
    """The text an entry's time is sealed as: ISO-8601 in UTC."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("an audit entry's time must be timezone-aware")
    return at.astimezone(UTC).isoformat()


def audit_params(record: AuditRecord, body_text: str | None = None) -> dict[str, object]:
    """``record``'s row; ``body_text``: its body's format-1 text, when sealing already made it
    (:attr:`tether.core.audit.Sealed.body_text`)."""
    return {
        "seq": record.seq,
        "record_id": record.record_id,
        "at": record.at,
        "kind": record.kind.value,
        "agent": record.agent,
        "task_id": record.task_id,
        # The body exactly as sealed (Python's JSON reads it back value for value). In a chain
        # of format 1 these are the bytes the hash covered; in format 2 the hash covers their
        # RFC 8785 form, which is the same whether taken of the value or of this text.
        "body": canonical_json(record.body).decode("utf-8") if body_text is None else body_text,
        "prev_hash": record.prev_hash,
        "hash": record.hash,
        "partition_id": record.partition,
    }


def audit_from_row(row: Row, format: ChainFormat) -> AuditRecord:
    """A record of a chain of ``format``; raises ``ValueError`` when the row cannot be a record
    (bad JSON, unknown kind)."""
    body = json.loads(row["body"])
    if not isinstance(body, dict):
        raise ValueError("body is not a JSON object")
    return AuditRecord(
        seq=int(row["seq"]),
        record_id=str(row["record_id"]),
        at=str(row["at"]),
        kind=AuditKind(row["kind"]),
        agent=_opt_str(row["agent"]),
        task_id=_opt_str(row["task_id"]),
        body=body,
        prev_hash=str(row["prev_hash"]),
        hash=str(row["hash"]),
        format=format,
        partition=str(row["partition_id"]),
    )
