"""A scripted day of agent traffic through the real server, recorded as a real audit log.

Every step goes over HTTP on loopback to the real service with the packaged example policies;
the clock is moved between steps. The exact numbers the report tests expect follow from this
script, step by step (each step says what it leaves in the log).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from support import INTENT, Agent, mint
from tether.core.audit import AuditRecord, canonical_json
from tether.runtime import Runtime
from tether.service.clock import ManualClock

TD = "spiffe://tether.local/agent/"
ANALYST = TD + "analyst"
INTRUDER = TD + "intruder"
SUPPORT = TD + "support"
HELPER = TD + "helper"
TRIAGE = "support-triage"
REPORTING = "monthly-report"
REPORTING_INTENT = {
    "workflow": REPORTING,
    "purpose": "publish the monthly usage report",
    "on_behalf_of": "team:finance",
}

# Task 1 (analyst, support-triage) asks for these; policy grants crm.query read only (no policy
# permits write on crm.query), so 3 + 1 + 4 + 1 + 1 = 10 (tool, action, dataset) triples are
# granted: crm.query read x {crm, docs, tickets}, crm.update write tickets, files.share
# {read, write} x {docs, tickets}, payments.transfer spend, email.send send.
TRIAGE_SCOPES: list[dict[str, object]] = [
    {"tool": "crm.query", "actions": ["read", "write"], "datasets": ["crm", "tickets", "docs"]},
    {"tool": "files.share", "actions": ["read", "write"], "datasets": ["docs", "tickets"]},
    {
        "tool": "crm.update",
        "actions": ["write"],
        "datasets": ["tickets"],
        "constraints": {"discount": {"max": 10}},
    },
    {"tool": "payments.transfer", "actions": ["spend"], "constraints": {"amount": {"max": 1000}}},
    {"tool": "email.send", "actions": ["send"]},
]
# Task 2 (analyst, monthly-report): 2 triples granted.
REPORTING_SCOPES: list[dict[str, object]] = [
    {"tool": "crm.query", "actions": ["read"], "datasets": ["docs"]},
    {"tool": "sandbox.run", "actions": ["execute"]},
]
# Task 3 (support, support-triage): 2 triples granted; delegated to helper with a narrower
# discount (1 triple), which helper uses once.
SUPPORT_SCOPES: list[dict[str, object]] = [
    {
        "tool": "crm.update",
        "actions": ["write"],
        "datasets": ["tickets"],
        "constraints": {"discount": {"max": 10}},
    },
    {"tool": "payments.transfer", "actions": ["spend"], "constraints": {"amount": {"max": 1000}}},
]
HELPER_SCOPES: list[dict[str, object]] = [
    {
        "tool": "crm.update",
        "actions": ["write"],
        "datasets": ["tickets"],
        "constraints": {"discount": {"max": 5}},
    }
]


@dataclass(frozen=True)
class Recorded:
    records: list[AuditRecord]
    export: Path
    data_dir: Path
    #: Every verdict the agents received, in order: (agent, decision, risks).
    verdicts: list[tuple[str, str, list[str]]]


class _Script:
    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.verdicts: list[tuple[str, str, list[str]]] = []

    def open(
        self, agent: Agent, scopes: list[dict[str, object]], **extra: object
    ) -> dict[str, str]:
        response = agent.open_task(scopes, ttl_seconds=1800, **extra)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def call(self, agent: Agent, who: str, grant: str, **call: object) -> dict[str, object]:
        response = agent.authorize(grant, **call)
        assert response.status_code == 200, response.text
        verdict: dict[str, Any] = dict(response.json())
        self.verdicts.append((who, str(verdict["decision"]), [str(r) for r in verdict["risks"]]))
        return verdict

    def effect(self, agent: Agent, verdict: dict[str, object], **fields: object) -> None:
        response = agent.effect(str(verdict["decision_id"]), status="ok", **fields)
        assert response.status_code == 201, response.text


def record_day(
    runtime: Runtime,
    client: httpx.Client,
    clock: ManualClock,
    analyst: Agent,
    intruder: Agent,
    out: Path,
) -> Recorded:
    """Drive the script below; export the log as JSON lines to ``out``."""
    s = _Script(client)
    support = Agent(client, mint(runtime, "support", clock))
    helper = Agent(client, mint(runtime, "helper", clock))
    humans = {
        n: {"Authorization": f"Bearer {runtime.approvers.add(n)}"}
        for n in ("alice", "bob", "carol")
    }

    # 12:00 task 1: analyst, support-triage (6 triples granted).
    t1 = s.open(analyst, TRIAGE_SCOPES)
    g1 = t1["grant"]
    clock.advance(60)  # 12:01
    v = s.call(analyst, "analyst", g1, tool="crm.query", action="read", dataset="crm", args={})
    s.effect(analyst, v, records=120, bytes=48000)
    v = s.call(analyst, "analyst", g1, tool="crm.query", action="read", dataset="crm", args={})
    s.effect(analyst, v, records=30, bytes=9000)
    # Allowed, no effect reported.
    s.call(analyst, "analyst", g1, tool="files.share", action="read", dataset="docs", args={})
    # Out of scope: deny (dataset_not_in_scope).
    s.call(analyst, "analyst", g1, tool="crm.query", action="read", dataset="payroll", args={})
    clock.advance(120)  # 12:03
    small = {"amount": 50, "to": "c-1042"}
    s.call(analyst, "analyst", g1, tool="payments.transfer", action="spend", args=small)
    large = {"amount": 500, "to": "c-1042"}
    asked = s.call(analyst, "analyst", g1, tool="payments.transfer", action="spend", args=large)
    assert asked["decision"] == "approval_required", asked
    voted = client.post(f"/v1/approvals/{asked['approval_id']}/approve", headers=humans["alice"])
    assert voted.status_code == 200, voted.text
    approved = s.call(
        analyst,
        "analyst",
        g1,
        tool="payments.transfer",
        action="spend",
        args=large,
        approval_id=asked["approval_id"],
    )
    assert approved["decision"] == "allow", approved
    # Email outside example.com: no policy permits it (deny).
    s.call(analyst, "analyst", g1, tool="email.send", action="send", args={"to": "x@evil.test"})
    # The intruder presents the analyst's grant: deny (grant_not_bound), attributed to no task.
    s.call(intruder, "intruder", g1, tool="crm.query", action="read", dataset="crm", args={})

    # 12:05 break-glass on task 1: crm.purge delete crm, two other humans approve, used once,
    # never reviewed.
    clock.advance(120)
    bg = client.post(
        f"/v1/tasks/{t1['task_id']}/breakglass",
        json={
            "scopes": [{"tool": "crm.purge", "actions": ["delete"], "datasets": ["crm"]}],
            "reason": "purge a poisoned record now",
        },
        headers=humans["carol"],
    )
    assert bg.status_code == 201, bg.text
    path = f"/v1/breakglass/{bg.json()['breakglass_id']}"
    for name in ("alice", "bob"):
        assert client.post(path + "/approve", headers=humans[name]).status_code == 200
    purge = s.call(
        analyst, "analyst", g1, tool="crm.purge", action="delete", dataset="crm", args={"id": "c-9"}
    )
    assert purge["decision"] == "allow", purge
    assert analyst.close(t1["task_id"]).status_code == 200

    # 12:20 task 2: analyst, monthly-report (2 triples granted, 1 used).
    clock.advance(15 * 60)
    t2 = s.open(analyst, REPORTING_SCOPES, intent=REPORTING_INTENT)
    v = s.call(analyst, "analyst", t2["grant"], tool="crm.query", action="read", dataset="docs")
    s.effect(analyst, v, records=5, bytes=1000)
    # Not in scope, and an execute action: deny with ASI05.
    s.call(analyst, "analyst", t2["grant"], tool="shell.exec", action="execute", args={})
    assert analyst.close(t2["task_id"]).status_code == 200

    # 12:40 task 3: support, support-triage; delegated to helper.
    clock.advance(20 * 60)
    t3 = s.open(support, SUPPORT_SCOPES, intent=INTENT)
    delegated = client.post(
        f"/v1/tasks/{t3['task_id']}/delegate",
        json={"grant": t3["grant"], "agent": HELPER, "scopes": HELPER_SCOPES},
        headers=support.headers,
    )
    assert delegated.status_code == 201, delegated.text
    g4 = delegated.json()["grant"]
    write = {"tool": "crm.update", "action": "write", "dataset": "tickets"}
    v = s.call(helper, "helper", g4, **write, args={"discount": 3})
    assert v["decision"] == "allow", v
    s.effect(helper, v, records=1, bytes=200)
    denied = s.call(helper, "helper", g4, **write, args={"discount": 7})
    assert denied["decision"] == "deny", denied
    assert support.close(t3["task_id"]).status_code == 200

    records = list(runtime.store.audit_records())
    with out.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(canonical_json(record.to_json()).decode() + "\n")
    return Recorded(records, out, runtime.config.data_dir, s.verdicts)
