"""The privileges report as one self-contained HTML page.

Everything is in the file: styles inline, charts as inline SVG, no script, no fonts, images or
links to fetch. A Content-Security-Policy of ``default-src 'none'`` says so to the browser, so
the page opens the same offline, from a mail attachment or from an audit archive. The markup is
the template ``tether/templates/report/privileges.html`` (rendered with autoescaping, so names
read from audit records only ever show as text); this module gathers what it prints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from tether.reports.activity import Activity
from tether.reports.cedar import proposed_policy
from tether.reports.privileges import PrivilegeGroup, PrivilegeReport
from tether.reports.svg import (
    Chart,
    PairRow,
    amount_chart,
    decisions_chart,
    granted_used_chart,
    short_agent,
)
from tether.templates import render

RATIO_DEFINITION = (
    "The least-privilege ratio of an agent in a workflow is |U ∩ G| / |G|, where G is the set "
    "of (tool, action, dataset) triples granted to its tasks opened in the window (a scope "
    "grants its actions by its datasets; a scope without datasets grants calls naming no "
    "dataset) and U the set of triples of the calls allowed on those tasks in the window. "
    "1.00 means every granted triple was used; calls allowed under break-glass are not in U."
)


def ratio_text(ratio: Fraction | None) -> str:
    """A ratio as two decimals, or ``n/a`` when undefined."""
    return "n/a" if ratio is None else f"{float(ratio):.2f}"


@dataclass(frozen=True, slots=True)
class Group:
    """One agent and workflow, as the page prints it."""

    number: int
    agent: str
    workflow: str
    tasks: int
    delegated_tasks: int
    allowed_calls: int
    denied_calls: int
    approval_calls: int
    ratio: str
    granted: int
    used: int
    unused_tools: tuple[str, ...]
    unused_actions: tuple[tuple[str, str], ...]
    unused_datasets: tuple[tuple[str, str], ...]
    unused_triples: tuple[str, ...]
    used_triples: tuple[str, ...]
    outside_grant: tuple[str, ...]
    scope_json: str
    notes: tuple[str, ...]
    cedar: str


def _group(number: int, g: PrivilegeGroup) -> Group:
    lines = [json.dumps(scope, sort_keys=True) for scope in g.proposed_json()]
    return Group(
        number=number,
        agent=g.agent,
        workflow=g.workflow,
        tasks=g.tasks,
        delegated_tasks=g.delegated_tasks,
        allowed_calls=g.allowed_calls,
        denied_calls=g.denied_calls,
        approval_calls=g.approval_calls,
        ratio=ratio_text(g.ratio),
        granted=len(g.granted),
        used=len(g.used_granted),
        unused_tools=tuple(g.unused_tools),
        unused_actions=tuple(
            (tool, ", ".join(a.value for a in acts)) for tool, acts in g.unused_actions.items()
        ),
        unused_datasets=tuple((tool, ", ".join(ds)) for tool, ds in g.unused_datasets.items()),
        unused_triples=tuple(str(t) for t in g.unused),
        used_triples=tuple(str(t) for t in sorted(g.used_granted, key=lambda t: t.sort_key)),
        outside_grant=tuple(str(t) for t in sorted(g.used_outside_grant, key=lambda t: t.sort_key)),
        scope_json="[\n  " + ",\n  ".join(lines) + "\n]" if lines else "[]",
        notes=tuple(p.note for p in g.proposed if p.note),
        cedar=proposed_policy(g),
    )


def _charts(report: PrivilegeReport, activity: Activity) -> list[tuple[str, Chart]]:
    by_agent = [PairRow(short_agent(a), a, g, u) for a, g, u in report.by_agent()]
    records = [PairRow(short_agent(r.agent), r.agent, r.records, 0) for r in activity.reads]
    size = [PairRow(short_agent(r.agent), r.agent, r.bytes, 0) for r in activity.reads]
    return [
        ("Used against granted, per agent (all workflows)", granted_used_chart(by_agent)),
        ("Decisions over time", decisions_chart(activity.buckets, activity.bucket_seconds)),
        (
            "Records read per agent (from effects)",
            amount_chart("chart-records", "Records read per agent", records, "#6d28d9"),
        ),
        (
            "Bytes read per agent (from effects)",
            amount_chart("chart-bytes", "Bytes read per agent", size, "#0e7490", as_bytes=True),
        ),
    ]


def render_privileges_html(
    report: PrivilegeReport, activity: Activity, *, source: str, generated_at: datetime
) -> str:
    """The whole page; ``generated_at`` is passed in (reports read no clock)."""
    decided = sum(activity.decisions.values())
    return render(
        "report/privileges.html",
        source=source,
        window=report.window.describe(),
        records=report.records,
        generated=generated_at.isoformat(timespec="seconds"),
        cards=[
            ("agents · workflows", len(report.groups)),
            ("granted triples", report.granted_total),
            ("used triples", report.used_total),
            ("least-privilege ratio", ratio_text(report.ratio)),
            ("decisions", decided),
            ("unattributed decisions", report.unattributed),
        ],
        charts=_charts(report, activity),
        groups=[_group(n, g) for n, g in enumerate(report.groups, start=1)],
        ratio_definition=RATIO_DEFINITION,
    )
