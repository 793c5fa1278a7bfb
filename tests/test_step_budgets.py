"""Per-step budgets of a declared workflow: a step's ``budgets`` in workflows.yaml limit what each
task takes in that step, on top of the task's own limits (issue: declared workflows)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from support import INTENT, copy_policies, make_runtime
from tether.core.budget import BudgetKind, Budgets
from tether.core.call import Call
from tether.core.effect import EffectStatus
from tether.core.errors import ConfigurationError
from tether.core.identity import Workload
from tether.core.ids import DecisionId
from tether.core.scope import ActionKind, Scope
from tether.core.task import Intent
from tether.core.verdict import Decision, ReasonCode, Verdict
from tether.policy.flows import load_workflows
from tether.runtime import Runtime
from tether.service.clock import ManualClock
from tether.service.flows import Expect
from tether.store.stats import read_stats

ANALYST = Workload.from_spiffe_id("spiffe://tether.local/agent/analyst")
SCOPES = [
    Scope.from_json({"tool": "crm.query", "actions": ["read"], "datasets": ["crm", "docs"]}),
    Scope.from_json({"tool": "crm.update", "actions": ["write"]}),
]
READ_CRM = Call("crm.query", ActionKind.READ, "crm", {})  # confidential
READ_DOCS = Call("crm.query", ActionKind.READ, "docs", {})  # public
WRITE = Call("crm.update", ActionKind.WRITE, None, {})

NO_READ_FLOOR = "egress_sinks: [email.send, files.share, http.post]\nread_floors: {default: 0}\n"

WORKFLOWS = """
workflows:
  analytics:
    start: [query]
    steps:
      query:
        uses: [{tool: crm.query, actions: [read]}]
        next: [record]
        repeatable: true
        budgets: {records: 100, by_classification: {confidential: {records: 50}}}
      record:
        uses: [{tool: crm.update, actions: [write]}]
        next: [query]
        repeatable: true
        budgets: {calls_per_minute: 2}
"""


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    policies = copy_policies(tmp_path / "policies")
    (policies / "workflows.yaml").write_text(WORKFLOWS, encoding="utf-8")
    # These tests are about the budgets' arithmetic on what a read declares, so no read floor
    # (tests/test_read_floors.py covers the floor).
    (policies / "dataflow.yaml").write_text(NO_READ_FLOOR, encoding="utf-8")
    return policies


@pytest.fixture
def rt(tmp_path: Path, clock: ManualClock, policies: Path) -> Iterator[Runtime]:
    runtime = make_runtime(tmp_path / "data", clock, policies)
    yield runtime
    runtime.close()


def open_task(rt: Runtime, budgets: object = None) -> str:
    opened = rt.tasks.open_task(
        ANALYST,
        Intent(**{**INTENT, "workflow": "analytics"}),
        SCOPES,
        budgets=None if budgets is None else Budgets.from_json(budgets),
    )
    return opened.token


def read(rt: Runtime, token: str, records: int, call: Call = READ_CRM) -> Verdict:
    return rt.authorizer.authorize(ANALYST, token, call, expect=Expect(records=records))


def denied_for_budget(verdict: Verdict) -> str:
    assert verdict.decision is Decision.DENY, verdict.reasons
    assert [r.code for r in verdict.reasons] == [ReasonCode.BUDGET_EXCEEDED]
    return verdict.reasons[0].message


def test_a_step_limit_is_enforced_and_named(rt: Runtime) -> None:
    token = open_task(rt)  # the task itself has no limits: only the step's apply
    assert read(rt, token, 30).decision is Decision.ALLOW
    message = denied_for_budget(read(rt, token, 30))
    assert message == (
        "the records of confidential data budget of workflow step 'query' would be exceeded: "
        "used 30, reserved 0, this call 30, limit 50"
    )
    # Public reads count against the step's total only: 30 + 60 of 100.
    assert read(rt, token, 60, READ_DOCS).decision is Decision.ALLOW
    message = denied_for_budget(read(rt, token, 20, READ_DOCS))
    assert "records budget of workflow step 'query'" in message and "limit 100" in message


def test_the_task_limit_and_the_step_limit_both_apply(rt: Runtime) -> None:
    token = open_task(rt, {"records": 40})
    assert read(rt, token, 30).decision is Decision.ALLOW
    message = denied_for_budget(read(rt, token, 15))
    assert message.startswith("the records budget would be exceeded")  # the task's, 40
    assert "limit 40" in message
    other = open_task(rt, {"records": 1000})
    assert read(rt, other, 45).decision is Decision.ALLOW
    message = denied_for_budget(read(rt, other, 10))
    assert "budget of workflow step 'query'" in message and "limit 50" in message


def test_legal_repeats_of_a_step_accumulate_against_the_same_step_budget(rt: Runtime) -> None:
    token = open_task(rt)
    assert read(rt, token, 20).decision is Decision.ALLOW
    assert read(rt, token, 20).decision is Decision.ALLOW  # repeatable
    assert rt.authorizer.authorize(ANALYST, token, WRITE).decision is Decision.ALLOW  # record
    # Back in `query` after `record`: the step's budget is the one already 40 used.
    message = denied_for_budget(read(rt, token, 20))
    assert "workflow step 'query'" in message and "used 40" in message
    assert read(rt, token, 10).decision is Decision.ALLOW
    # Each task has its own step budget.
    assert read(rt, open_task(rt), 50).decision is Decision.ALLOW


def test_a_steps_calls_per_minute(rt: Runtime, clock: ManualClock) -> None:
    token = open_task(rt)
    assert read(rt, token, 1).decision is Decision.ALLOW
    for _ in range(2):
        assert rt.authorizer.authorize(ANALYST, token, WRITE).decision is Decision.ALLOW
    message = denied_for_budget(rt.authorizer.authorize(ANALYST, token, WRITE))
    assert message == (
        "the calls_per_minute budget of workflow step 'record' would be exceeded: "
        "2 calls allowed in the last minute, limit 2"
    )
    # Other steps are not limited by it; the window moves with the clock.
    assert read(rt, token, 1).decision is Decision.ALLOW
    clock.advance(61)
    assert rt.authorizer.authorize(ANALYST, token, WRITE).decision is Decision.ALLOW


def test_parallel_calls_never_overspend_a_step(
    rt: Runtime, tmp_path: Path, clock: ManualClock, policies: Path
) -> None:
    # Two handles on one store, as two replicas would be; the task's own limit is looser.
    replica = make_runtime(tmp_path / "data", clock, policies)
    try:
        token = open_task(rt, {"records": 1000})

        def call(i: int) -> Decision:
            return read(rt if i % 2 else replica, token, 10).decision

        with ThreadPoolExecutor(max_workers=8) as pool:
            decisions = list(pool.map(call, range(24)))
    finally:
        replica.close()
    assert decisions.count(Decision.ALLOW) == 5  # 5 x 10 = the step's confidential limit, 50
    assert decisions.count(Decision.DENY) == 19


def test_the_effect_settles_the_step_holds_with_the_real_amount(rt: Runtime) -> None:
    token = open_task(rt)
    first = read(rt, token, 40)
    assert first.decision is Decision.ALLOW
    decision_id = DecisionId(first.decision_id)
    steps = {h.step for h, _ in rt.store.decision_holds(decision_id)}
    assert steps == {"query"}  # the task has no limits: only the step's holds are written
    rt.effects.report(ANALYST, decision_id, EffectStatus.OK, 5)
    settled = {
        (h.kind, h.classification, h.step): s for h, s in rt.store.decision_holds(decision_id)
    }
    # Only limits the step has are held (it limits no bytes).
    assert settled == {
        (BudgetKind.RECORDS, "", "query"): 5.0,
        (BudgetKind.RECORDS, "confidential", "query"): 5.0,
    }
    # The step's holds are audited with the decision, and not counted again in the metrics.
    [audited] = [
        r.body["budget_holds"]
        for r in rt.store.audit_records()
        if r.body.get("decision_id") == decision_id and "budget_holds" in r.body
    ]
    assert isinstance(audited, list)
    assert {h["step"] for h in audited if isinstance(h, dict)} == {"query"}
    assert read_stats(rt.store, rt.clock.now()).budget_used == {}
    # 5 taken of the 40 reserved: 45 more fit in the step's 50.
    assert read(rt, token, 45).decision is Decision.ALLOW
    assert "used 50" in denied_for_budget(read(rt, token, 1))


def test_an_effect_over_its_reservation_closes_the_step_budget(rt: Runtime) -> None:
    token = open_task(rt)
    first = read(rt, token, 5)
    rt.effects.report(ANALYST, DecisionId(first.decision_id), EffectStatus.OK, 20)
    message = denied_for_budget(read(rt, token, 1))
    assert message == (
        "the records budget of workflow step 'query' is closed: an effect exceeded its "
        "reservation (used 20 of 100)"
    )


@pytest.mark.parametrize(
    ("budgets", "why"),
    [
        ("{rows: 10}", "15:19: {at}.rows: unknown key; allowed here: by_classification, bytes"),
        ("{records: -1}", "15:28: {at}.records: must be at least 0"),
        (
            "{by_classification: {confidential: {calls_per_minute: 3}}}",
            "15:54: {at}.by_classification.confidential.calls_per_minute: unknown key; allowed "
            "here: bytes, records",
        ),
        (
            "{by_classification: {secret: {records: 3}}}",
            "15:39: {at}.by_classification.secret: must be one of 'public', 'internal', "
            "'confidential' or 'restricted'",
        ),
        ("[records]", "15:18: {at}: must be a mapping (keys: records, bytes, calls_per_minute"),
    ],
)
def test_bad_step_budgets_are_refused_naming_the_workflow_and_step(
    tmp_path: Path, budgets: str, why: str
) -> None:
    (tmp_path / "workflows.yaml").write_text(
        WORKFLOWS.replace("budgets: {calls_per_minute: 2}", f"budgets: {budgets}"),
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError) as caught:
        load_workflows(tmp_path)
    assert caught.value.code.value == "policy_invalid"
    at = "workflows.analytics.steps.record.budgets"
    assert caught.value.message.startswith("workflows.yaml:" + why.replace("{at}", at))


def test_budgets_for_a_step_that_is_not_declared_are_refused(tmp_path: Path) -> None:
    # Budgets set beside the steps instead of inside one: read as a step named "budgets".
    misplaced = WORKFLOWS.replace("    steps:\n", "    steps:\n      budgets: {records: 10}\n")
    (tmp_path / "workflows.yaml").write_text(misplaced, encoding="utf-8")
    with pytest.raises(ConfigurationError) as caught:
        load_workflows(tmp_path)
    assert caught.value.code.value == "policy_invalid"
    assert caught.value.message.splitlines()[1:] == [
        "  workflows.yaml:6:7: workflows.analytics.steps.budgets: required key 'uses' is missing",
        "  workflows.yaml:6:17: workflows.analytics.steps.budgets.records: unknown key; allowed "
        "here: budgets, description, next, optional, repeatable, uses",
    ]


def test_the_parsed_step_carries_its_budgets(policies: Path) -> None:
    flow = load_workflows(policies)["analytics"]
    assert flow.steps["query"].budgets.to_json() == {
        "records": 100,
        "by_classification": {"confidential": {"records": 50}},
    }
    assert flow.steps["record"].budgets.to_json() == {"calls_per_minute": 2}
    assert flow.budgets == Budgets()  # the workflow's own caps are separate
