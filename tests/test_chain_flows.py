"""A delegation chain acts as one task for data flow, workflow steps and spend budgets.

Regression tests of holes an adversarial review found: a helper's reads did not raise its
delegator's label (data laundered through delegation), delegates repeated a workflow step the
root had taken, and a negative, missing or ill-typed amount slipped past a spend budget.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import INTENT, Agent, make_runtime, mint, packaged_policies
from tether.runtime import Runtime
from tether.service.clock import ManualClock

# The example policies, with payments permitted at any amount and the helper allowed to read
# customer records: what these holes abuse is a permissive policy, which tether must not trust.
PERMISSIVE = """
@id("any-transfer")
permit (principal, action == Action::"spend", resource == Tool::"payments.transfer");

@id("helper-reads-crm")
permit (
  principal == Agent::"spiffe://tether.local/agent/helper",
  action == Action::"read",
  resource == Tool::"crm.query"
);
"""


@pytest.fixture
def runtime(tmp_path: Path, clock: ManualClock) -> Iterator[Runtime]:
    policies = tmp_path / "policies"
    shutil.copytree(packaged_policies(), policies)
    (policies / "payments.cedar").write_text(PERMISSIVE)
    rt = make_runtime(tmp_path / "data", clock, policy_dir=policies)
    yield rt
    rt.close()


TD = "spiffe://tether.local/agent/"
MAIL = {"tool": "email.send", "actions": ["send"]}
SEND = {"tool": "email.send", "action": "send", "args": {"to": "bob@example.com"}}
PAY = {"tool": "payments.transfer", "actions": ["spend"]}
SPEND = {"tool": "payments.transfer", "action": "spend"}


def codes(verdict: dict[str, object]) -> list[str]:
    return [r["code"] for r in verdict["reasons"]]  # type: ignore[index, union-attr]


def opened(agent: Agent, scopes: list[dict[str, object]], **extra: object) -> dict[str, str]:
    response = agent.open_task(scopes, ttl_seconds=3600, **extra)
    assert response.status_code == 201, response.text
    task = dict(response.json())
    assert len(task["granted"]) == len(scopes), task  # nothing refused: the test needs all
    return task


def delegate(
    client: httpx.Client, parent: Agent, task: dict[str, str], to: str, scopes: list[object]
) -> dict[str, str]:
    response = client.post(
        f"/v1/tasks/{task['task_id']}/delegate",
        json={"grant": task["grant"], "agent": TD + to, "scopes": scopes},
        headers=parent.headers,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_a_delegates_reads_raise_the_label_of_its_delegator(
    analyst: Agent, client: httpx.Client, runtime: Runtime, clock: ManualClock
) -> None:
    reads = {"tool": "crm.query", "actions": ["read"], "datasets": ["crm", "payroll"]}
    task = opened(analyst, [reads, MAIL])
    assert analyst.authorize(task["grant"], **SEND).json()["decision"] == "allow"  # clean yet
    child = delegate(client, analyst, task, "helper", [reads])
    helper = Agent(client, mint(runtime, "helper", clock))
    crm = {"tool": "crm.query", "action": "read", "dataset": "crm"}
    assert helper.authorize(child["grant"], **crm).json()["decision"] == "allow"
    # The helper read confidential data on the analyst's behalf: the analyst's egress waits.
    after_crm = analyst.authorize(task["grant"], **SEND).json()
    assert after_crm["decision"] == "approval_required", after_crm
    assert codes(after_crm)[0] == "egress_needs_approval"
    payroll = {"tool": "crm.query", "action": "read", "dataset": "payroll"}
    assert helper.authorize(child["grant"], **payroll).json()["decision"] == "allow"
    after_payroll = analyst.authorize(task["grant"], **SEND).json()
    assert after_payroll["decision"] == "deny" and codes(after_payroll) == ["egress_blocked"]


def test_a_parents_later_reads_bind_an_existing_delegate(
    analyst: Agent, client: httpx.Client, runtime: Runtime, clock: ManualClock
) -> None:
    payroll = {"tool": "crm.query", "actions": ["read"], "datasets": ["payroll"]}
    task = opened(analyst, [payroll, MAIL])
    child = delegate(client, analyst, task, "notifier", [MAIL])  # delegated while still clean
    mailer = Agent(client, mint(runtime, "notifier", clock))
    assert mailer.authorize(child["grant"], **SEND).json()["decision"] == "allow"
    read = {"tool": "crm.query", "action": "read", "dataset": "payroll"}
    assert analyst.authorize(task["grant"], **read).json()["decision"] == "allow"
    laundered = mailer.authorize(child["grant"], **SEND).json()
    assert laundered["decision"] == "deny" and codes(laundered) == ["egress_blocked"]


LOOKUP = {"tool": "crm.query", "action": "read", "dataset": "crm"}
REFUND = {**SPEND, "args": {"amount": 20}}


def refund_task(analyst: Agent) -> dict[str, str]:
    """A task of the refund workflow (lookup, then one refund), with the scopes both need."""
    crm = {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}
    response = analyst.client.post(
        "/v1/tasks",
        json={"intent": {**INTENT, "workflow": "refund"}, "scopes": [crm, PAY]},
        headers=analyst.headers,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_a_non_repeatable_step_is_taken_once_by_the_whole_chain(
    analyst: Agent, client: httpx.Client, runtime: Runtime, clock: ManualClock
) -> None:
    task = refund_task(analyst)
    assert analyst.authorize(task["grant"], **LOOKUP).json()["decision"] == "allow"
    assert analyst.authorize(task["grant"], **REFUND).json()["decision"] == "allow"
    again = analyst.authorize(task["grant"], **REFUND).json()
    assert again["decision"] == "deny" and codes(again) == ["workflow_out_of_order"]
    for name in ("helper", "notifier"):
        child = delegate(client, analyst, task, name, [PAY])
        delegate_agent = Agent(client, mint(runtime, name, clock))
        repeat = delegate_agent.authorize(child["grant"], **REFUND).json()
        assert repeat["decision"] == "deny", (name, repeat)
        assert codes(repeat) == ["workflow_out_of_order"]


def test_a_delegates_step_moves_the_root(
    analyst: Agent, client: httpx.Client, runtime: Runtime, clock: ManualClock
) -> None:
    task = refund_task(analyst)
    assert analyst.authorize(task["grant"], **LOOKUP).json()["decision"] == "allow"
    child = delegate(client, analyst, task, "helper", [PAY])
    helper = Agent(client, mint(runtime, "helper", clock))
    assert helper.authorize(child["grant"], **REFUND).json()["decision"] == "allow"
    parent_again = analyst.authorize(task["grant"], **REFUND).json()
    assert parent_again["decision"] == "deny" and codes(parent_again) == ["workflow_out_of_order"]


@pytest.mark.parametrize(
    "args",
    [
        {"amount": -5000},
        {"amount": "1000"},
        {"amount": [1000]},
        {"amount": None},
        {"amount": True},
        {},
        {"amt": 1000},
    ],
    ids=["negative", "string", "list", "null", "bool", "missing", "renamed"],
)
def test_a_spend_budget_refuses_an_amount_it_cannot_charge(
    analyst: Agent, args: dict[str, object]
) -> None:
    task = opened(analyst, [PAY], budgets={"spend": 100})
    bad = analyst.authorize(task["grant"], **SPEND, args=args).json()
    assert bad["decision"] == "deny", bad
    assert codes(bad) == ["invalid_budget_argument"]
    assert "tether:budget" in bad["policy_ids"]
    # Nothing was refunded or left uncharged: the budget still holds at 100.
    assert (
        analyst.authorize(task["grant"], **SPEND, args={"amount": 100}).json()["decision"]
        == "allow"
    )
    over = analyst.authorize(task["grant"], **SPEND, args={"amount": 1}).json()
    assert over["decision"] == "deny" and codes(over) == ["budget_exceeded"]


def test_a_negative_amount_cannot_refund_a_spend_budget(analyst: Agent) -> None:
    task = opened(analyst, [PAY], budgets={"spend": 100})
    refund = analyst.authorize(task["grant"], **SPEND, args={"amount": -5000}).json()
    assert refund["decision"] == "deny"
    for _ in range(5):
        last = analyst.authorize(task["grant"], **SPEND, args={"amount": 1000}).json()
        assert last["decision"] == "deny" and codes(last) == ["budget_exceeded"], last


def test_the_permissive_policy_allows_what_the_budget_rule_refuses(analyst: Agent) -> None:
    # Without a spend budget the same calls are allowed: the refusals above are the budget's.
    task = opened(analyst, [PAY])
    for args in ({"amount": -5000}, {"amount": "1000"}, {"amt": 1000}):
        allowed = analyst.authorize(task["grant"], **SPEND, args=args).json()
        assert allowed["decision"] == "allow", (args, allowed)
