"""JSON arguments become Cedar values faithfully or the call is denied; only read parts go."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tether.core.call import Call
from tether.core.identity import Workload
from tether.core.ids import TaskId
from tether.core.scope import ActionKind, JSONValue
from tether.core.task import Intent
from tether.core.verdict import Decision, ReasonCode
from tether.policy.context import (
    ALL_REFS,
    MAX_DEPTH,
    MAX_VALUES,
    CallFacts,
    ContextRefs,
    Unrepresentable,
    build_context,
    scan_context_refs,
    to_cedar_args,
)
from tether.policy.engine import CedarPolicyEngine
from tether.service.ports import PolicyRequest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
SCHEMA = """
entity Agent; entity Tool;
type CallContext = {
  intent: { workflow: String, purpose: String, on_behalf_of: String },
  task_id: String,
  agent: { id: String, trust_domain: String, name: String },
  dataset: String, classification: String,
  args: { price?: decimal, count?: Long, tags?: Set<String>, filter?: { field?: String } },
};
action read, write, delete, send, execute, spend appliesTo {
  principal: [Agent], resource: [Tool], context: CallContext };
"""
POLICIES = """
@id("cheap")
permit (principal, action == Action::"spend", resource == Tool::"shop")
when { context.args has price && context.args.price.lessThanOrEqual(decimal("9.99")) };

@id("tagged")
permit (principal, action == Action::"read", resource == Tool::"search")
when { context.args has tags && context.args.tags.contains("public") };

@id("filtered")
permit (principal, action == Action::"read", resource == Tool::"filter")
when { context.args has filter && context.args.filter has field
       && context.args.filter.field == "name" };

@id("count")
permit (principal, action == Action::"read", resource == Tool::"count")
when { context.args has count && context.args.count >= 0 };
"""


@pytest.fixture(scope="module")
def engine() -> CedarPolicyEngine:
    return CedarPolicyEngine.from_sources(
        {
            "schema.cedarschema": SCHEMA,
            "catalog.yaml": "datasets: {}",
            "p.cedar": POLICIES,
        }
    )


def decide(
    engine: CedarPolicyEngine, tool: str, action: ActionKind, args: dict[str, JSONValue]
) -> tuple[Decision, ReasonCode, str]:
    outcome = engine.decide(
        PolicyRequest(
            Workload.from_spiffe_id("spiffe://tether.local/agent/a"),
            Call(tool, action, None, args),
            None,
            Intent("w", "p", "o"),
            TaskId("tsk_x"),
        )
    )
    return outcome.decision, outcome.reasons[0].code, outcome.reasons[0].message


# -- conversion ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cedar"),
    [
        ("text", "text"),
        (True, True),
        (0, 0),
        (2**63 - 1, 2**63 - 1),
        (-(2**63), -(2**63)),
        (3.0, 3),
        (-0.0, 0),
        (1e15, 10**15),
        (2.5, {"__extn": {"fn": "decimal", "arg": "2.5"}}),
        (-0.0001, {"__extn": {"fn": "decimal", "arg": "-0.0001"}}),
        (1234.5678, {"__extn": {"fn": "decimal", "arg": "1234.5678"}}),
        ([1, "a", [True]], [1, "a", [True]]),
        ({"a": {"b": 1}, "gone": None}, {"a": {"b": 1}}),
    ],
)
def test_values_convert(value: JSONValue, cedar: object) -> None:
    assert to_cedar_args({"x": value}, None) == {"x": cedar}


@pytest.mark.parametrize(
    ("value", "path", "why"),
    [
        (2**63, "x", "64-bit"),
        (-(2**63) - 1, "x", "64-bit"),
        (1e19, "x", "64-bit"),
        (0.00001, "x", "4 decimal places"),
        (0.1 + 0.2, "x", "4 decimal places"),
        (1e15 + 0.5, "x", "decimal range"),
        (math.nan, "x", "finite"),
        (math.inf, "x", "finite"),
        ([1, None], "x[1]", "null inside a list"),
        ({"__entity": {"type": "Agent", "id": "admin"}}, "x.__entity", "reserves"),
        ({"__extn": {"fn": "ip", "arg": "1.2.3.4"}}, "x.__extn", "reserves"),
        ({"ok": [{"__expr": "true"}]}, "x.ok[0].__expr", "reserves"),
    ],
)
def test_values_without_a_faithful_cedar_form_are_refused(
    value: JSONValue, path: str, why: str
) -> None:
    with pytest.raises(Unrepresentable) as info:
        to_cedar_args({"x": value}, None)
    assert info.value.path == path
    assert why in str(info.value)
    assert f"argument {path} cannot be represented for policy" in str(info.value)


def test_nesting_is_bounded() -> None:
    fits: JSONValue = 1
    for _ in range(MAX_DEPTH - 1):
        fits = [fits]
    to_cedar_args({"x": fits}, None)
    with pytest.raises(Unrepresentable, match="nested more than"):
        to_cedar_args({"x": [fits]}, None)


def test_size_is_bounded() -> None:
    to_cedar_args({"x": list(range(MAX_VALUES - 1))}, None)
    with pytest.raises(Unrepresentable, match="more than"):
        to_cedar_args({"x": list(range(MAX_VALUES))}, None)


def test_only_named_arguments_are_converted() -> None:
    args: dict[str, JSONValue] = {"keep": 1, "skip": math.nan}
    assert to_cedar_args(args, frozenset({"keep", "absent"})) == {"keep": 1}


# -- what a policy reads -------------------------------------------------------------------------


def refs_of(condition: str) -> ContextRefs:
    import cedarpy

    text = f"permit(principal, action, resource) when {{ {condition} }};"
    est = json.loads(cedarpy.policies_to_json_str(text))["staticPolicies"]["policy0"]
    return scan_context_refs(est["conditions"])


@pytest.mark.parametrize(
    ("condition", "top", "args"),
    [
        ("true", set(), set()),
        ('context.dataset == "x"', {"dataset"}, set()),
        ('context.intent.workflow == "x"', {"intent"}, set()),
        ("context.args has a && context.args.a == 1", {"args"}, {"a"}),
        ('context["args"]["b c"] == 1', {"args"}, {"b c"}),
        ("context.args has a.b", {"args"}, {"a"}),
        ("context has task_id", {"task_id"}, set()),
        ('context.args like "x"', {"args"}, None),
        ("context.args == {}", {"args"}, None),
        ("context == {}", None, None),
        ('context.agent.name == "a" && context.args.n == 1', {"agent", "args"}, {"n"}),
    ],
)
def test_context_refs(condition: str, top: set[str] | None, args: set[str] | None) -> None:
    refs = refs_of(condition)
    assert refs.top == (None if top is None else frozenset(top))
    assert refs.args == (None if args is None else frozenset(args))


@pytest.mark.parametrize(
    ("condition", "attrs", "whole"),
    [
        ('context.intent.workflow == "x"', {("intent", "workflow")}, set()),
        ("context.intent has purpose", {("intent", "purpose")}, set()),
        ('context.delegation.chain.contains("a")', {("delegation", "chain")}, set()),
        ('context.intent == {workflow: "x"}', set(), {"intent"}),
        ('context.agent.name == "a" && context.agent like "x"', {("agent", "name")}, {"agent"}),
        ("context has intent", set(), set()),
        ("context.args.n == 1", set(), set()),
    ],
)
def test_record_attributes_read(
    condition: str, attrs: set[tuple[str, str]], whole: set[str]
) -> None:
    refs = refs_of(condition)
    assert refs.record_attrs == attrs and refs.whole_records == whole
    assert refs_of("context == {}").record_attrs is None  # the whole context: all of it


def test_only_the_record_attributes_read_are_sent() -> None:
    facts = CallFacts("wf", "p", "o", "tsk", "id", "td", "n", "crm", "confidential", ("root",))
    refs = refs_of('context.intent.workflow == "wf" && context.delegation.depth < 2').union(
        refs_of("context has agent")
    )
    assert build_context(facts, {}, refs) == {
        "intent": {"workflow": "wf"},
        "agent": {},
        "delegation": {"depth": 1},
    }
    # Another policy of the subset reading the intent whole: all of it is sent.
    wider = refs.union(refs_of('context.intent == {workflow: "wf"}'))
    assert build_context(facts, {}, wider)["intent"] == {
        "workflow": "wf",
        "purpose": "p",
        "on_behalf_of": "o",
    }


def test_context_holds_only_what_is_read() -> None:
    facts = CallFacts("wf", "p", "o", "tsk", "id", "td", "n", "crm", "confidential")
    only = build_context(facts, {"a": 1, "b": 2}, ContextRefs(frozenset({"args"}), frozenset("a")))
    assert only == {"args": {"a": 1}}
    full = build_context(facts, {"a": 1}, ALL_REFS)
    assert full == {
        "intent": {"workflow": "wf", "purpose": "p", "on_behalf_of": "o"},
        "task_id": "tsk",
        "agent": {"id": "id", "trust_domain": "td", "name": "n"},
        "dataset": "crm",
        "classification": "confidential",
        "args": {"a": 1},
        "delegation": {"depth": 0, "chain": [], "root": "id"},
        "dataflow": {"highest": "", "rank": -1},
        "provenance": {"checked": False, "untrusted": [], "sources": [], "outcome": ""},
    }


# -- through the engine --------------------------------------------------------------------------


def test_a_decimal_argument_is_compared_as_decimal(engine: CedarPolicyEngine) -> None:
    assert decide(engine, "shop", ActionKind.SPEND, {"price": 9.99})[0] is Decision.ALLOW
    assert decide(engine, "shop", ActionKind.SPEND, {"price": 5})[1] is ReasonCode.POLICY_ERROR
    assert decide(engine, "shop", ActionKind.SPEND, {"price": 10.01})[0] is Decision.DENY


def test_a_too_precise_float_denies_with_a_reason(engine: CedarPolicyEngine) -> None:
    decision, code, message = decide(engine, "shop", ActionKind.SPEND, {"price": 9.123456})
    assert (decision, code) == (Decision.DENY, ReasonCode.POLICY_ERROR)
    assert "argument price cannot be represented for policy" in message


def test_a_list_is_a_set(engine: CedarPolicyEngine) -> None:
    args: dict[str, JSONValue] = {"tags": ["internal", "public", "public"]}
    assert decide(engine, "search", ActionKind.READ, args)[0] is Decision.ALLOW
    assert decide(engine, "search", ActionKind.READ, {"tags": []})[0] is Decision.DENY


def test_a_record_is_a_record(engine: CedarPolicyEngine) -> None:
    assert decide(engine, "filter", ActionKind.READ, {"filter": {"field": "name"}})[0] is (
        Decision.ALLOW
    )
    assert decide(engine, "filter", ActionKind.READ, {"filter": {}})[0] is Decision.DENY


def test_deep_nesting_denies(engine: CedarPolicyEngine) -> None:
    deep: JSONValue = {"field": "name"}
    for _ in range(MAX_DEPTH + 1):
        deep = {"field": deep}
    decision, code, message = decide(engine, "filter", ActionKind.READ, {"filter": deep})
    assert (decision, code) == (Decision.DENY, ReasonCode.POLICY_ERROR)
    assert "nested more than" in message


def test_an_entity_smuggled_in_an_argument_denies(engine: CedarPolicyEngine) -> None:
    smuggled: dict[str, JSONValue] = {"filter": {"__entity": {"type": "Agent", "id": "root"}}}
    decision, code, _ = decide(engine, "filter", ActionKind.READ, smuggled)
    assert (decision, code) == (Decision.DENY, ReasonCode.POLICY_ERROR)


def test_large_integers(engine: CedarPolicyEngine) -> None:
    assert decide(engine, "count", ActionKind.READ, {"count": 2**63 - 1})[0] is Decision.ALLOW
    decision, code, message = decide(engine, "count", ActionKind.READ, {"count": 2**64})
    assert (decision, code) == (Decision.DENY, ReasonCode.POLICY_ERROR)
    assert "64-bit" in message


def test_text_cedar_cannot_take_denies_not_raises(engine: CedarPolicyEngine) -> None:
    decision, code, _ = decide(engine, "filter", ActionKind.READ, {"filter": {"field": "\ud800"}})
    assert (decision, code) == (Decision.DENY, ReasonCode.POLICY_ERROR)


def test_arguments_no_policy_reads_do_not_matter(engine: CedarPolicyEngine) -> None:
    args: dict[str, JSONValue] = {"count": 1, "blob": math.nan, "huge": 2**80}
    assert decide(engine, "count", ActionKind.READ, args)[0] is Decision.ALLOW
