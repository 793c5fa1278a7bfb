"""Budget limits from policy: a declared workflow's ``budgets`` in workflows.yaml cap what a task
requests, and are the limits of a task that requests none."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support import INTENT, copy_policies, make_runtime
from tether.core.budget import ANY, BudgetKind, Budgets, Limit
from tether.core.call import Call
from tether.core.errors import ConfigurationError
from tether.core.identity import Workload
from tether.core.scope import ActionKind, Scope
from tether.core.task import Intent
from tether.core.verdict import Decision, ReasonCode
from tether.policy.flows import load_workflows
from tether.runtime import Runtime
from tether.service.clock import ManualClock
from tether.service.flows import Expect

ANALYST = Workload.from_spiffe_id("spiffe://tether.local/agent/analyst")
CRM = Scope.from_json({"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]})

NO_READ_FLOOR = "egress_sinks: [email.send, files.share, http.post]\nread_floors: {default: 0}\n"

WORKFLOWS = """
workflows:
  analytics:
    budgets: {records: 100, by_classification: {confidential: {records: 50}}}
    start: [query]
    steps:
      query:
        uses: [{tool: crm.query, actions: [read]}]
        repeatable: true
  reporting:
    start: [query]
    steps:
      query:
        uses: [{tool: crm.query, actions: [read]}]
        repeatable: true
"""


@pytest.fixture
def rt(tmp_path: Path, clock: ManualClock) -> Iterator[Runtime]:
    policies = copy_policies(tmp_path / "policies")
    (policies / "workflows.yaml").write_text(WORKFLOWS, encoding="utf-8")
    # These tests are about the budgets' arithmetic on what a read declares, so no read floor
    # (tests/test_read_floors.py covers the floor).
    (policies / "dataflow.yaml").write_text(NO_READ_FLOOR, encoding="utf-8")
    runtime = make_runtime(tmp_path / "data", clock, policies)
    yield runtime
    runtime.close()


def opened_budgets(rt: Runtime, workflow: str, requested: object) -> dict[str, object]:
    opened = rt.tasks.open_task(
        ANALYST,
        Intent(**{**INTENT, "workflow": workflow}),
        [CRM],
        budgets=None if requested is None else Budgets.from_json(requested),
    )
    return dict(opened.task.budgets.to_json())


def test_a_task_that_asks_for_none_gets_the_workflows_limits(rt: Runtime) -> None:
    assert opened_budgets(rt, "analytics", None) == {
        "records": 100,
        "by_classification": {"confidential": {"records": 50}},
    }


def test_what_a_task_asks_for_is_capped_by_policy(rt: Runtime) -> None:
    asked = {"records": 1000, "spend": 5, "by_classification": {"confidential": {"records": 20}}}
    assert opened_budgets(rt, "analytics", asked) == {
        "records": 100,  # capped
        "spend": 5,  # policy sets none: as asked
        "by_classification": {"confidential": {"records": 20}},  # tighter than policy: kept
    }


def test_other_workflows_are_not_capped(rt: Runtime) -> None:
    assert opened_budgets(rt, "reporting", None) == {}
    assert opened_budgets(rt, "reporting", {"records": 1000}) == {"records": 1000}


def test_the_cap_is_enforced(rt: Runtime) -> None:
    opened = rt.tasks.open_task(ANALYST, Intent(**{**INTENT, "workflow": "analytics"}), [CRM])
    read = Call("crm.query", ActionKind.READ, "crm", {})
    first = rt.authorizer.authorize(ANALYST, opened.token, read, expect=Expect(records=40))
    assert first.decision is Decision.ALLOW
    second = rt.authorizer.authorize(ANALYST, opened.token, read, expect=Expect(records=40))
    assert second.decision is Decision.DENY
    assert second.reasons[0].code is ReasonCode.BUDGET_EXCEEDED
    assert "records of confidential data" in second.reasons[0].message
    assert "limit 50" in second.reasons[0].message


def test_capped_by_keeps_the_tighter_of_each_limit() -> None:
    policy = Budgets((Limit(BudgetKind.RECORDS, ANY, 100), Limit(BudgetKind.SPEND, ANY, 10)))
    asked = Budgets((Limit(BudgetKind.RECORDS, ANY, 500), Limit(BudgetKind.BYTES, ANY, 7)))
    capped = asked.capped_by(policy)
    assert sorted((lim.kind.value, lim.amount) for lim in capped.limits) == [
        ("bytes", 7.0),
        ("records", 100.0),
        ("spend", 10.0),
    ]
    assert capped.narrower_than(policy) is None
    assert Budgets().capped_by(Budgets()) == Budgets()


def test_bad_workflow_budgets_are_refused_naming_them(tmp_path: Path) -> None:
    (tmp_path / "workflows.yaml").write_text(
        WORKFLOWS.replace("{records: 100,", "{rows: 100,"), encoding="utf-8"
    )
    with pytest.raises(ConfigurationError) as caught:
        load_workflows(tmp_path)
    assert caught.value.code.value == "policy_invalid"
    assert caught.value.message == (
        "workflows.yaml:4:15: workflows.analytics.budgets.rows: unknown key; allowed here: "
        "by_classification, bytes, calls_per_minute, records, spend"
    )
