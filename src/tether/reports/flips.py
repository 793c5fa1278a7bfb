"""Observe-mode flips: the calls whose verdict an observe-mode policy would have changed.

A policy in observe mode (``@mode("observe")`` or a ``*.observe.cedar`` file) is evaluated on
every call it applies to, and a decision record lists under ``observed`` each one that would have
changed the policy decision, with what it ``would`` have answered (``deny``,
``approval_required``, or ``allow`` for an observed permit). This report counts, in the window,
the decisions where that differs from the verdict actually given, by policy, agent and tool, so
operators can see what enforcing a policy would do to real traffic before they enforce it.

A call that two observed policies would have changed counts once for each of them in the rows
and by-policy totals, and once in ``flipped``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from tether.core.audit import AuditRecord
from tether.core.verdict import Decision
from tether.reports.records import (
    DECISION_KINDS,
    MalformedRecord,
    Window,
    decision_facts,
    items,
    text,
    windowed,
)


@dataclass(frozen=True, slots=True)
class FlipRow:
    """Calls of one agent on one tool that one observed policy would have changed the same way."""

    policy_id: str
    would: Decision
    was: Decision
    agent: str
    tool: str
    calls: int


@dataclass(frozen=True, slots=True)
class PolicyFlips:
    """One observed policy's total, and how many calls it would have made each decision."""

    policy_id: str
    calls: int
    would: dict[Decision, int]
    agents: int
    tools: int


@dataclass(frozen=True, slots=True)
class FlipsReport:
    window: Window
    records: int
    decisions: int
    #: Decisions at least one observed policy would have changed.
    flipped: int
    by_policy: tuple[PolicyFlips, ...]
    rows: tuple[FlipRow, ...]


def observed_of(record: AuditRecord) -> list[tuple[str, Decision]]:
    """The ``observed`` entries of a decision record: (policy id, would-be decision)."""
    if "observed" not in record.body:
        return []
    out: list[tuple[str, Decision]] = []
    for entry in items(record, record.body, "observed"):
        if not isinstance(entry, dict):
            raise MalformedRecord(f"record {record.seq}: each observed entry must be an object")
        raw = text(record, entry, "would")
        try:
            would = Decision(raw)
        except ValueError:
            raise MalformedRecord(
                f"record {record.seq}: observed decision {raw!r} is not a decision"
            ) from None
        out.append((text(record, entry, "policy_id"), would))
    return out


def flips(records: Iterable[AuditRecord], window: Window | None = None) -> FlipsReport:
    """Count the decisions in ``window`` an observe-mode policy would have changed."""
    window = window or Window()
    seen = decisions = flipped = 0
    rows: Counter[tuple[str, Decision, Decision, str, str]] = Counter()
    for record, _at in windowed(records, window):
        seen += 1
        if record.kind not in DECISION_KINDS:
            continue
        decisions += 1
        facts = decision_facts(record)  # every decision is read, so a bad one is named
        changes = observed_of(record)
        if not changes:
            continue
        agent = record.agent or "(unknown agent)"
        changed = {(pid, would) for pid, would in changes if would is not facts.decision}
        if changed:
            flipped += 1
        for policy_id, would in sorted(changed):
            rows[(policy_id, would, facts.decision, agent, facts.call.tool)] += 1
    ordered = tuple(
        FlipRow(pid, would, was, agent, tool, n)
        for (pid, would, was, agent, tool), n in sorted(
            rows.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][3], kv[0][4], kv[0][1])
        )
    )
    totals: dict[str, list[FlipRow]] = {}
    for row in ordered:
        totals.setdefault(row.policy_id, []).append(row)
    by_policy = [
        PolicyFlips(
            policy_id=pid,
            calls=sum(r.calls for r in policy_rows),
            would={
                d: sum(r.calls for r in policy_rows if r.would is d)
                for d in Decision
                if any(r.would is d for r in policy_rows)
            },
            agents=len({r.agent for r in policy_rows}),
            tools=len({r.tool for r in policy_rows}),
        )
        for pid, policy_rows in totals.items()
    ]
    by_policy.sort(key=lambda p: (-p.calls, p.policy_id))
    return FlipsReport(
        window=window,
        records=seen,
        decisions=decisions,
        flipped=flipped,
        by_policy=tuple(by_policy),
        rows=ordered,
    )
