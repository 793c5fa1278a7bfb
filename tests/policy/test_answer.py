"""Asking Cedar cheaply: the direct entry answers as cedarpy's public function does, the folded
outcome is remembered per subset, action and tool only, a whole request asked before is answered
without asking Cedar again (errorless answers, calls no observe-mode policy applies to, bounded),
and a reload never answers with an outcome folded or remembered from the policies it replaced."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cedarpy
import pytest

from tether.core.call import Call
from tether.core.identity import Workload
from tether.core.ids import TaskId
from tether.core.scope import ActionKind, JSONValue
from tether.core.task import Intent
from tether.core.verdict import Decision, Obligation, ObligationKind, Reason, ReasonCode
from tether.policy.answer import Cedar, CedarAnswer, answer_key, parse
from tether.policy.engine import CedarPolicyEngine
from tether.policy.index import DECIDED_CONTEXT_CHARS, DECIDED_MEMO, FOLD_MEMO, DecidedMemo
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


def decide(
    engine: CedarPolicyEngine,
    tool: str,
    action: ActionKind,
    args: dict[str, JSONValue] | None = None,
    agent: Workload = ANALYST,
) -> PolicyOutcome:
    call = Call(tool, action, None, args or {})
    return engine.decide(PolicyRequest(agent, call, None, Intent("w", "p", "o"), TaskId("tsk_x")))


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


class CountingCedar(Cedar):
    """The real Cedar, counting the requests it is asked."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    def ask(self, request: Mapping[str, Any], policies: Any, entities: Any) -> str:
        self.asked += 1
        return super().ask(request, policies, entities)


def counted(engine: CedarPolicyEngine, monkeypatch: pytest.MonkeyPatch) -> CountingCedar:
    cedar = CountingCedar()
    monkeypatch.setattr(engine, "_cedar", cedar)
    return cedar


def test_a_request_asked_before_is_answered_without_asking_cedar_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = CedarPolicyEngine.load(EXAMPLES)
    cedar = counted(engine, monkeypatch)
    first = decide(engine, "crm.query", ActionKind.READ)
    assert first.decision is Decision.ALLOW, first.reasons
    assert decide(engine, "crm.query", ActionKind.READ) == first
    assert cedar.asked == 1
    # Anything Cedar reads differs, and Cedar is asked: another agent, tool, action, context.
    other = Workload.from_spiffe_id("spiffe://tether.local/agent/support")
    decide(engine, "crm.query", ActionKind.READ, agent=other)
    decide(engine, "shell.exec", ActionKind.EXECUTE)
    assert cedar.asked == 3
    to_example = decide(engine, "email.send", ActionKind.SEND, {"to": "a@example.com"})
    to_elsewhere = decide(engine, "email.send", ActionKind.SEND, {"to": "a@elsewhere.org"})
    assert cedar.asked == 5
    assert to_example.decision is Decision.ALLOW
    assert to_elsewhere.decision is Decision.DENY
    # The same arguments again: remembered, each with its own outcome.
    assert decide(engine, "email.send", ActionKind.SEND, {"to": "a@example.com"}) == to_example
    assert decide(engine, "email.send", ActionKind.SEND, {"to": "a@elsewhere.org"}) == to_elsewhere
    assert cedar.asked == 5


def test_an_answer_with_errors_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = CedarPolicyEngine.load(EXAMPLES)
    cedar = counted(engine, monkeypatch)
    for _ in range(2):
        # `<=` on a string: every transfer policy errors, and the call is denied.
        outcome = decide(engine, "payments.transfer", ActionKind.SPEND, {"amount": "lots"})
        assert outcome.decision is Decision.DENY
        assert outcome.reasons[0].code is ReasonCode.POLICY_ERROR, outcome.reasons
    assert cedar.asked == 2


def test_a_call_an_observe_policy_applies_to_is_asked_and_observed_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = CedarPolicyEngine.load(EXAMPLES)
    cedar = counted(engine, monkeypatch)
    for _ in range(2):
        outcome = decide(engine, "crm.update", ActionKind.WRITE, {"discount": 5})
        assert [o.policy_id for o in outcome.observed] == ["discounts-over-3-need-review"]
    # Each time: the enforcing policies, then the observe-mode ones.
    assert cedar.asked == 4


def test_a_reload_forgets_the_requests_asked_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy_dir = tmp_path / "policies"
    shutil.copytree(EXAMPLES, policy_dir)
    engine = CedarPolicyEngine.load(policy_dir)
    cedar = counted(engine, monkeypatch)
    assert decide(engine, "email.send", ActionKind.SEND, {"to": "a@corp.test"}).decision is (
        Decision.DENY
    )
    email = policy_dir / "email.cedar"
    touch(email, email.read_text().replace('"*@example.com"', '"*@corp.test"'))
    result = engine.check_for_changes()
    assert result is not None and result.ok and result.changed
    allowed = decide(engine, "email.send", ActionKind.SEND, {"to": "a@corp.test"})
    assert allowed.decision is Decision.ALLOW, allowed.reasons
    assert cedar.asked == 2


def test_the_memo_of_requests_is_bounded() -> None:
    memo = DecidedMemo()
    outcome = decide(reads_anything(), "t0", ActionKind.READ)
    keys = [DecidedMemo.key(ActionKind.READ, f"t{i}", "a", "") for i in range(DECIDED_MEMO + 1)]
    for key in keys:
        assert key is not None
        memo.remember(key, outcome)
    assert len(memo) == DECIDED_MEMO
    assert keys[0] is not None and memo.get(keys[0]) is None
    assert keys[-1] is not None and memo.get(keys[-1]) is outcome
    # A context too long to keep is never remembered: asked every time.
    assert DecidedMemo.key(ActionKind.READ, "t", "a", "x" * DECIDED_CONTEXT_CHARS) is not None
    assert DecidedMemo.key(ActionKind.READ, "t", "a", "x" * (DECIDED_CONTEXT_CHARS + 1)) is None


def test_a_long_context_is_asked_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = CedarPolicyEngine.load(EXAMPLES)
    cedar = counted(engine, monkeypatch)
    long_to = "a" * DECIDED_CONTEXT_CHARS + "@example.com"
    for _ in range(2):
        outcome = decide(engine, "email.send", ActionKind.SEND, {"to": long_to})
        assert outcome.decision is Decision.ALLOW, outcome.reasons
    assert cedar.asked == 2
