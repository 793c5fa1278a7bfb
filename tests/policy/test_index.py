"""The index: evaluating only the policies that can apply gives the same answer as all of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cedarpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.core.call import Call
from tether.core.identity import Workload
from tether.core.ids import TaskId
from tether.core.scope import ActionKind, Classification, JSONValue
from tether.core.task import Intent
from tether.core.verdict import Decision, ReasonCode
from tether.policy.engine import CedarPolicyEngine
from tether.policy.index import PolicyIndex
from tether.service.ports import PolicyOutcome, PolicyRequest

SCHEMA = """
entity Agent; entity Tool;
type CallContext = {
  intent: { workflow: String, purpose: String, on_behalf_of: String },
  task_id: String,
  agent: { id: String, trust_domain: String, name: String },
  dataset: String, classification: String,
  args: { n1?: Long, n2?: Long, s?: String },
};
action read, write, delete, send, execute, spend appliesTo {
  principal: [Agent], resource: [Tool], context: CallContext };
"""
ACTIONS = [a.value for a in ActionKind]
#: Generated policies and requests use a few actions and tools, so that they often meet.
GEN_ACTIONS = ["read", "write", "spend"]
AGENTS = [f"spiffe://tether.local/agent/a{i}" for i in range(3)]
TOOLS = [f"t{i}" for i in range(3)]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"


def engine_for(text: str) -> CedarPolicyEngine:
    return CedarPolicyEngine.from_sources(
        {"schema.cedarschema": SCHEMA, "catalog.yaml": "datasets: {}", "gen.cedar": text}
    )


# -- generated policies and requests -----------------------------------------------------------

principals = st.sampled_from(["principal", *[f'principal == Agent::"{a}"' for a in AGENTS]])
actions = st.one_of(
    st.just("action"),
    st.sampled_from(GEN_ACTIONS).map(lambda a: f'action == Action::"{a}"'),
    st.lists(st.sampled_from(GEN_ACTIONS), min_size=1, max_size=3).map(
        lambda xs: "action in [" + ", ".join(f'Action::"{a}"' for a in xs) + "]"
    ),
)
resources = st.one_of(
    st.just("resource"),
    st.just("resource is Tool"),
    st.sampled_from(TOOLS).map(lambda t: f'resource == Tool::"{t}"'),
    st.sampled_from(TOOLS).map(lambda t: f'resource in Tool::"{t}"'),
)
conditions = st.one_of(
    st.just(""),
    st.just(""),
    st.integers(-5, 1500).map(
        lambda k: f"when {{ context.args has n1 && context.args.n1 <= {k} }}"
    ),
    st.integers(-5, 1500).map(lambda k: f"when {{ context.args has n2 && context.args.n2 > {k} }}"),
    st.just('when { context.classification == "restricted" }'),
    st.just('unless { resource == Tool::"t0" }'),
    st.just('when { context.intent.workflow == "w1" }'),
    # Records narrowed to the attributes read, or sent whole when read whole.
    st.just('when { context.intent has purpose && context.intent.purpose == "p" }'),
    st.just('when { context.intent == {workflow: "w1", purpose: "p", on_behalf_of: "o"} }'),
    st.just('when { context.agent.name == "a1" }'),
    st.just('when { context.args has s && context.args.s like "*@example.com" }'),
)


@st.composite
def policy_sets(draw: st.DrawFn) -> tuple[list[tuple[str, str]], set[str]]:
    """Up to 12 policies as ``(id, text)``, and the ids of the approval forbids among them."""
    count = draw(st.integers(1, 12))
    blocks, approvals = [], set()
    for i in range(count):
        effect = draw(st.sampled_from(["permit", "forbid"]))
        note = ""
        if effect == "forbid" and draw(st.booleans()):
            note = '@approval_required("a human decides")\n'
            approvals.add(f"g{i}")
        head = f"{draw(principals)}, {draw(actions)}, {draw(resources)}"
        blocks.append((f"g{i}", f'@id("g{i}")\n{note}{effect} ({head}) {draw(conditions)};'))
    return blocks, approvals


arg_values = st.one_of(st.none(), st.integers(-10, 2000), st.just("text"))
requests = st.fixed_dictionaries(
    {
        "agent": st.sampled_from([*AGENTS, "spiffe://tether.local/agent/other"]),
        "action": st.sampled_from([*map(ActionKind, GEN_ACTIONS), ActionKind.DELETE]),
        "tool": st.sampled_from([*TOOLS, "unknown"]),
        "classification": st.sampled_from([None, Classification.RESTRICTED]),
        "workflow": st.sampled_from(["w0", "w1"]),
        "n1": arg_values,
        "n2": arg_values,
        "s": st.sampled_from([None, "x@example.com", "x@evil.test", 7]),
    }
)


def tether_request(r: dict[str, Any]) -> PolicyRequest:
    args: dict[str, JSONValue] = {k: r[k] for k in ("n1", "n2", "s") if r[k] is not None}
    return PolicyRequest(
        Workload.from_spiffe_id(r["agent"]),
        Call(r["tool"], r["action"], None, args),
        r["classification"],
        Intent(r["workflow"], "p", "o"),
        TaskId("tsk_x"),
    )


def raw_request(r: dict[str, Any]) -> dict[str, Any]:
    """The request with the whole context, exactly as raw cedarpy would be asked."""
    agent = Workload.from_spiffe_id(r["agent"])
    return {
        "principal": {"type": "Agent", "id": agent.id},
        "action": {"type": "Action", "id": r["action"].value},
        "resource": {"type": "Tool", "id": r["tool"]},
        "context": {
            "intent": {"workflow": r["workflow"], "purpose": "p", "on_behalf_of": "o"},
            "task_id": "tsk_x",
            "agent": {"id": agent.id, "trust_domain": agent.trust_domain, "name": agent.name},
            "dataset": "",
            "classification": r["classification"].value if r["classification"] else "",
            "args": {k: r[k] for k in ("n1", "n2", "s") if r[k] is not None},
        },
    }


def ids(result: Any, names: list[str], key: str) -> set[str]:
    """Map cedarpy's positional ids (``policyN``) to the generated ``@id``s."""
    if key == "errors":
        found = [e.split("`")[1] for e in result.diagnostics.errors]
    else:
        found = list(result.diagnostics.reasons)
    return {names[int(f.removeprefix("policy"))] for f in found}


def expected_matches(
    outcome: PolicyOutcome,
    blocks: list[tuple[str, str]],
    approvals: set[str],
    request: dict[str, Any],
) -> None:
    """Check the engine's folded outcome against raw cedarpy over the *full* policy set."""
    names = [name for name, _ in blocks]
    full = cedarpy.PolicySet.from_str("\n".join(text for _, text in blocks))
    raw = cedarpy.is_authorized(raw_request(request), full, [])
    if raw.diagnostics.errors:
        assert outcome.decision is Decision.DENY
        assert outcome.reasons[0].code is ReasonCode.POLICY_ERROR
        assert set(outcome.policy_ids) == ids(raw, names, "errors")
        return
    determining = ids(raw, names, "reasons")
    if raw.allowed:
        assert outcome.decision is Decision.ALLOW
        assert set(outcome.policy_ids) == determining
        return
    hard = determining - approvals
    if not determining:
        assert (outcome.decision, outcome.reasons[0].code) == (
            Decision.DENY,
            ReasonCode.NO_POLICY_PERMITS,
        )
    elif hard:
        assert (outcome.decision, outcome.reasons[0].code) == (
            Decision.DENY,
            ReasonCode.POLICY_FORBIDS,
        )
        assert set(outcome.policy_ids) == hard
    else:
        without = "\n".join(text for name, text in blocks if name not in approvals)
        allowed_without = cedarpy.is_authorized(raw_request(request), without, []).allowed
        if allowed_without:
            assert outcome.decision is Decision.APPROVAL_REQUIRED
            assert set(outcome.policy_ids) == determining
        else:
            assert outcome.reasons[0].code is ReasonCode.NO_POLICY_PERMITS


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(policy_sets(), st.lists(requests, min_size=1, max_size=15))
def test_the_indexed_subset_decides_like_the_full_set(
    generated: tuple[list[tuple[str, str]], set[str]], batch: list[dict[str, Any]]
) -> None:
    blocks, approvals = generated
    engine = engine_for("\n".join(text for _, text in blocks))
    for request in batch:
        outcome = engine.decide(tether_request(request))
        expected_matches(outcome, blocks, approvals, request)


# -- a large set evaluates only what applies ----------------------------------------------------


def thousand_policies() -> list[tuple[str, str]]:
    out = []
    for i in range(1000):
        tool, action = f"svc{i % 200}.op", ACTIONS[i % 6]
        if i % 10 == 9:
            text = (
                f'@id("gen-{i}")\nforbid(principal, action == Action::"{action}", '
                f'resource == Tool::"{tool}") when {{ context.classification == "restricted" }};'
            )
        else:
            text = (
                f'@id("gen-{i}")\npermit(principal, action == Action::"{action}", '
                f'resource == Tool::"{tool}") when {{ context.args has n1 && '
                f"context.args.n1 <= {i} }};"
            )
        out.append((f"gen-{i}", text))
    out.append(
        ("no-shell", '@id("no-shell")\nforbid(principal, action == Action::"execute", resource);')
    )
    return out


def test_a_thousand_policies_evaluate_only_the_few_that_apply() -> None:
    blocks = thousand_policies()
    engine = engine_for("\n".join(text for _, text in blocks))
    full = cedarpy.PolicySet.from_str("\n".join(text for _, text in blocks))
    assert len(full) == 1001
    for n, (tool, action) in enumerate(
        [("svc12.op", "read"), ("svc19.op", "write"), ("svc9.op", "spend"), ("nope", "read")]
    ):
        subset = engine.snapshot.index.subset(ActionKind(action), tool)
        assert len(subset.policies) <= 5
        assert len(subset.evaluation or []) == len(subset.policies)
        request = {
            "agent": AGENTS[0],
            "action": ActionKind(action),
            "tool": tool,
            "classification": Classification.RESTRICTED if n % 2 else None,
            "workflow": "w0",
            "n1": 600,
            "n2": None,
            "s": None,
        }
        expected_matches(engine.decide(tether_request(request)), blocks, set(), request)
    shell = engine.snapshot.index.subset(ActionKind.EXECUTE, "svc4.op")
    assert [p.policy_id for p in shell.policies][-1] == "no-shell"


# -- buckets and cache ---------------------------------------------------------------------------


def test_heads_are_bucketed_by_action_and_tool() -> None:
    engine = engine_for(
        '@id("any")\npermit(principal, action, resource);\n'
        '@id("reads")\npermit(principal, action == Action::"read", resource);\n'
        '@id("list")\npermit(principal, action in [Action::"read", Action::"write"], '
        'resource == Tool::"t1");\n'
        '@id("is")\nforbid(principal, action == Action::"delete", resource is Tool);\n'
        '@id("in")\nforbid(principal, action == Action::"delete", resource in Tool::"t1");\n'
        '@id("t2")\npermit(principal, action == Action::"read", resource == Tool::"t2");\n'
    )
    index = engine.snapshot.index

    def names(action: ActionKind, tool: str) -> list[str]:
        return [p.policy_id for p in index.candidates(action, tool)]

    assert names(ActionKind.READ, "t1") == ["any", "reads", "list"]
    assert names(ActionKind.READ, "t2") == ["any", "reads", "t2"]
    assert names(ActionKind.READ, "t9") == ["any", "reads"]
    assert names(ActionKind.WRITE, "t1") == ["any", "list"]
    assert names(ActionKind.DELETE, "t1") == ["any", "is", "in"]
    assert names(ActionKind.SEND, "t1") == ["any"]


def test_tools_without_specific_policies_share_one_subset() -> None:
    engine = engine_for('@id("reads")\npermit(principal, action == Action::"read", resource);')
    index = engine.snapshot.index
    first = index.subset(ActionKind.READ, "a")
    assert index.subset(ActionKind.READ, "b") is first
    for i in range(500):
        index.subset(ActionKind.READ, f"tool-{i}")
    assert index.cached == 1


def test_the_cache_is_bounded() -> None:
    engine = engine_for("\n".join(text for _, text in thousand_policies()))
    index = PolicyIndex(engine.snapshot.bundle.policies, cache_size=8)
    for i in range(200):
        index.subset(ActionKind(ACTIONS[i % 6]), f"svc{i}.op")
    assert index.cached <= 8
    # an evicted entry is rebuilt and still answers the same
    again = index.subset(ActionKind.READ, "svc0.op")
    assert [p.policy_id for p in again.policies] == ["gen-0", "gen-600"]


def test_the_examples_index_as_expected() -> None:
    engine = CedarPolicyEngine.load(EXAMPLES)
    subset = engine.snapshot.index.subset(ActionKind.SPEND, "payments.transfer")
    assert {p.policy_id for p in subset.policies} == {
        "transfers-up-to-1000",
        "transfers-over-100-need-approval",
        "transfers-are-positive",
        "no-deep-payments",
    }
    assert subset.refs.top == {"args", "delegation"} and subset.refs.args == {"amount"}
