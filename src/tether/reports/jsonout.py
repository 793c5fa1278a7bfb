"""The reports as JSON values, for ``--json`` and for tools that gate on them (CI, SIEM)."""

from __future__ import annotations

from fractions import Fraction

from tether.core.risks import Risk
from tether.core.scope import JSONValue
from tether.reports.cedar import proposed_policy
from tether.reports.controls import ControlsReport
from tether.reports.flips import FlipsReport
from tether.reports.frameworks import not_addressed
from tether.reports.privileges import PrivilegeReport, Triple
from tether.reports.records import Window
from tether.reports.risks import RiskReport, RiskTable


def _window(window: Window) -> dict[str, JSONValue]:
    return {
        "since": window.since.isoformat() if window.since else None,
        "until": window.until.isoformat() if window.until else None,
    }


def _ratio(ratio: Fraction | None) -> JSONValue:
    return None if ratio is None else round(float(ratio), 4)


def _triples(triples: list[Triple]) -> list[JSONValue]:
    return [{"tool": t.tool, "action": t.action.value, "dataset": t.dataset} for t in triples]


def privileges_json(report: PrivilegeReport) -> dict[str, JSONValue]:
    groups: list[JSONValue] = []
    for g in report.groups:
        groups.append(
            {
                "agent": g.agent,
                "workflow": g.workflow,
                "tasks": g.tasks,
                "delegated_tasks": g.delegated_tasks,
                "granted": len(g.granted),
                "used": len(g.used_granted),
                "ratio": _ratio(g.ratio),
                "calls": {
                    "allow": g.allowed_calls,
                    "deny": g.denied_calls,
                    "approval_required": g.approval_calls,
                },
                "unused_tools": list[JSONValue](g.unused_tools),
                "unused_actions": {
                    tool: [a.value for a in actions] for tool, actions in g.unused_actions.items()
                },
                "unused_datasets": {
                    tool: list[JSONValue](names) for tool, names in g.unused_datasets.items()
                },
                "unused": _triples(g.unused),
                "used_triples": _triples(sorted(g.used_granted, key=lambda t: t.sort_key)),
                "used_outside_grant": _triples(
                    sorted(g.used_outside_grant, key=lambda t: t.sort_key)
                ),
                "proposed_scopes": g.proposed_json(),
                "proposed_notes": [p.note for p in g.proposed if p.note],
                "proposed_cedar": proposed_policy(g),
            }
        )
    return {
        "report": "privileges",
        "window": _window(report.window),
        "records": report.records,
        "granted": report.granted_total,
        "used": report.used_total,
        "ratio": _ratio(report.ratio),
        "unattributed_decisions": report.unattributed,
        "groups": groups,
    }


def _table(table: RiskTable) -> dict[str, JSONValue]:
    return {
        risk.value: {
            "name": risk.label,
            "deny": c.deny,
            "approval_required": c.approval_required,
        }
        for risk, c in table.items()
    }


def risks_json(report: RiskReport) -> dict[str, JSONValue]:
    return {
        "report": "risks",
        "window": _window(report.window),
        "records": report.records,
        "decisions": report.decisions,
        "denials": report.denials,
        "approvals": report.approvals,
        "by_risk": _table(report.totals),
        "by_agent": {agent: _table(t) for agent, t in report.by_agent.items()},
        "by_workflow": [
            {"workflow": workflow, "risks": _table(t)} for workflow, t in report.by_workflow.items()
        ],
        "names": {r.value: r.label for r in Risk},
    }


def controls_json(report: ControlsReport) -> dict[str, JSONValue]:
    rows: list[JSONValue] = []
    for row in report.rows:
        c, e = row.control, row.evidence
        rows.append(
            {
                "control": c.key.value,
                "name": c.name,
                "summary": c.summary,
                "coverage": row.coverage.value,
                "asi": [r.value for r in c.asi],
                "nhi": [f"{n.value}:2025 {n.label}" for n in c.nhi],
                "nist_ai_rmf": [f.value for f in c.ai_rmf],
                "nist_csf": [f.value for f in c.csf],
                "maestro": [f"{m.value} {m.label}" for m in c.maestro],
                "evidence": {
                    "decisions": e.decisions,
                    "denials": e.denials,
                    "approvals": e.approvals,
                    "breakglass_uses": e.breakglass_uses,
                    **{name: n for name, n in e.facts},
                },
            }
        )
    nhi, layers = not_addressed()
    return {
        "report": "controls",
        "window": _window(report.window),
        "records": report.records,
        "decisions": report.decisions,
        "controls": rows,
        "gaps": [
            {"control": g.control.value if g.control else None, "message": g.message}
            for g in report.gaps
        ],
        "not_addressed": {
            "nhi": [f"{n.value}:2025 {n.label}" for n in nhi],
            "maestro": [f"{m.value} {m.label}" for m in layers],
        },
    }


def flips_json(report: FlipsReport) -> dict[str, JSONValue]:
    return {
        "report": "flips",
        "window": _window(report.window),
        "records": report.records,
        "decisions": report.decisions,
        "flipped": report.flipped,
        "by_policy": [
            {
                "policy_id": p.policy_id,
                "calls": p.calls,
                "would": {d.value: n for d, n in p.would.items()},
                "agents": p.agents,
                "tools": p.tools,
            }
            for p in report.by_policy
        ],
        "flips": [
            {
                "policy_id": r.policy_id,
                "would": r.would.value,
                "was": r.was.value,
                "agent": r.agent,
                "tool": r.tool,
                "calls": r.calls,
            }
            for r in report.rows
        ],
    }
