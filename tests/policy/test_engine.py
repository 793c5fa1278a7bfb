"""The engine behind the service's port: shapes of outcomes, fail-closed edges, public surface."""

from __future__ import annotations

from pathlib import Path

import pytest

import tether.policy
from tether.core.call import Call
from tether.core.identity import Workload
from tether.core.ids import TaskId
from tether.core.risks import Risk
from tether.core.scope import ActionKind, Classification
from tether.core.task import Intent
from tether.core.verdict import Decision, Obligation, ObligationKind, ReasonCode
from tether.policy.engine import CedarPolicyEngine
from tether.service.ports import PolicyOutcome, PolicyRequest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
ANALYST = Workload.from_spiffe_id("spiffe://tether.local/agent/analyst")


@pytest.fixture(scope="module")
def engine() -> CedarPolicyEngine:
    return CedarPolicyEngine.load(EXAMPLES)


def decide(engine: CedarPolicyEngine, call: Call, agent: Workload = ANALYST) -> PolicyOutcome:
    classification = engine.classification(call.dataset) if call.dataset else None
    return engine.decide(
        PolicyRequest(agent, call, classification, Intent("w", "p", "o"), TaskId("tsk_x"))
    )


def test_allow_carries_permits_obligations_and_risks(engine: CedarPolicyEngine) -> None:
    outcome = decide(engine, Call("crm.query", ActionKind.READ, "crm"))
    assert outcome == PolicyOutcome(
        decision=Decision.ALLOW,
        reasons=outcome.reasons,
        policy_ids=("analyst-reads-crm",),
        obligations=(Obligation(ObligationKind.ROW_CAP, "500", "analyst-reads-crm"),),
        risks=frozenset({Risk.ASI02, Risk.ASI03}),
    )
    (reason,) = outcome.reasons
    assert reason.code is ReasonCode.POLICY_PERMITS
    assert "analyst-reads-crm" in reason.message


def test_a_forbid_reason_is_shown(engine: CedarPolicyEngine) -> None:
    outcome = decide(engine, Call("shell.exec", ActionKind.EXECUTE))
    (reason,) = outcome.reasons
    assert reason.message == (
        "policy execute-only-in-sandbox forbids execute on shell.exec: "
        "code may only run in the sandbox (sandbox.run)"
    )
    assert outcome.risks == {Risk.ASI02, Risk.ASI05}


def test_approval_says_why(engine: CedarPolicyEngine) -> None:
    outcome = decide(engine, Call("payments.transfer", ActionKind.SPEND, None, {"amount": 500}))
    assert outcome.decision is Decision.APPROVAL_REQUIRED
    (reason,) = outcome.reasons
    assert reason.code is ReasonCode.APPROVAL_REQUIRED
    assert "transfers over 100 need a human" in reason.message
    assert outcome.obligations == ()


def test_default_deny_names_action_and_tool(engine: CedarPolicyEngine) -> None:
    outcome = decide(engine, Call("nothing.here", ActionKind.DELETE))
    assert outcome.decision is Decision.DENY
    assert outcome.reasons[0].message == "no policy permits delete on nothing.here"
    assert outcome.policy_ids == () and outcome.risks == {Risk.ASI02}


def test_an_evaluation_error_names_the_policy_and_cedars_error(engine: CedarPolicyEngine) -> None:
    outcome = decide(engine, Call("email.send", ActionKind.SEND, None, {"to": ["a@example.com"]}))
    assert outcome.decision is Decision.DENY
    (reason,) = outcome.reasons
    assert reason.code is ReasonCode.POLICY_ERROR
    assert "email-to-example-com" in reason.message and "type error" in reason.message
    assert outcome.policy_ids == ("email-to-example-com",)
    assert outcome.risks == {Risk.ASI01, Risk.ASI02}


def test_odd_tool_and_agent_ids_are_data_not_syntax(engine: CedarPolicyEngine) -> None:
    odd = Workload(id='x"y\\z\n', kind=ANALYST.kind, trust_domain="t", name="n")
    for tool in ['crm.query"', "", "\x00", "é" * 300]:
        outcome = decide(engine, Call(tool, ActionKind.READ), agent=odd)
        assert outcome.decision is Decision.DENY
        preview = engine.preview_grant(odd, Intent("w", "p", "o"), tool, ActionKind.READ, None)
        assert not preview.permitted


def test_classification_comes_from_the_catalog(engine: CedarPolicyEngine) -> None:
    assert engine.classification("crm") is Classification.CONFIDENTIAL
    assert engine.classification("docs") is Classification.PUBLIC
    assert engine.classification("elsewhere") is None


def test_the_revision_is_the_bundles(engine: CedarPolicyEngine) -> None:
    assert engine.revision == engine.snapshot.bundle.revision
    assert len(engine.revision) == 64


def test_the_public_surface() -> None:
    assert sorted(tether.policy.__all__) == [
        "CaseResult",
        "Catalog",
        "CedarPolicyEngine",
        "PolicyBundle",
        "PolicyMeta",
        "PolicySnapshot",
        "PolicyWatcher",
        "ReloadResult",
        "format_policy_text",
        "is_formatted",
        "load_policy_dir",
        "load_sources",
        "run_policy_tests",
    ]
    for name in tether.policy.__all__:
        assert getattr(tether.policy, name) is not None
