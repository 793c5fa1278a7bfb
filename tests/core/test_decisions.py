"""The pure decision (core/decide.py) as data: every case in tests/core/decisions/*.yaml is one
test, and together the cases reach every reason code and every obligation kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from decision_facts import NOW, Case, lease_for, load
from tether.core.decide import decide, refuse, screen, unreadable, unrecorded, verdict_of
from tether.core.facts import Decided
from tether.core.ids import DecisionId
from tether.core.risks import Risk
from tether.core.verdict import ObligationKind, ReasonCode, Verdict

FILES = sorted((Path(__file__).parent / "decisions").glob("*.yaml"))
CASES = [case for path in FILES for case in load(path)]


def _answer(case: Case) -> tuple[Decided, Verdict]:
    decided = decide(case.facts, case.outcome, case.late)
    after = case.after
    if "refuse" in after:
        code = ReasonCode(after["refuse"])
        extra = {
            ReasonCode.BUDGET_EXCEEDED: (Risk.ASI02, Risk.ASI08),
            ReasonCode.APPROVAL_USED: (Risk.ASI09,),
        }.get(code, ())
        decided = refuse(decided, code, f"{code.value} after the decision", extra)
    if after.get("unrecorded"):
        decided = unrecorded(decided, "the disk is full")
    if after.get("unreadable"):
        decided = unreadable("the store did not answer")
    lease = lease_for(case.facts) if after.get("lease") else None
    verdict = verdict_of(decided, DecisionId("dec_1"), "r1", NOW, lease=lease)
    return decided, verdict


@pytest.mark.parametrize("case", CASES, ids=[f"{c.file}::{c.name}" for c in CASES])
def test_a_caller_that_screened_the_facts_gets_the_same_decision(case: Case) -> None:
    """The service screens a call to know whether to ask Cedar, and hands that on."""
    screened = screen(case.facts)
    given = decide(case.facts, case.outcome, case.late, screened=screened)
    assert given == decide(case.facts, case.outcome, case.late)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.file}::{c.name}" for c in CASES])
def test_decision(case: Case) -> None:
    decided, verdict = _answer(case)
    expect = case.expect
    assert verdict.decision.value == expect["decision"], verdict.reasons
    if "reasons" in expect:
        assert [r.code.value for r in verdict.reasons] == expect["reasons"]
    if "message" in expect:
        assert expect["message"] in verdict.reasons[0].message
    if "policy_ids" in expect:
        assert list(verdict.policy_ids) == expect["policy_ids"]
    risks = {r.value for r in verdict.risks}
    assert set(expect.get("risks_include", ())) <= risks
    assert not set(expect.get("risks_exclude", ())) & risks
    if "obligations" in expect:
        assert [o.kind.value for o in verdict.obligations] == expect["obligations"]
    if "observed" in expect:
        assert [o.policy_id for o in decided.observed] == expect["observed"]
    if "progress" in expect:
        moved = [
            {
                "task": p.task_id,
                "label": p.label,
                **({"step": p.workflow_step} if p.moves_step else {}),
            }
            for p in decided.progress
        ]
        assert moved == expect["progress"]
    if "draft_approval" in expect:
        assert decided.draft_approval is expect["draft_approval"]
    if "approvers" in expect:
        assert decided.approvers == expect["approvers"]
    if "approval_ref" in expect:
        assert verdict.approval_id == expect["approval_ref"]
    if "use_approval" in expect:
        assert (decided.use_approval is not None) is expect["use_approval"]
    if "breakglass" in expect:
        assert (decided.breakglass is not None) is expect["breakglass"]
        if expect["breakglass"]:
            assert decided.overridden is not None


def test_the_cases_reach_every_reason_code() -> None:
    reached = {code for case in CASES for code in case.expect.get("reasons", ())}
    assert {c.value for c in ReasonCode} - reached == set()


def test_the_cases_reach_every_obligation_kind() -> None:
    reached = {kind for case in CASES for kind in case.expect.get("obligations", ())}
    assert {k.value for k in ObligationKind} - reached == set()


def test_the_decision_is_pure_the_same_facts_give_the_same_answer() -> None:
    for case in CASES:
        first, second = _answer(case), _answer(case)
        assert first[1].to_json() == second[1].to_json(), case.name
