"""Small inline SVG charts: no script, no fonts or images to fetch, readable without colour.

Each chart is one ``<svg>`` with an ``id``, a ``<title>`` and a ``<desc>``, and prints its
numbers next to its marks, so the chart reads the same in any browser, offline, and to a screen
reader. Marks carry classes (``bar-granted``, ``bar-used``, ``seg-allow``…) tests can find.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from tether.core.verdict import Decision
from tether.reports.activity import Bucket

WIDTH = 760
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
DECISION_COLOURS: dict[Decision, str] = {
    Decision.ALLOW: "#15803d",
    Decision.APPROVAL_REQUIRED: "#b45309",
    Decision.DENY: "#b91c1c",
}
_STACK_ORDER = (Decision.ALLOW, Decision.APPROVAL_REQUIRED, Decision.DENY)


def _a(value: object) -> str:
    return escape(str(value), quote=True)


def _open(chart_id: str, height: int, title: str, desc: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{_a(chart_id)}" class="chart" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" '
        f'aria-labelledby="{_a(chart_id)}-title {_a(chart_id)}-desc" '
        f'font-family="{_a(FONT)}" font-size="12">',
        f'<title id="{_a(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{_a(chart_id)}-desc">{escape(desc)}</desc>',
    ]


def _empty(chart_id: str, title: str, message: str) -> str:
    parts = _open(chart_id, 60, title, message)
    parts.append(f'<text x="12" y="34" fill="#475569" class="empty">{escape(message)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def short_agent(agent: str) -> str:
    """``spiffe://td/agent/analyst`` → ``analyst``; anything else unchanged."""
    tail = agent.rstrip("/").rsplit("/", 1)[-1]
    return tail or agent


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class PairRow:
    label: str
    full: str
    total: int
    part: int


def granted_used_chart(rows: Sequence[PairRow]) -> str:
    """Horizontal bars: granted triples per agent, with the used part drawn inside."""
    chart_id = "chart-privileges"
    title = "Granted and used (tool, action, dataset) triples per agent"
    if not rows:
        return _empty(chart_id, title, "No grants in this window.")
    row_h, top, left, right = 30, 34, 150, 170
    height = top + row_h * len(rows) + 10
    span = WIDTH - left - right
    most = max(max(r.total for r in rows), 1)
    desc = "; ".join(f"{r.full}: {r.part} of {r.total} used" for r in rows)
    parts = _open(chart_id, height, title, desc)
    parts.append(_legend([("#cbd5e1", "granted"), ("#1d4ed8", "used")], left))
    for i, r in enumerate(rows):
        y = top + i * row_h
        total_w = span * r.total / most
        part_w = span * r.part / most
        ratio = f"{100 * r.part / r.total:.0f}%" if r.total else "n/a"
        parts.append(f'<g class="row" data-agent="{_a(r.full)}">')
        parts.append(f"<title>{escape(r.full)}: {r.part} of {r.total} granted triples used</title>")
        parts.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" fill="#0f172a">'
            f"{escape(r.label)}</text>"
        )
        parts.append(
            f'<rect class="bar-granted" x="{left}" y="{y}" width="{total_w:.1f}" height="20" '
            'fill="#cbd5e1"/>'
        )
        parts.append(
            f'<rect class="bar-used" x="{left}" y="{y + 4}" width="{part_w:.1f}" height="12" '
            'fill="#1d4ed8"/>'
        )
        parts.append(
            f'<text x="{left + total_w + 8:.1f}" y="{y + 15}" fill="#0f172a">'
            f"{r.part} / {r.total} used ({ratio})</text>"
        )
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts)


def amount_chart(
    chart_id: str, title: str, rows: Sequence[PairRow], colour: str, as_bytes: bool = False
) -> str:
    """Horizontal bars of one amount per agent (``PairRow.total``)."""
    if not rows:
        return _empty(chart_id, title, "No effects reported in this window.")
    row_h, top, left, right = 28, 12, 150, 150
    height = top + row_h * len(rows) + 8
    span = WIDTH - left - right
    most = max(max(r.total for r in rows), 1)

    def shown(n: int) -> str:
        return human_bytes(n) if as_bytes else f"{n:,}"

    desc = "; ".join(f"{r.full}: {shown(r.total)}" for r in rows)
    parts = _open(chart_id, height, title, desc)
    for i, r in enumerate(rows):
        y = top + i * row_h
        w = span * r.total / most
        parts.append(f'<g class="row" data-agent="{_a(r.full)}">')
        parts.append(f"<title>{escape(r.full)}: {escape(shown(r.total))}</title>")
        parts.append(
            f'<text x="{left - 8}" y="{y + 14}" text-anchor="end" fill="#0f172a">'
            f"{escape(r.label)}</text>"
        )
        parts.append(
            f'<rect class="bar-amount" x="{left}" y="{y}" width="{w:.1f}" height="18" '
            f'fill="{_a(colour)}"/>'
        )
        parts.append(
            f'<text x="{left + w + 8:.1f}" y="{y + 14}" fill="#0f172a">{escape(shown(r.total))}'
            "</text>"
        )
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts)


def _legend(entries: Sequence[tuple[str, str]], x: int) -> str:
    out = ['<g class="legend">']
    for colour, label in entries:
        out.append(f'<rect x="{x}" y="6" width="12" height="12" fill="{_a(colour)}"/>')
        out.append(f'<text x="{x + 17}" y="16" fill="#0f172a">{escape(label)}</text>')
        x += 30 + 7 * len(label)
    out.append("</g>")
    return "".join(out)


def _time_label(bucket: Bucket, width_seconds: int) -> str:
    if width_seconds >= 86400:
        return bucket.start.strftime("%Y-%m-%d")
    return bucket.start.strftime("%H:%M")


def decisions_chart(buckets: Sequence[Bucket], bucket_seconds: int) -> str:
    """Stacked columns: decisions per time bucket, by decision."""
    chart_id = "chart-decisions"
    title = "Decisions over time, by decision"
    if not buckets:
        return _empty(chart_id, title, "No decisions in this window.")
    top, bottom, left, right = 34, 36, 48, 16
    plot_h = 180
    height = top + plot_h + bottom
    span = WIDTH - left - right
    step = span / len(buckets)
    bar_w = max(step * 0.7, 1.0)
    most = max(max(b.total for b in buckets), 1)
    totals = {d: sum(b.counts.get(d, 0) for b in buckets) for d in _STACK_ORDER}
    minutes = bucket_seconds // 60
    width_text = f"{minutes} min" if bucket_seconds < 3600 else f"{bucket_seconds // 3600} h"
    desc = f"{len(buckets)} buckets of {width_text} (UTC); totals: " + ", ".join(
        f"{d.value} {n}" for d, n in totals.items()
    )
    parts = _open(chart_id, height, title, desc)
    parts.append(
        _legend(
            [(DECISION_COLOURS[d], f"{d.value} ({totals[d]})") for d in _STACK_ORDER],
            left,
        )
    )
    base = top + plot_h
    for value in sorted({0, (most + 1) // 2, most}):
        y = base - plot_h * value / most
        parts.append(
            f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{WIDTH - right}" y2="{y:.1f}" '
            'stroke="#e2e8f0"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#475569">{value}</text>'
        )
    label_every = max(1, len(buckets) // 8)
    for i, bucket in enumerate(buckets):
        x = left + i * step + (step - bar_w) / 2
        y = base
        when = _time_label(bucket, bucket_seconds)
        counts = ", ".join(f"{d.value} {bucket.counts.get(d, 0)}" for d in _STACK_ORDER)
        parts.append(f'<g class="bucket"><title>{escape(when)} UTC: {escape(counts)}</title>')
        for decision in _STACK_ORDER:
            n = bucket.counts.get(decision, 0)
            if not n:
                continue
            h = plot_h * n / most
            y -= h
            parts.append(
                f'<rect class="seg-{decision.value.replace("_", "-")}" x="{x:.1f}" y="{y:.1f}" '
                f'width="{bar_w:.1f}" height="{h:.1f}" fill="{DECISION_COLOURS[decision]}"/>'
            )
        parts.append("</g>")
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{base + 16}" text-anchor="middle" '
                f'fill="#475569">{escape(when)}</text>'
            )
    parts.append(
        f'<text x="{left}" y="{base + 32}" fill="#475569">UTC, {escape(width_text)} per column'
        "</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts)
