"""The privileges report on a recorded audit log: exact numbers, the window, the proposals."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import cedarpy
from typer.testing import CliRunner

from reports.scenario import ANALYST, HELPER, REPORTING, SUPPORT, TRIAGE, Recorded
from tether.cli.main import app
from tether.core.audit import AuditRecord
from tether.core.scope import ActionKind
from tether.reports import PrivilegeReport, Window, privileges, proposed_policy
from tether.reports.privileges import PrivilegeGroup, Triple
from tether.runtime import packaged_policies

SCHEMA = (packaged_policies() / "schema.cedarschema").read_text(encoding="utf-8")
READ, WRITE, SEND, SPEND, EXECUTE = (
    ActionKind.READ,
    ActionKind.WRITE,
    ActionKind.SEND,
    ActionKind.SPEND,
    ActionKind.EXECUTE,
)


def t(tool: str, action: ActionKind, dataset: str | None = None) -> Triple:
    return Triple(tool, action, dataset)


def from_export(path: Path) -> list[AuditRecord]:
    with path.open(encoding="utf-8") as handle:
        return [AuditRecord.from_json(json.loads(line)) for line in handle]


def group(report: PrivilegeReport, agent: str, workflow: str) -> PrivilegeGroup:
    [found] = [g for g in report.groups if g.agent == agent and g.workflow == workflow]
    return found


def at(hhmm: str) -> datetime:
    hours, minutes = hhmm.split(":")
    return datetime(2026, 11, 28, int(hours), int(minutes), tzinfo=UTC)


def test_granted_against_used_per_agent_and_workflow(day: Recorded) -> None:
    report = privileges(from_export(day.export))
    assert report.records == 33
    assert [(g.agent, g.workflow) for g in report.groups] == [
        (ANALYST, REPORTING),
        (ANALYST, TRIAGE),
        (HELPER, TRIAGE),
        (SUPPORT, TRIAGE),
    ]
    assert report.unattributed == 1  # the intruder's stolen grant reached no task

    triage = group(report, ANALYST, TRIAGE)
    assert triage.tasks == 1 and triage.delegated_tasks == 0
    assert triage.granted == {
        t("crm.query", READ, "crm"),
        t("crm.query", READ, "docs"),
        t("crm.query", READ, "tickets"),
        t("crm.update", WRITE, "tickets"),
        t("files.share", READ, "docs"),
        t("files.share", READ, "tickets"),
        t("files.share", WRITE, "docs"),
        t("files.share", WRITE, "tickets"),
        t("payments.transfer", SPEND),
        t("email.send", SEND),
    }  # crm.query write was asked for and refused by policy: not granted, not counted
    assert triage.used == {
        t("crm.query", READ, "crm"),
        t("files.share", READ, "docs"),
        t("payments.transfer", SPEND),
    }
    assert triage.ratio == Fraction(3, 10)
    assert triage.unused_tools == ["crm.update", "email.send"]
    assert triage.unused_actions == {"files.share": [WRITE]}
    assert triage.unused_datasets == {"crm.query": ["docs", "tickets"], "files.share": ["tickets"]}
    assert [str(x) for x in triage.unused] == [
        "crm.query read docs",
        "crm.query read tickets",
        "crm.update write tickets",
        "email.send send -",
        "files.share read tickets",
        "files.share write docs",
        "files.share write tickets",
    ]
    assert triage.used_outside_grant == {t("crm.purge", ActionKind.DELETE, "crm")}
    # 8 allowed decisions in the log: 6 here (one under break-glass, one approved), 2 below.
    assert (triage.allowed_calls, triage.denied_calls, triage.approval_calls) == (6, 2, 1)

    reporting = group(report, ANALYST, REPORTING)
    assert reporting.granted == {t("crm.query", READ, "docs"), t("sandbox.run", EXECUTE)}
    assert reporting.used == {t("crm.query", READ, "docs")}
    assert reporting.ratio == Fraction(1, 2)
    assert reporting.unused_tools == ["sandbox.run"]
    assert reporting.unused_actions == {} and reporting.unused_datasets == {}
    assert (reporting.allowed_calls, reporting.denied_calls) == (1, 1)

    helper = group(report, HELPER, TRIAGE)
    assert helper.tasks == 1 and helper.delegated_tasks == 1
    assert helper.granted == helper.used == {t("crm.update", WRITE, "tickets")}
    assert helper.ratio == 1
    assert (helper.allowed_calls, helper.denied_calls) == (1, 1)

    support = group(report, SUPPORT, TRIAGE)
    assert support.granted == {t("crm.update", WRITE, "tickets"), t("payments.transfer", SPEND)}
    assert support.used == frozenset() and support.ratio == 0
    assert support.unused_tools == ["crm.update", "payments.transfer"]
    assert support.proposed == []

    assert (report.granted_total, report.used_total, report.ratio) == (15, 5, Fraction(1, 3))
    assert report.by_agent() == [(ANALYST, 11, 4), (HELPER, 1, 1), (SUPPORT, 2, 0)]


def test_the_window_keeps_tasks_opened_in_it(day: Recorded) -> None:
    records = from_export(day.export)
    later = privileges(records, Window(since=at("12:20")))
    assert [(g.agent, g.workflow, len(g.granted), len(g.used)) for g in later.groups] == [
        (ANALYST, REPORTING, 2, 1),
        (HELPER, TRIAGE, 1, 1),
        (SUPPORT, TRIAGE, 2, 0),
    ]
    assert later.unattributed == 0
    earlier = privileges(records, Window(until=at("12:20")))
    assert [(g.agent, g.workflow, len(g.granted), len(g.used)) for g in earlier.groups] == [
        (ANALYST, TRIAGE, 10, 3)
    ]
    assert earlier.unattributed == 1
    # Task 1 was opened at 12:00, before this window: its 9 decisions and the intruder's one
    # cannot be set against a grant of the window.
    cut = privileges(records, Window(since=at("12:01"), until=at("12:20")))
    assert cut.groups == () and cut.unattributed == 10
    nothing = privileges(records, Window(since=at("13:00")))
    assert nothing.records == 0 and nothing.groups == () and nothing.ratio is None


def test_proposed_grant_is_the_used_scopes(day: Recorded) -> None:
    triage = group(privileges(from_export(day.export)), ANALYST, TRIAGE)
    assert triage.proposed_json() == [
        {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"], "constraints": {}},
        {"tool": "files.share", "actions": ["read"], "datasets": ["docs"], "constraints": {}},
        {
            "tool": "payments.transfer",
            "actions": ["spend"],
            "datasets": [],
            "constraints": {"amount": {"max": 1000}},
        },
    ]
    helper = group(privileges(from_export(day.export)), HELPER, TRIAGE)
    assert helper.proposed_json() == [
        {
            "tool": "crm.update",
            "actions": ["write"],
            "datasets": ["tickets"],
            "constraints": {"discount": {"max": 5}},
        }
    ]


def _request(
    tool: str, action: str, dataset: str, workflow: str = TRIAGE, agent: str = ANALYST
) -> dict[str, object]:
    return {
        "principal": {"type": "Agent", "id": agent},
        "action": {"type": "Action", "id": action},
        "resource": {"type": "Tool", "id": tool},
        "context": {
            "intent": {"workflow": workflow, "purpose": "p", "on_behalf_of": "o"},
            "task_id": "tsk_x",
            "agent": {"id": agent, "trust_domain": "tether.local", "name": "analyst"},
            "dataset": dataset,
            "classification": "",
            "args": {},
        },
    }


def test_proposed_cedar_validates_and_permits_exactly_what_was_used(
    day: Recorded, tmp_path: Path
) -> None:
    report = privileges(from_export(day.export))
    texts = [proposed_policy(g) for g in report.groups]
    for text in texts:
        result = cedarpy.validate_policies(text, SCHEMA)
        assert result.validation_passed, [str(e) for e in result.errors]
    combined = "\n".join(texts)
    result = cedarpy.validate_policies(combined, SCHEMA)
    assert result.validation_passed, [str(e) for e in result.errors]
    assert combined.count("\npermit (") == 5  # one per used (tool, dataset): 1 + 3 + 1 + 0

    triage = proposed_policy(group(report, ANALYST, TRIAGE))
    cases = [
        (_request("crm.query", "read", "crm"), True),
        (_request("files.share", "read", "docs"), True),
        (_request("payments.transfer", "spend", ""), True),
        (_request("crm.query", "read", "docs"), False),  # granted, never used
        (_request("files.share", "write", "docs"), False),  # granted, never used
        (_request("crm.query", "read", "crm", workflow=REPORTING), False),  # other workflow
        (_request("crm.query", "read", "crm", agent=SUPPORT), False),  # other agent
    ]
    for request, allowed in cases:
        assert cedarpy.is_authorized(request, triage, []).allowed is allowed, request

    # tether's own loader takes the proposal next to the example policies.
    policies = tmp_path / "with-proposal"
    shutil.copytree(packaged_policies(), policies)
    (policies / "proposed.cedar").write_text(combined, encoding="utf-8")
    validated = CliRunner().invoke(app, ["policy", "validate", str(policies)])
    assert validated.exit_code == 0, validated.output


def test_a_workflow_name_cedar_must_escape_still_validates() -> None:
    from tether.reports import permit_policies

    odd = 'triage "v2" \\ daily\nrun'
    text = permit_policies(
        ANALYST, odd, [t("crm.query", READ, "crm"), t("crm.query", WRITE, "crm")]
    )
    result = cedarpy.validate_policies(text, SCHEMA)
    assert result.validation_passed, [str(e) for e in result.errors]
    assert 'action in [Action::"read", Action::"write"]' in text
    request = _request("crm.query", "write", "crm", workflow=odd)
    assert cedarpy.is_authorized(request, text, []).allowed
