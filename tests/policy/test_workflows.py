"""Declared workflows as a state machine: order, repeats, optional steps, bad definitions."""

from __future__ import annotations

import pytest

from tether.core.errors import ConfigurationError
from tether.core.scope import ActionKind, Scope
from tether.policy.flows import parse_workflows

REFUND = {
    "workflows": {
        "refund": {
            "start": ["lookup"],
            "steps": {
                "lookup": {
                    "uses": [{"tool": "orders.read", "actions": ["read"]}],
                    "next": ["check", "refund"],
                    "repeatable": True,
                },
                "check": {
                    "uses": [{"tool": "fraud.score", "actions": ["read"]}],
                    "next": ["refund"],
                    "optional": True,
                },
                "refund": {
                    "uses": [{"tool": "payments.refund", "actions": ["spend"]}],
                    "next": ["notify"],
                },
                "notify": {"uses": [{"tool": "email.send", "actions": ["send"]}]},
            },
        }
    }
}

R = ActionKind.READ


def test_order_repeats_and_optional_steps() -> None:
    flow = parse_workflows(REFUND, source="t")["refund"]
    assert flow.match(None, "payments.refund", ActionKind.SPEND) is None  # refund before lookup
    assert flow.match(None, "orders.read", R) == "lookup"
    assert flow.match("lookup", "orders.read", R) == "lookup"  # repeatable
    assert flow.match("lookup", "fraud.score", R) == "check"
    assert flow.match("lookup", "payments.refund", ActionKind.SPEND) == "refund"
    assert flow.match("check", "fraud.score", R) is None  # not repeatable
    assert flow.match("refund", "payments.refund", ActionKind.SPEND) is None
    assert flow.match("refund", "email.send", ActionKind.SEND) == "notify"
    assert flow.legal_after("notify") == ()
    assert "lookup (read orders.read)" in flow.describe(flow.legal_after(None))


def test_optional_steps_are_skippable_transitively() -> None:
    doc = {
        "workflows": {
            "w": {
                "start": ["a"],
                "steps": {
                    "a": {"uses": [{"tool": "t.a", "actions": ["read"]}], "next": ["b"]},
                    "b": {
                        "uses": [{"tool": "t.b", "actions": ["read"]}],
                        "next": ["c"],
                        "optional": True,
                    },
                    "c": {
                        "uses": [{"tool": "t.c", "actions": ["read"]}],
                        "next": ["d"],
                        "optional": True,
                    },
                    "d": {"uses": [{"tool": "t.d", "actions": ["read"]}]},
                },
            }
        }
    }
    flow = parse_workflows(doc, source="t")["w"]
    assert flow.legal_after("a") == ("b", "c", "d")


def test_scopes_must_stay_inside_the_workflow() -> None:
    flow = parse_workflows(REFUND, source="t")["refund"]
    assert flow.allows_scope(Scope.of("orders.read", ["read"]))
    assert not flow.allows_scope(Scope.of("orders.read", ["read", "write"]))
    assert not flow.allows_scope(Scope.of("shell.exec", ["execute"]))


@pytest.mark.parametrize(
    "doc",
    [
        {"workflow": {}},
        {
            "workflows": {
                "w": {
                    "start": ["x"],
                    "steps": {"a": {"uses": [{"tool": "t", "actions": ["read"]}]}},
                }
            }
        },
        {"workflows": {"w": {"start": ["a"], "steps": {"a": {"uses": []}}}}},
        {
            "workflows": {
                "w": {"start": ["a"], "steps": {"a": {"uses": [{"tool": "t", "actions": ["fly"]}]}}}
            }
        },
        {
            "workflows": {
                "w": {
                    "start": ["a"],
                    "steps": {"a": {"uses": [{"tool": "t", "actions": ["read"]}], "next": ["zz"]}},
                }
            }
        },
        {
            "workflows": {
                "w": {
                    "start": ["a"],
                    "steps": {"a": {"uses": [{"tool": "t", "actions": ["read"]}], "loop": True}},
                }
            }
        },
    ],
)
def test_bad_definitions_are_refused_with_the_path(doc: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_workflows(doc, source="workflows.yaml")
    assert caught.value.message.startswith("workflows.yaml: ")
