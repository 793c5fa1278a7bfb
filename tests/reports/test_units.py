"""The report functions on hand-made records: edge cases a scripted day does not reach."""

from __future__ import annotations

import ast
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tether.core.audit import AuditKind, AuditRecord, ChainHead, seal
from tether.core.scope import JSONValue
from tether.core.verdict import Decision
from tether.reports import MalformedRecord, Window, activity, privileges, risks

SRC = Path(__file__).resolve().parents[2] / "src" / "tether" / "reports"
START = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
AGENT = "spiffe://tether.local/agent/analyst"
INTENT: dict[str, JSONValue] = {"workflow": "wf", "purpose": "p", "on_behalf_of": "o"}


class Log:
    """Builds a sealed chain the way the store does."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def add(
        self,
        kind: AuditKind,
        body: dict[str, JSONValue],
        *,
        minutes: float = 0,
        task: str | None = "tsk_1",
        agent: str | None = AGENT,
    ) -> None:
        head = ChainHead(self.records[-1].seq, self.records[-1].hash) if self.records else None
        at = (START + timedelta(minutes=minutes)).isoformat()
        self.records.append(
            seal(
                head,
                record_id=f"aud_{len(self.records)}",
                at=at,
                kind=kind,
                agent=agent,
                task_id=task,
                body=body,
            )
        )

    def task(self, task: str, scopes: list[JSONValue], minutes: float = 0) -> None:
        self.add(
            AuditKind.TASK_OPENED,
            {"intent": INTENT, "granted": scopes, "requested": scopes, "refused": []},
            task=task,
            minutes=minutes,
        )

    def call(
        self,
        task: str | None,
        tool: str,
        action: str,
        dataset: str | None,
        decision: str,
        minutes: float = 0,
        risks: list[JSONValue] | None = None,
    ) -> None:
        self.add(
            AuditKind.DECISION,
            {
                "intent": INTENT if task else None,
                "call": {"tool": tool, "action": action, "dataset": dataset, "args": {}},
                "verdict": {
                    "decision": decision,
                    "reasons": [{"code": "policy_permits", "message": "m"}],
                    "risks": risks if risks is not None else ["ASI02"],
                    "obligations": [],
                    "delegation": {"depth": 0, "chain": []},
                },
            },
            task=task,
            minutes=minutes,
        )


def pay(max_amount: int | None = None, to: list[JSONValue] | None = None) -> JSONValue:
    constraints: dict[str, JSONValue] = {}
    if max_amount is not None:
        constraints["amount"] = {"max": max_amount}
    if to is not None:
        constraints["to"] = {"one_of": to}
    return {"tool": "pay", "actions": ["spend"], "datasets": [], "constraints": constraints}


def test_the_loosest_constraints_are_proposed_when_one_contains_the_others() -> None:
    log = Log()
    log.task("tsk_1", [pay(100)])
    log.task("tsk_2", [pay(500)])
    log.call("tsk_1", "pay", "spend", None, "allow")
    log.call("tsk_2", "pay", "spend", None, "allow")
    [group] = privileges(log.records).groups
    [proposed] = group.proposed
    assert proposed.note is None
    assert proposed.scope.to_json()["constraints"] == {"amount": {"max": 500}}
    assert group.tasks == 2 and group.ratio == 1


def test_constraints_that_do_not_nest_are_left_out_with_a_note() -> None:
    log = Log()
    log.task("tsk_1", [pay(100, ["a"])])  # never used: its constraints do not count
    log.task("tsk_2", [pay(500, None)])
    log.task("tsk_3", [pay(None, ["a", "b"])])
    log.call("tsk_2", "pay", "spend", None, "allow")
    log.call("tsk_3", "pay", "spend", None, "allow")
    [group] = privileges(log.records).groups
    [proposed] = group.proposed
    assert proposed.scope.constraints == ()
    assert proposed.note is not None and "different argument constraints" in proposed.note


def test_a_scope_without_datasets_grants_only_calls_naming_none() -> None:
    log = Log()
    log.task("tsk_1", [{"tool": "t", "actions": ["read", "write"], "datasets": []}])
    log.call("tsk_1", "t", "read", None, "allow")
    log.call("tsk_1", "t", "write", None, "deny")
    [group] = privileges(log.records).groups
    assert [str(t) for t in group.unused] == ["t write -"]
    assert group.unused_actions == {"t": ["write"]} and group.unused_datasets == {}
    assert (group.allowed_calls, group.denied_calls) == (1, 1)


def test_undefined_ratio_and_empty_input() -> None:
    empty = privileges([])
    assert empty.ratio is None and empty.records == 0 and empty.by_agent() == []
    assert risks([]).totals == {}
    assert activity([]).buckets == ()


def test_malformed_bodies_name_the_record() -> None:
    log = Log()
    log.task("tsk_1", [{"tool": "t", "actions": ["fly"]}])
    with pytest.raises(MalformedRecord, match=r"record 1 \(task_opened\): a granted scope"):
        privileges(log.records)
    log = Log()
    log.call("tsk_1", "t", "teleport", None, "allow")
    with pytest.raises(MalformedRecord, match="unknown action 'teleport'"):
        risks(log.records)
    log = Log()
    log.call("tsk_1", "t", "read", None, "perhaps")
    with pytest.raises(MalformedRecord, match="unknown decision 'perhaps'"):
        privileges(log.records)


def test_window_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Window(since=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="before --until"):
        Window(since=START, until=START)
    window = Window(since=START, until=START + timedelta(minutes=1))
    assert window.contains(START) and not window.contains(START + timedelta(minutes=1))


def test_decision_buckets_widen_with_the_span() -> None:
    log = Log()
    for minutes in (0, 10, 3 * 24 * 60):  # three days
        log.call(None, "t", "read", None, "deny", minutes=minutes)
    shown = activity(log.records)
    assert shown.bucket_seconds == 3 * 3600  # the first width giving at most 48 columns
    assert len(shown.buckets) <= 48 and sum(b.total for b in shown.buckets) == 3
    log = Log()
    log.call(None, "t", "read", None, "deny", minutes=0)
    log.call(None, "t", "read", None, "allow", minutes=0.5)
    one = activity(log.records)
    assert one.bucket_seconds == 60 and len(one.buckets) == 1
    assert one.decisions == {Decision.ALLOW: 1, Decision.DENY: 1, Decision.APPROVAL_REQUIRED: 0}


def test_reports_import_only_core_the_templates_and_the_standard_library() -> None:
    # tether.templates is the one way markup is made (Jinja2 with autoescaping).
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert (
                    top in sys.stdlib_module_names
                    or name.startswith("tether.core")
                    or name.startswith("tether.reports")
                    or name == "tether.templates"
                ), f"{path.name} imports {name}"


def test_the_public_surface() -> None:
    import tether.reports as reports

    for name in reports.__all__:
        assert hasattr(reports, name), name
