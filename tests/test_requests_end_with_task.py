"""Nothing asked for a task outlives it: its pending approvals and break-glass requests end in
the transaction that ends the task, and approving one afterwards fails with ``task_not_open``.

Regression tests of a hole an adversarial review found: a closed task's approval stayed pending
and could still be approved, and so could its break-glass request.
"""

from __future__ import annotations

import httpx
import pytest

from support import Agent
from tether.core.audit import AuditKind
from tether.runtime import Runtime
from tether.service.clock import ManualClock

PAY = {"tool": "payments.transfer", "actions": ["spend"]}
BIG = {"tool": "payments.transfer", "action": "spend", "args": {"amount": 500, "to": "c-1042"}}
READ = {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}
PURGE = {"tool": "crm.purge", "actions": ["delete"], "datasets": ["crm"]}


@pytest.fixture
def humans(client: httpx.Client, runtime: Runtime) -> dict[str, dict[str, str]]:
    return {
        name: {"Authorization": f"Bearer {runtime.approvers.add(name)}"}
        for name in ("oncall", "alice", "bob")
    }


def _pending_approval(analyst: Agent) -> tuple[dict[str, str], str]:
    response = analyst.open_task([PAY], ttl_seconds=3600)
    assert response.status_code == 201, response.text
    task = dict(response.json())
    verdict = analyst.authorize(task["grant"], **BIG).json()
    assert verdict["decision"] == "approval_required", verdict
    return task, str(verdict["approval_id"])


def test_closing_a_task_ends_its_pending_approval(
    analyst: Agent, client: httpx.Client, humans: dict[str, dict[str, str]], runtime: Runtime
) -> None:
    task, approval_id = _pending_approval(analyst)
    assert analyst.close(task["task_id"]).status_code == 200
    shown = client.get(f"/v1/approvals/{approval_id}", headers=humans["alice"]).json()
    assert shown["state"] == "expired", shown
    late = client.post(f"/v1/approvals/{approval_id}/approve", headers=humans["alice"])
    assert late.status_code == 409, late.text
    assert late.json()["error"]["code"] == "task_not_open"
    closed = [r for r in runtime.store.audit_records() if r.kind is AuditKind.TASK_CLOSED]
    assert closed[-1].body.get("approvals_ended") == [approval_id]


def test_an_approval_given_before_the_task_closed_cannot_be_used_after(
    analyst: Agent, client: httpx.Client, humans: dict[str, dict[str, str]], runtime: Runtime
) -> None:
    task, approval_id = _pending_approval(analyst)
    approved = client.post(f"/v1/approvals/{approval_id}/approve", headers=humans["alice"])
    assert approved.status_code == 200, approved.text
    analyst.close(task["task_id"])
    assert runtime.store.get_approval(approval_id).state.value == "expired"  # type: ignore[arg-type, union-attr]


def test_an_expired_task_not_yet_reaped_cannot_have_its_approval_approved(
    analyst: Agent,
    client: httpx.Client,
    humans: dict[str, dict[str, str]],
    clock: ManualClock,
) -> None:
    response = analyst.open_task([PAY], ttl_seconds=60)
    task = dict(response.json())
    verdict = analyst.authorize(task["grant"], **BIG).json()
    assert verdict["decision"] == "approval_required", verdict
    clock.advance(61)
    late = client.post(f"/v1/approvals/{verdict['approval_id']}/approve", headers=humans["alice"])
    assert late.status_code == 409 and late.json()["error"]["code"] == "task_not_open"


def test_closing_a_task_ends_its_break_glass_requests(
    analyst: Agent, client: httpx.Client, humans: dict[str, dict[str, str]], runtime: Runtime
) -> None:
    response = analyst.open_task([READ], ttl_seconds=3600)
    task = dict(response.json())
    requested = client.post(
        f"/v1/tasks/{task['task_id']}/breakglass",
        json={"scopes": [PURGE], "reason": "purge a poisoned record now"},
        headers=humans["oncall"],
    )
    assert requested.status_code == 201, requested.text
    bg = requested.json()
    analyst.close(task["task_id"])
    late = client.post(f"/v1/breakglass/{bg['breakglass_id']}/approve", headers=humans["alice"])
    assert late.status_code == 409, late.text
    assert late.json()["error"]["code"] == "task_not_open"
    stored = runtime.breakglass.get(bg["breakglass_id"])
    assert stored.state.value == "expired"
    closed = [r for r in runtime.store.audit_records() if r.kind is AuditKind.TASK_CLOSED]
    assert closed[-1].body.get("breakglass_ended") == [bg["breakglass_id"]]
