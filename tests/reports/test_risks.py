"""The risks report on a recorded audit log: exact counts by ASI id, agent and workflow."""

from __future__ import annotations

from collections import Counter

from reports.scenario import ANALYST, HELPER, INTRUDER, REPORTING, TRIAGE, Recorded
from reports.test_privileges import from_export
from tether.core.risks import Risk
from tether.reports import RiskCount, risks
from tether.reports.jsonout import risks_json
from tether.reports.risks import RiskTable


def flat(table: RiskTable) -> dict[str, tuple[int, int]]:
    return {r.value: (c.deny, c.approval_required) for r, c in table.items()}


def test_denials_and_approvals_by_risk_agent_and_workflow(day: Recorded) -> None:
    report = risks(from_export(day.export))
    assert (report.records, report.decisions, report.denials, report.approvals) == (33, 14, 5, 1)
    assert flat(report.totals) == {
        "ASI01": (1, 1),
        "ASI02": (4, 1),
        "ASI03": (5, 1),
        "ASI05": (1, 0),
        "ASI09": (0, 1),
        "ASI10": (5, 1),
    }
    assert {a: flat(t) for a, t in report.by_agent.items()} == {
        ANALYST: {
            "ASI01": (0, 1),
            "ASI02": (3, 1),
            "ASI03": (3, 1),
            "ASI05": (1, 0),
            "ASI09": (0, 1),
            "ASI10": (3, 1),
        },
        HELPER: {"ASI01": (1, 0), "ASI02": (1, 0), "ASI03": (1, 0), "ASI10": (1, 0)},
        INTRUDER: {"ASI03": (1, 0), "ASI10": (1, 0)},
    }
    assert {w: flat(t) for w, t in report.by_workflow.items()} == {
        REPORTING: {"ASI02": (1, 0), "ASI03": (1, 0), "ASI05": (1, 0), "ASI10": (1, 0)},
        TRIAGE: {
            "ASI01": (1, 1),
            "ASI02": (3, 1),
            "ASI03": (3, 1),
            "ASI09": (0, 1),
            "ASI10": (3, 1),
        },
        None: {"ASI03": (1, 0), "ASI10": (1, 0)},
    }
    assert list(report.by_workflow) == [REPORTING, TRIAGE, None]


def test_counts_match_the_verdicts_the_agents_received(day: Recorded) -> None:
    """The report reads the log; the agents saw the verdicts. Both must tell the same story."""
    expected: Counter[tuple[str, str]] = Counter()
    for _agent, decision, ids in day.verdicts:
        if decision != "allow":
            for risk in ids:
                expected[(risk, decision)] += 1
    report = risks(day.records)
    got: Counter[tuple[str, str]] = Counter()
    for risk, c in report.totals.items():
        got[(risk.value, "deny")] += c.deny
        got[(risk.value, "approval_required")] += c.approval_required
    assert +got == +expected


def test_json_names_each_risk(day: Recorded) -> None:
    out = risks_json(risks(day.records))
    assert out["by_risk"]["ASI09"] == {  # type: ignore[index, call-overload]
        "name": "Human-Agent Trust Exploitation",
        "deny": 0,
        "approval_required": 1,
    }
    assert out["names"] == {r.value: r.label for r in Risk}
    assert RiskCount(2, 1).total == 3
