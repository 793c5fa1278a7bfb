"""``context.dataflow`` through the whole service: a Cedar rule an operator writes on the task's
label applies once the task has read confidential data, and to the agents it delegates to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support import INTENT, copy_policies, make_runtime
from tether.core.call import Call
from tether.core.errors import ConfigurationError
from tether.core.identity import Workload
from tether.core.ids import TaskId
from tether.core.scope import ActionKind, Scope
from tether.core.task import Intent
from tether.core.verdict import Decision, ReasonCode, Verdict
from tether.policy.engine import CedarPolicyEngine
from tether.runtime import Runtime, packaged_policies
from tether.service.clock import ManualClock

ANALYST = Workload.from_spiffe_id("spiffe://tether.local/agent/analyst")
HELPER = Workload.from_spiffe_id("spiffe://tether.local/agent/helper")

WRITE_DOWN = """
@id("notes-are-writable")
permit (principal, action == Action::"write", resource == Tool::"notes.write");

@id("no-write-down")
@reason("this task has read confidential data; it may not write to a public dataset")
forbid (principal, action == Action::"write", resource)
when { context.dataflow.rank >= 2 && context.classification == "public" };
"""
NOTES = Scope.from_json({"tool": "notes.write", "actions": ["write"], "datasets": ["docs"]})
CRM = Scope.from_json({"tool": "crm.query", "actions": ["read"], "datasets": ["crm", "docs"]})
WRITE = Call("notes.write", ActionKind.WRITE, "docs", {})


@pytest.fixture
def rt(tmp_path: Path, clock: ManualClock) -> Iterator[Runtime]:
    policies = copy_policies(tmp_path / "policies")
    (policies / "writedown.cedar").write_text(WRITE_DOWN, encoding="utf-8")
    runtime = make_runtime(tmp_path / "data", clock, policies)
    yield runtime
    runtime.close()


def forbidden_by_write_down(verdict: Verdict) -> bool:
    return (
        verdict.decision is Decision.DENY
        and verdict.reasons[0].code is ReasonCode.POLICY_FORBIDS
        and verdict.policy_ids == ("no-write-down",)
    )


def test_a_rule_on_the_label_applies_after_a_confidential_read(rt: Runtime) -> None:
    opened = rt.tasks.open_task(ANALYST, Intent(**INTENT), [CRM, NOTES], ttl_seconds=600)
    assert [s.tool for s in opened.grant.scopes] == ["crm.query", "notes.write"]
    assert rt.authorizer.authorize(ANALYST, opened.token, WRITE).decision is Decision.ALLOW
    public = Call("crm.query", ActionKind.READ, "docs", {})
    assert rt.authorizer.authorize(ANALYST, opened.token, public).decision is Decision.ALLOW
    # Public and internal reads leave the rule alone (rank 0 < 2).
    assert rt.authorizer.authorize(ANALYST, opened.token, WRITE).decision is Decision.ALLOW
    confidential = Call("crm.query", ActionKind.READ, "crm", {})
    assert rt.authorizer.authorize(ANALYST, opened.token, confidential).decision is Decision.ALLOW
    after = rt.authorizer.authorize(ANALYST, opened.token, WRITE)
    assert forbidden_by_write_down(after), after.reasons

    # The delegate starts with its parent's label: handing the data over does not launder it.
    child = rt.tasks.delegate(
        ANALYST, TaskId(opened.task.task_id), opened.token, HELPER, [NOTES], ttl_seconds=300
    )
    assert child.task.label == "confidential"
    delegated = rt.authorizer.authorize(HELPER, child.token, WRITE)
    assert forbidden_by_write_down(delegated), delegated.reasons

    # A task of its own, having read nothing, may write.
    own = rt.tasks.open_task(HELPER, Intent(**INTENT), [NOTES], ttl_seconds=600)
    assert rt.authorizer.authorize(HELPER, own.token, WRITE).decision is Decision.ALLOW


def test_a_schema_may_leave_dataflow_out_but_not_mistype_it() -> None:
    base = packaged_policies()
    schema = (base / "schema.cedarschema").read_text()
    catalog = (base / "catalog.yaml").read_text()
    without = schema.replace("  dataflow: Dataflow,\n", "")
    assert without != schema
    engine = CedarPolicyEngine.from_sources(
        {"schema.cedarschema": without, "catalog.yaml": catalog}
    )
    assert engine.snapshot.bundle.policies == ()
    with pytest.raises(ConfigurationError, match="attribute `dataflow`"):
        CedarPolicyEngine.from_sources(
            {
                "schema.cedarschema": without,
                "catalog.yaml": catalog,
                "rule.cedar": WRITE_DOWN,
            }
        )
    mistyped = schema.replace("  dataflow: Dataflow,\n", "  dataflow: String,\n")
    with pytest.raises(ConfigurationError, match="does not fit the request tether sends"):
        CedarPolicyEngine.from_sources({"schema.cedarschema": mistyped, "catalog.yaml": catalog})
