"""The privileges report as one self-contained HTML page.

Everything is in the file: styles inline, charts as inline SVG, no script, no fonts, images or
links to fetch. A Content-Security-Policy of ``default-src 'none'`` says so to the browser, so
the page opens the same offline, from a mail attachment or from an audit archive.
"""

from __future__ import annotations

import json
from datetime import datetime
from fractions import Fraction
from html import escape

from tether.reports.activity import Activity
from tether.reports.cedar import proposed_policy
from tether.reports.privileges import PrivilegeGroup, PrivilegeReport, Triple
from tether.reports.svg import (
    PairRow,
    amount_chart,
    decisions_chart,
    granted_used_chart,
    short_agent,
)

RATIO_DEFINITION = (
    "The least-privilege ratio of an agent in a workflow is |U ∩ G| / |G|, where G is the set "
    "of (tool, action, dataset) triples granted to its tasks opened in the window (a scope "
    "grants its actions by its datasets; a scope without datasets grants calls naming no "
    "dataset) and U the set of triples of the calls allowed on those tasks in the window. "
    "1.00 means every granted triple was used; calls allowed under break-glass are not in U."
)

_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif;
       color: #0f172a; margin: 2rem auto; max-width: 70rem; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #e2e8f0; }
h3 { font-size: 1.05rem; margin-bottom: .3rem; }
.meta { color: #475569; margin: 0 0 1rem; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; margin: 1rem 0; }
.card { border: 1px solid #e2e8f0; border-radius: 6px; padding: .6rem 1rem; min-width: 9rem; }
.card b { display: block; font-size: 1.4rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #e2e8f0;
         vertical-align: top; }
th { background: #f8fafc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f8fafc; border: 1px solid #e2e8f0; padding: .6rem; overflow-x: auto; }
.charts figure { margin: 1rem 0; }
.charts figcaption { font-weight: 600; margin-bottom: .3rem; }
.warn { color: #b45309; }
.empty { color: #475569; font-style: italic; }
svg.chart { max-width: 100%; height: auto; }
section.group th { width: 12rem; }
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def ratio_text(ratio: Fraction | None) -> str:
    """A ratio as two decimals, or ``n/a`` when undefined."""
    return "n/a" if ratio is None else f"{float(ratio):.2f}"


def _triples(triples: list[Triple]) -> str:
    if not triples:
        return '<span class="empty">none</span>'
    return ", ".join(f"<code>{_e(t)}</code>" for t in triples)


def _tools(tools: list[str]) -> str:
    if not tools:
        return '<span class="empty">none</span>'
    return ", ".join(f"<code>{_e(tool)}</code>" for tool in tools)


def _per_tool(values: dict[str, list[str]]) -> str:
    if not values:
        return '<span class="empty">none</span>'
    return "<br>".join(
        f"<code>{_e(tool)}</code>: {_e(', '.join(names))}" for tool, names in values.items()
    )


def _group_section(number: int, g: PrivilegeGroup) -> str:
    actions = {tool: [a.value for a in acts] for tool, acts in g.unused_actions.items()}
    notes = [p.note for p in g.proposed if p.note]
    lines = [json.dumps(scope, sort_keys=True) for scope in g.proposed_json()]
    scope_json = "[\n  " + ",\n  ".join(lines) + "\n]" if lines else "[]"
    parts = [
        f'<section class="group" id="group-{number}">',
        f"<h3>{_e(g.agent)} · {_e(g.workflow)}</h3>",
        f"<p>{g.tasks} task(s) ({g.delegated_tasks} delegated); calls: {g.allowed_calls} "
        f"allowed, {g.denied_calls} denied, {g.approval_calls} sent for approval. "
        f"Least-privilege ratio <b>{ratio_text(g.ratio)}</b> "
        f"({len(g.used_granted)} of {len(g.granted)} granted triples used).</p>",
        "<table><tbody>",
        f"<tr><th>unused tools</th><td>{_tools(g.unused_tools)}</td></tr>",
        f"<tr><th>unused actions</th><td>{_per_tool(actions)}</td></tr>",
        f"<tr><th>unused datasets</th><td>{_per_tool(g.unused_datasets)}</td></tr>",
        f"<tr><th>unused triples</th><td>{_triples(g.unused)}</td></tr>",
        f"<tr><th>used triples</th><td>{_triples(sorted(g.used_granted, key=lambda t: t.sort_key))}"
        "</td></tr>",
    ]
    if g.used_outside_grant:
        outside = sorted(g.used_outside_grant, key=lambda t: t.sort_key)
        parts.append(
            f'<tr><th class="warn">used under break-glass</th><td>{_triples(outside)}</td></tr>'
        )
    parts.append("</tbody></table>")
    parts.append("<p>Proposed grant (<code>scopes</code> for <code>POST /v1/tasks</code>):</p>")
    parts.append(f'<pre class="proposed-scope">{_e(scope_json)}</pre>')
    for note in notes:
        parts.append(f'<p class="warn">{_e(note)}</p>')
    parts.append("<p>Proposed Cedar policy:</p>")
    parts.append(f'<pre class="proposed-cedar">{_e(proposed_policy(g))}</pre>')
    parts.append("</section>")
    return "\n".join(parts)


def render_privileges_html(
    report: PrivilegeReport, activity: Activity, *, source: str, generated_at: datetime
) -> str:
    """The whole page; ``generated_at`` is passed in (reports read no clock)."""
    by_agent = [PairRow(short_agent(a), a, g, u) for a, g, u in report.by_agent()]
    records = [PairRow(short_agent(r.agent), r.agent, r.records, 0) for r in activity.reads]
    size = [PairRow(short_agent(r.agent), r.agent, r.bytes, 0) for r in activity.reads]
    decided = activity.decisions
    body: list[str] = [
        "<h1>tether · privileges report</h1>",
        f'<p class="meta">Source: {_e(source)} · window: {_e(report.window.describe())} · '
        f"{report.records} audit records in the window · generated "
        f"{_e(generated_at.isoformat(timespec='seconds'))}</p>",
    ]
    if report.records == 0:
        body.append(
            '<p class="empty" id="no-records">No audit records in this window: nothing to '
            "report. Check --since/--until, or the source.</p>"
        )
    body.append('<div class="cards">')
    for label, value in (
        ("agents · workflows", len(report.groups)),
        ("granted triples", report.granted_total),
        ("used triples", report.used_total),
        ("least-privilege ratio", ratio_text(report.ratio)),
        ("decisions", sum(decided.values())),
        ("unattributed decisions", report.unattributed),
    ):
        body.append(f'<div class="card">{_e(label)}<b>{_e(value)}</b></div>')
    body.append("</div>")
    body.append('<h2>Charts</h2><div class="charts">')
    for caption, svg in (
        ("Used against granted, per agent (all workflows)", granted_used_chart(by_agent)),
        (
            "Decisions over time",
            decisions_chart(activity.buckets, activity.bucket_seconds),
        ),
        (
            "Records read per agent (from effects)",
            amount_chart("chart-records", "Records read per agent", records, "#6d28d9"),
        ),
        (
            "Bytes read per agent (from effects)",
            amount_chart("chart-bytes", "Bytes read per agent", size, "#0e7490", as_bytes=True),
        ),
    ):
        body.append(f"<figure><figcaption>{_e(caption)}</figcaption>\n{svg}\n</figure>")
    body.append("</div>")
    body.append("<h2>Per agent and workflow</h2>")
    if report.groups:
        body.append(
            '<table id="groups"><thead><tr><th>agent</th><th>workflow</th>'
            '<th class="num">tasks</th><th class="num">granted</th><th class="num">used</th>'
            '<th class="num">ratio</th><th>unused tools</th></tr></thead><tbody>'
        )
        for number, g in enumerate(report.groups, start=1):
            body.append(
                f'<tr><td><a href="#group-{number}">{_e(g.agent)}</a></td><td>{_e(g.workflow)}</td>'
                f'<td class="num">{g.tasks}</td><td class="num">{len(g.granted)}</td>'
                f'<td class="num">{len(g.used_granted)}</td>'
                f'<td class="num">{ratio_text(g.ratio)}</td>'
                f"<td>{_e(', '.join(g.unused_tools) or '-')}</td></tr>"
            )
        body.append("</tbody></table>")
        body.extend(_group_section(n, g) for n, g in enumerate(report.groups, start=1))
    else:
        body.append('<p class="empty">No task was opened in this window.</p>')
    body.append("<h2>Definitions</h2>")
    body.append(f'<p id="ratio-definition">{_e(RATIO_DEFINITION)}</p>')
    body.append(
        "<p>Unused tools: granted tools with no used triple. Unused actions and datasets: those "
        "granted on a used tool that no used call had. Unattributed decisions: decisions in the "
        "window on no task opened in the window (no task at all, or opened earlier).</p>"
    )
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>tether privileges report</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )
