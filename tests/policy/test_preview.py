"""Task-open preview: could policy ever permit this action on this tool for this agent?"""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.core.identity import Workload
from tether.core.scope import ActionKind
from tether.core.task import Intent
from tether.policy.engine import CedarPolicyEngine

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
ANALYST = Workload.from_spiffe_id("spiffe://tether.local/agent/analyst")
HELPER = Workload.from_spiffe_id("spiffe://tether.local/agent/helper")
INTENT = Intent("support-triage", "answer a refund question", "user:alice@example.com")


@pytest.fixture(scope="module")
def engine() -> CedarPolicyEngine:
    return CedarPolicyEngine.load(EXAMPLES)


@pytest.mark.parametrize(
    ("agent", "tool", "action", "dataset", "permitted", "ids"),
    [
        # definitely permitted
        (ANALYST, "crm.query", ActionKind.READ, "crm", True, ["analyst-reads-crm"]),
        (HELPER, "crm.update", ActionKind.WRITE, "tickets", True, ["agents-update-crm"]),
        (ANALYST, "sandbox.run", ActionKind.EXECUTE, None, True, ["sandbox-runs-code"]),
        # permitted depending on each call's arguments (residual permits)
        (ANALYST, "payments.transfer", ActionKind.SPEND, None, True, ["transfers-up-to-1000"]),
        (ANALYST, "email.send", ActionKind.SEND, None, True, ["email-to-example-com"]),
        # definitely not
        (HELPER, "crm.query", ActionKind.READ, "crm", False, []),
        (ANALYST, "crm.update", ActionKind.WRITE, "payroll", False, ["restricted-is-read-only"]),
        (ANALYST, "shell.exec", ActionKind.EXECUTE, None, False, []),
        (ANALYST, "crm.query", ActionKind.DELETE, "crm", False, []),
        (ANALYST, "unknown.tool", ActionKind.READ, None, False, []),
    ],
)
def test_preview(
    engine: CedarPolicyEngine,
    agent: Workload,
    tool: str,
    action: ActionKind,
    dataset: str | None,
    permitted: bool,
    ids: list[str],
) -> None:
    preview = engine.preview_grant(agent, INTENT, tool, action, dataset)
    assert preview.permitted is permitted, preview.reason
    assert list(preview.policy_ids) == ids
    assert tool in preview.reason


def test_a_hard_forbid_that_always_applies_refuses_the_grant() -> None:
    sources = {n: (EXAMPLES / n).read_text() for n in ("schema.cedarschema", "catalog.yaml")}
    sources["p.cedar"] = (
        '@id("ok")\npermit(principal, action, resource == Tool::"t");\n'
        '@id("never-at-night")\nforbid(principal, action, resource == Tool::"t") '
        'when { context.intent.workflow == "night" };\n'
        '@id("ask")\n@approval_required("always ask")\n'
        "forbid(principal, action, resource);\n"
    )
    engine = CedarPolicyEngine.from_sources(sources)
    night = engine.preview_grant(ANALYST, Intent("night", "p", "o"), "t", ActionKind.READ, None)
    assert not night.permitted and night.policy_ids == ("never-at-night",)
    # an approval forbid asks per call; it does not stop the grant
    day = engine.preview_grant(ANALYST, Intent("day", "p", "o"), "t", ActionKind.READ, None)
    assert day.permitted and day.policy_ids == ("ok",)


def test_a_policy_that_errors_at_preview_is_not_permitted() -> None:
    sources = {n: (EXAMPLES / n).read_text() for n in ("schema.cedarschema", "catalog.yaml")}
    sources["p.cedar"] = (
        '@id("ok")\npermit(principal, action, resource == Tool::"t") '
        'when { 9223372036854775807 + (if context.intent.workflow == "x" then 1 else 0) > 0 };\n'
    )
    engine = CedarPolicyEngine.from_sources(sources)
    preview = engine.preview_grant(ANALYST, Intent("x", "p", "o"), "t", ActionKind.READ, None)
    assert not preview.permitted
    assert "could not be evaluated" in preview.reason
