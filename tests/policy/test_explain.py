"""Explaining one decision: the verdict decide() gives, the policies that matched, the context."""

from __future__ import annotations

from pathlib import Path

from tether.core.verdict import Decision
from tether.policy.cases import parse_request
from tether.policy.engine import CedarPolicyEngine
from tether.policy.explain import explain

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
ANALYST = "spiffe://tether.local/agent/analyst"


def explained(engine: CedarPolicyEngine, raw: dict[str, object]):  # type: ignore[no-untyped-def]
    request = parse_request(raw).to_request(engine.classification)
    return request, explain(engine, request)


def test_the_verdict_is_decides_and_every_applicable_policy_is_traced() -> None:
    engine = CedarPolicyEngine.load(EXAMPLES)
    request, explanation = explained(
        engine,
        {
            "agent": ANALYST,
            "call": {"tool": "payments.transfer", "action": "spend", "args": {"amount": 500}},
        },
    )
    assert explanation.outcome == engine.decide(request)
    assert explanation.outcome.decision is Decision.APPROVAL_REQUIRED
    traced = {t.policy.policy_id: t.satisfied for t in explanation.evaluated}
    assert traced == {
        "no-deep-payments": False,
        "transfers-up-to-1000": True,
        "transfers-over-100-need-approval": True,
        "transfers-are-positive": False,
    }
    matched = {t.policy.policy_id: t.policy.where for t in explanation.matched}
    assert matched["transfers-up-to-1000"] == "payments.cedar:2"
    assert matched["transfers-over-100-need-approval"] == "payments.cedar:11"


def test_a_satisfied_permit_shows_even_when_a_forbid_decides() -> None:
    engine = CedarPolicyEngine.load(EXAMPLES)
    _, explanation = explained(
        engine,
        {
            "agent": ANALYST,
            "call": {"tool": "payments.transfer", "action": "spend", "args": {"amount": -5}},
        },
    )
    assert explanation.outcome.decision is Decision.DENY
    assert {t.policy.policy_id for t in explanation.matched} == {
        "transfers-up-to-1000",
        "transfers-are-positive",
    }


def test_the_context_is_exactly_what_the_applicable_policies_read() -> None:
    engine = CedarPolicyEngine.load(EXAMPLES)
    _, explanation = explained(
        engine,
        {
            "agent": ANALYST,
            "call": {
                "tool": "payments.transfer",
                "action": "spend",
                "args": {"amount": 50, "memo": "not read by any policy"},
            },
        },
    )
    assert explanation.context == {
        "args": {"amount": 50},
        "delegation": {"depth": 0},  # no-deep-payments reads only its depth
    }
    as_json = explanation.to_json()
    assert as_json["decision"] == "allow" and as_json["context"] == explanation.context
    assert as_json["policies"][1]["file"] == "payments.cedar"


def test_no_applicable_policy_is_said_so() -> None:
    engine = CedarPolicyEngine.load(EXAMPLES)
    _, explanation = explained(
        engine, {"agent": ANALYST, "call": {"tool": "nope", "action": "read"}}
    )
    assert explanation.outcome.decision is Decision.DENY
    assert explanation.evaluated == () and explanation.context is None
    assert explanation.note == "no policy's head applies to read on nope"


def test_observe_mode_policies_are_traced_apart() -> None:
    engine = CedarPolicyEngine.load(EXAMPLES)
    _, explanation = explained(
        engine,
        {
            "agent": ANALYST,
            "call": {
                "tool": "crm.update",
                "action": "write",
                "dataset": "tickets",
                "args": {"discount": 5},
            },
        },
    )
    assert all(not t.policy.observed for t in explanation.evaluated)
    assert any(t.policy.observed for t in explanation.observing)
