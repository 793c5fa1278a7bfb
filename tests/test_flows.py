"""Budgets, data-flow labels and declared workflows over real HTTP (issue: exfiltration)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from support import INTENT, Agent, mint
from tether.runtime import Runtime
from tether.service.clock import ManualClock

TD = "spiffe://tether.local/agent/"
CRM = {"tool": "crm.query", "actions": ["read"], "datasets": ["crm", "docs"]}
MAIL = {"tool": "email.send", "actions": ["send"]}
PAY = {"tool": "payments.transfer", "actions": ["spend"]}
READ = {"tool": "crm.query", "action": "read", "dataset": "crm"}


def codes(verdict: dict[str, object]) -> list[str]:
    return [r["code"] for r in verdict["reasons"]]  # type: ignore[index, union-attr]


def open_with(agent: Agent, scopes: list[dict[str, object]], **extra: object) -> dict[str, str]:
    response = agent.open_task(scopes, ttl_seconds=3600, **extra)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_a_records_budget_cuts_an_analytics_agent_off(analyst: Agent) -> None:
    task = open_with(analyst, [CRM], budgets={"records": 1000})
    assert task["budgets"] == {"records": 1000}
    first = analyst.authorize(task["grant"], expect={"records": 600}, **READ).json()
    assert first["decision"] == "allow"
    second = analyst.authorize(task["grant"], expect={"records": 600}, **READ).json()
    assert second["decision"] == "deny" and codes(second) == ["budget_exceeded"]
    message = second["reasons"][0]["message"]
    assert "records" in message and "600" in message and "1000" in message
    # The effect settles the real amount: 10 taken of the 600 reserved frees room again.
    analyst.effect(first["decision_id"], status="ok", records=10)
    third = analyst.authorize(task["grant"], expect={"records": 600}, **READ).json()
    assert third["decision"] == "allow"


def test_an_effect_over_its_reservation_closes_the_budget(analyst: Agent) -> None:
    task = open_with(analyst, [CRM], budgets={"records": 10000})
    first = analyst.authorize(task["grant"], expect={"records": 500}, **READ).json()
    analyst.effect(first["decision_id"], status="ok", records=5000)
    after = analyst.authorize(task["grant"], expect={"records": 100}, **READ).json()
    assert after["decision"] == "deny" and "closed" in after["reasons"][0]["message"]


def test_per_classification_bytes_and_spend_and_rate_budgets(analyst: Agent) -> None:
    task = open_with(
        analyst,
        [CRM, PAY],
        budgets={
            "bytes": 10_000_000,
            "spend": 100,
            "calls_per_minute": 3,
            "by_classification": {"confidential": {"bytes": 1000}},
        },
    )
    big = analyst.authorize(task["grant"], expect={"records": 1, "bytes": 5000}, **READ).json()
    assert big["decision"] == "deny" and "confidential" in big["reasons"][0]["message"]
    public = analyst.authorize(
        task["grant"], tool="crm.query", action="read", dataset="docs", expect={"bytes": 5000}
    ).json()
    assert public["decision"] == "allow"  # docs are public: only the total applies
    spend = {"tool": "payments.transfer", "action": "spend"}
    assert (
        analyst.authorize(task["grant"], args={"amount": 60}, **spend).json()["decision"] == "allow"
    )
    over = analyst.authorize(task["grant"], args={"amount": 60}, **spend).json()
    assert over["decision"] == "deny" and codes(over) == ["budget_exceeded"]
    assert (
        analyst.authorize(task["grant"], args={"amount": 30}, **spend).json()["decision"] == "allow"
    )
    rate = analyst.authorize(task["grant"], args={"amount": 1}, **spend).json()
    assert rate["decision"] == "deny" and "calls_per_minute" in rate["reasons"][0]["message"]


def test_parallel_calls_never_overspend(analyst: Agent, base_url: str) -> None:
    task = open_with(analyst, [CRM], budgets={"records": 1000})

    def read(_: int) -> str:
        with httpx.Client(base_url=base_url, timeout=10) as own:
            body = {"grant": task["grant"], "expect": {"records": 100}, **READ}
            return str(
                own.post("/v1/authorize", json=body, headers=analyst.headers).json()["decision"]
            )

    with ThreadPoolExecutor(max_workers=8) as pool:
        decisions = list(pool.map(read, range(24)))
    assert decisions.count("allow") == 10
    assert decisions.count("deny") == 14


def test_email_after_confidential_reads_waits_for_a_human(analyst: Agent) -> None:
    task = open_with(analyst, [CRM, MAIL])
    mail = {"tool": "email.send", "action": "send", "args": {"to": "bob@example.com"}}
    before = analyst.authorize(task["grant"], **mail).json()
    assert before["decision"] == "allow"  # nothing sensitive read yet
    assert analyst.authorize(task["grant"], **READ).json()["decision"] == "allow"  # confidential
    after = analyst.authorize(task["grant"], **mail).json()
    assert after["decision"] == "approval_required"
    assert codes(after)[0] == "egress_needs_approval" and after["approval_id"]
    assert "ASI02" in after["risks"]


def test_restricted_reads_block_egress_and_delegates_inherit_the_label(
    analyst: Agent, client: httpx.Client, runtime: Runtime, clock: ManualClock
) -> None:
    payroll = {"tool": "crm.query", "actions": ["read"], "datasets": ["payroll"]}
    task = open_with(analyst, [payroll, MAIL])
    assert [s["tool"] for s in task["granted"]] == ["crm.query", "email.send"]  # type: ignore[index, attr-defined]
    read = analyst.authorize(
        task["grant"], tool="crm.query", action="read", dataset="payroll"
    ).json()
    assert read["decision"] == "allow"
    mail = {"tool": "email.send", "action": "send", "args": {"to": "bob@example.com"}}
    blocked = analyst.authorize(task["grant"], **mail).json()
    assert blocked["decision"] == "deny" and codes(blocked) == ["egress_blocked"]
    child = client.post(
        f"/v1/tasks/{task['task_id']}/delegate",
        json={"grant": task["grant"], "agent": TD + "notifier", "scopes": [MAIL]},
        headers=analyst.headers,
    ).json()
    mailer = Agent(client, mint(runtime, "notifier", clock))
    laundered = mailer.authorize(child["grant"], **mail).json()
    assert laundered["decision"] == "deny"
    assert "egress_blocked" in codes(laundered)


def test_delegated_budgets_only_narrow_and_count_against_the_parent(
    analyst: Agent, client: httpx.Client, runtime: Runtime, clock: ManualClock
) -> None:
    docs = {"tool": "docs.search", "actions": ["read"], "datasets": ["docs"]}
    search = {"tool": "docs.search", "action": "read", "dataset": "docs"}
    task = open_with(analyst, [docs], budgets={"records": 100})
    wider = client.post(
        f"/v1/tasks/{task['task_id']}/delegate",
        json={
            "grant": task["grant"],
            "agent": TD + "helper",
            "scopes": [docs],
            "budgets": {"records": 500},
        },
        headers=analyst.headers,
    )
    assert wider.status_code == 403 and wider.json()["error"]["code"] == "delegation_widens"
    child = client.post(
        f"/v1/tasks/{task['task_id']}/delegate",
        json={
            "grant": task["grant"],
            "agent": TD + "helper",
            "scopes": [docs],
            "budgets": {"records": 80},
        },
        headers=analyst.headers,
    ).json()
    helper = Agent(client, mint(runtime, "helper", clock))
    assert (
        helper.authorize(child["grant"], expect={"records": 70}, **search).json()["decision"]
        == "allow"
    )
    # The parent has 30 left: the child's use counted against it too.
    parent = analyst.authorize(task["grant"], expect={"records": 40}, **search).json()
    assert parent["decision"] == "deny" and codes(parent) == ["budget_exceeded"]


def test_a_declared_workflow_is_followed_in_order(analyst: Agent) -> None:
    refund = {**INTENT, "workflow": "refund"}
    response = analyst.client.post(
        "/v1/tasks",
        json={
            "intent": refund,
            "scopes": [CRM, PAY, MAIL, {"tool": "crm.update", "actions": ["write"]}],
        },
        headers=analyst.headers,
    )
    task = response.json()
    refused = {r["tool"]: r["code"] for r in task["refused"]}
    assert refused.get("crm.update") == "outside_workflow"
    spend = {"tool": "payments.transfer", "action": "spend", "args": {"amount": 20}}
    early = analyst.authorize(task["grant"], **spend).json()
    assert early["decision"] == "deny" and codes(early) == ["workflow_out_of_order"]
    assert "lookup (read crm.query)" in early["reasons"][0]["message"]
    assert "ASI01" in early["risks"]
    assert analyst.authorize(task["grant"], **READ).json()["decision"] == "allow"
    assert analyst.authorize(task["grant"], **READ).json()["decision"] == "allow"  # repeatable
    assert analyst.authorize(task["grant"], **spend).json()["decision"] == "allow"
    again = analyst.authorize(task["grant"], **spend).json()
    assert again["decision"] == "deny" and codes(again) == ["workflow_out_of_order"]
