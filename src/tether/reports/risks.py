"""Denials and approval requests by OWASP Agentic risk id, agent and workflow.

Every verdict carries the ASI ids of the checks that decided it (``tether.core.risks``). Each
``deny`` or ``approval_required`` decision record in the window adds one to each risk id it
carries, under its agent and under its workflow (``None`` when the call reached no task, e.g. a
grant presented by another workload). A decision that carries three ids counts once for each,
so the per-risk counts do not add up to the number of decisions: ``denials`` and ``approvals``
give those.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from tether.core.audit import AuditRecord
from tether.core.risks import Risk
from tether.core.verdict import Decision
from tether.reports.records import DECISION_KINDS, Window, decision_facts, windowed


@dataclass(frozen=True, slots=True)
class RiskCount:
    deny: int = 0
    approval_required: int = 0

    @property
    def total(self) -> int:
        return self.deny + self.approval_required

    def add(self, decision: Decision) -> RiskCount:
        if decision is Decision.DENY:
            return RiskCount(self.deny + 1, self.approval_required)
        return RiskCount(self.deny, self.approval_required + 1)


RiskTable = dict[Risk, RiskCount]


@dataclass(frozen=True, slots=True)
class RiskReport:
    window: Window
    records: int
    decisions: int
    denials: int
    approvals: int
    totals: RiskTable
    by_agent: dict[str, RiskTable]
    #: Keyed by workflow; ``None`` for calls that reached no task.
    by_workflow: dict[str | None, RiskTable]

    @staticmethod
    def risks_of(table: RiskTable) -> list[Risk]:
        return [r for r in Risk if r in table]


def risks(records: Iterable[AuditRecord], window: Window | None = None) -> RiskReport:
    """Count ``deny`` and ``approval_required`` verdicts per ASI id, agent and workflow."""
    window = window or Window()
    totals: RiskTable = {}
    by_agent: dict[str, RiskTable] = defaultdict(dict)
    by_workflow: dict[str | None, RiskTable] = defaultdict(dict)
    seen = decisions = denials = approvals = 0
    for record, _at in windowed(records, window):
        seen += 1
        if record.kind not in DECISION_KINDS:
            continue
        decisions += 1
        facts = decision_facts(record)
        match facts.decision:
            case Decision.ALLOW:
                continue
            case Decision.DENY:
                denials += 1
            case Decision.APPROVAL_REQUIRED:
                approvals += 1
        agent = record.agent or "(unknown agent)"
        for risk in facts.risks:
            for table in (totals, by_agent[agent], by_workflow[facts.workflow]):
                table[risk] = table.get(risk, RiskCount()).add(facts.decision)
    return RiskReport(
        window=window,
        records=seen,
        decisions=decisions,
        denials=denials,
        approvals=approvals,
        totals=dict(sorted(totals.items())),
        by_agent={a: dict(sorted(t.items())) for a, t in sorted(by_agent.items())},
        by_workflow={
            w: dict(sorted(t.items()))
            for w, t in sorted(by_workflow.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
        },
    )
