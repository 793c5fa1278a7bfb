"""Asking Cedar cheaply: the direct entry answers as cedarpy's public function does, the folded
outcome is remembered per subset, action and tool only, and a reload never answers with an
outcome folded from the policies it replaced."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cedarpy
import pytest

from tether.core.call import Call
from tether.core.identity import Workload
from tether.core.ids import TaskId
from tether.core.scope import ActionKind
from tether.core.task import Intent
from tether.core.verdict import Decision, Obligation, ObligationKind, Reason, ReasonCode
from tether.policy.answer import Cedar, CedarAnswer, answer_key, parse
from tether.policy.engine import CedarPolicyEngine
from tether.policy.index import FOLD_MEMO
from tether.service.ports import PolicyOutcome, PolicyRequest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
ANALYST = Workload.from_spiffe_id("spiffe://tether.local/agent/analyst")

#: Parsed from text, so Cedar names them policy0, policy1, policy2 (``@id`` is an annotation).
PROBED = (
    '@id("small") permit(principal, action, resource) when { context.n < 10 };\n'
    '@id("no-x") forbid(principal, action, resource) when { context.n == 7 };\n'
    '@id("typed") forbid(principal, action == Action::"send", resource) '
    'when { context.to like "*@x" };\n'
)


def request(action: str, context: str | None) -> dict[str, object]:
    cedar: dict[str, object] = {
        "principal": {"type": "Agent", "id": 'a"b\n'},
        "action": {"type": "Action", "id": action},
        "resource": {"type": "Tool", "id": "t"},
    }
    if context is not None:
        cedar["context"] = context
    return cedar


@pytest.mark.parametrize(
    ("action", "context", "expected"),
    [
        ("read", '{"n":3}', CedarAnswer("Allow", ("policy0",), ())),
        ("read", '{"n":7}', CedarAnswer("Deny", ("policy1",), ())),
        ("read", '{"n":12}', CedarAnswer("Deny", (), ())),
        ("read", None, None),  # every policy errors: no `n` in an empty context
        ("send", '{"n":1,"to":["a@x"]}', None),  # `like` on a set: a type error
    ],
)
def test_the_direct_entry_answers_as_the_public_function(
    action: str, context: str | None, expected: CedarAnswer | None
) -> None:
    direct, public = Cedar(), Cedar(direct=False)
    assert direct.direct and not public.direct  # the locked cedarpy passes the probe
    policies = cedarpy.PolicySet.from_str(PROBED)
    entities = cedarpy.Entities.from_json_str("[]")
    fast = parse(direct.ask(request(action, context), policies, entities))
    slow = parse(public.ask(request(action, context), policies, entities))
    assert fast == slow
    if expected is not None:
        assert fast == expected
    else:
        assert fast.errors  # Cedar skips a policy that errors; tether denies (fold)


def test_the_key_drops_the_timings_and_nothing_else() -> None:
    head = '{"decision":"Allow","diagnostics":{"reason":["p"],"errors":[]}'
    assert answer_key(head + ',"metrics":{"authz_duration_micros":7,"b":0}}') == head
    assert answer_key(head + ',"metrics":{}}') == head
    # Anything but numbers after the timings: not a shape the key may drop, so no memo.
    assert answer_key(head + ',"metrics":{"a":1},"reason":["q"]}') is None
    assert answer_key(head + ',"metrics":{"a":"x"}}') is None
    assert answer_key(head + "}") == head + "}"


def decide(engine: CedarPolicyEngine, tool: str, action: ActionKind) -> PolicyOutcome:
    return engine.decide(
        PolicyRequest(ANALYST, Call(tool, action), None, Intent("w", "p", "o"), TaskId("tsk_x"))
    )


def touch(path: Path, text: str) -> None:
    """Write ``text`` and move mtime forward, so the change shows on coarse clocks too."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    st = path.stat()
    if st.st_mtime_ns <= before:
        os.utime(path, ns=(st.st_atime_ns, before + 1_000_000))


def test_a_reload_is_folded_afresh_when_cedar_answers_the_same(tmp_path: Path) -> None:
    """After a reload Cedar names the same policy ids; what they carry changed."""
    policy_dir = tmp_path / "policies"
    shutil.copytree(EXAMPLES, policy_dir)
    engine = CedarPolicyEngine.load(policy_dir)
    for _ in range(2):  # the second answer is the remembered one
        allowed = decide(engine, "crm.query", ActionKind.READ)
        assert allowed.obligations == (
            Obligation(ObligationKind.ROW_CAP, "500", "analyst-reads-crm"),
        )
        forbidden = decide(engine, "shell.exec", ActionKind.EXECUTE)
        assert "code may only run in the sandbox" in forbidden.reasons[0].message

    crm = policy_dir / "crm.cedar"
    touch(crm, crm.read_text().replace('@row_cap("500")', '@row_cap("10")'))
    execution = policy_dir / "execution.cedar"
    old_reason = "code may only run in the sandbox (sandbox.run)"
    assert old_reason in execution.read_text()
    touch(execution, execution.read_text().replace(old_reason, "use the sandbox"))
    result = engine.check_for_changes()
    assert result is not None and result.ok and result.changed

    allowed = decide(engine, "crm.query", ActionKind.READ)
    assert allowed.obligations == (Obligation(ObligationKind.ROW_CAP, "10", "analyst-reads-crm"),)
    forbidden = decide(engine, "shell.exec", ActionKind.EXECUTE)
    assert forbidden.reasons == (
        Reason(
            ReasonCode.POLICY_FORBIDS,
            "policy execute-only-in-sandbox forbids execute on shell.exec: use the sandbox",
        ),
    )


def reads_anything() -> CedarPolicyEngine:
    """One policy for every tool: each tool's call gets the same answer from Cedar."""
    return CedarPolicyEngine.from_sources(
        {
            "schema.cedarschema": (EXAMPLES / "schema.cedarschema").read_text(),
            "catalog.yaml": "datasets: {}\n",
            "any.cedar": '@id("reads") permit(principal, action == Action::"read", resource);',
        }
    )


def test_the_same_answer_for_another_tool_is_folded_for_that_tool() -> None:
    engine = reads_anything()
    for tool in ("a.one", "b.two", "a.one"):
        outcome = decide(engine, tool, ActionKind.READ)
        assert outcome.decision is Decision.ALLOW
        assert outcome.reasons[0].message == f"read on {tool} permitted by policy reads"
    denied = decide(engine, "a.one", ActionKind.WRITE)
    assert denied.reasons[0].message == "no policy permits write on a.one"


def test_a_subset_remembers_a_bounded_number_of_outcomes() -> None:
    engine = reads_anything()
    subset = engine.snapshot.index.subset(ActionKind.READ, "any")
    outcome = decide(engine, "t0", ActionKind.READ)
    keys = [(ActionKind.READ, f"t{i}", "answer") for i in range(FOLD_MEMO + 1)]
    for key in keys:
        subset.remember(key, outcome)
    assert subset.folded(keys[0]) is None
    assert subset.folded(keys[1]) is outcome and subset.folded(keys[-1]) is outcome
