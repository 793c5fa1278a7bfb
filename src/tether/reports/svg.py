"""The geometry of the report's inline SVG charts: where each bar, column and label goes.

This module only computes positions and the words next to them; the markup is the template
``tether/templates/report/charts.svg`` (rendered with autoescaping). Each chart is one ``<svg>``
with an ``id``, a ``<title>`` and a ``<desc>``, and prints its numbers next to its marks, so it
reads the same in any browser, offline, and to a screen reader. Marks carry classes
(``bar-granted``, ``bar-used``, ``seg-allow``…) tests can find.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

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


@dataclass(frozen=True, slots=True)
class Key:
    """One entry of a legend."""

    x: int
    colour: str
    label: str


@dataclass(frozen=True, slots=True)
class Bar:
    """One agent's row: its name, a bar (and, for pairs, the used part inside), the numbers."""

    full: str
    label: str
    hint: str
    y: int
    width: float
    part: float
    text: str


@dataclass(frozen=True, slots=True)
class Segment:
    decision: str
    colour: str
    y: float
    height: float


@dataclass(frozen=True, slots=True)
class Column:
    hint: str
    x: float
    segments: tuple[Segment, ...]
    label: str | None


@dataclass(frozen=True, slots=True)
class GridLine:
    y: float
    value: int


@dataclass(frozen=True, slots=True)
class Chart:
    """What ``charts.svg`` draws. ``kind`` picks the drawing; ``empty`` charts show ``message``."""

    kind: Literal["empty", "pairs", "amounts", "decisions"]
    id: str
    title: str
    desc: str
    height: int
    width: int = WIDTH
    font: str = FONT
    message: str = ""
    left: int = 0
    right: int = 0
    colour: str = ""
    legend: tuple[Key, ...] = ()
    bars: tuple[Bar, ...] = ()
    grid: tuple[GridLine, ...] = ()
    columns: tuple[Column, ...] = ()
    column_width: float = 0.0
    base: int = 0
    footer: str = ""


def _empty(chart_id: str, title: str, message: str) -> Chart:
    return Chart("empty", chart_id, title, message, 60, message=message)


def _legend(entries: Sequence[tuple[str, str]], x: int) -> tuple[Key, ...]:
    keys = []
    for colour, label in entries:
        keys.append(Key(x, colour, label))
        x += 30 + 7 * len(label)
    return tuple(keys)


def granted_used_chart(rows: Sequence[PairRow]) -> Chart:
    """Horizontal bars: granted triples per agent, with the used part drawn inside."""
    chart_id = "chart-privileges"
    title = "Granted and used (tool, action, dataset) triples per agent"
    if not rows:
        return _empty(chart_id, title, "No grants in this window.")
    row_h, top, left, right = 30, 34, 150, 170
    span = WIDTH - left - right
    most = max(max(r.total for r in rows), 1)
    bars = []
    for i, r in enumerate(rows):
        ratio = f"{100 * r.part / r.total:.0f}%" if r.total else "n/a"
        bars.append(
            Bar(
                full=r.full,
                label=r.label,
                hint=f"{r.full}: {r.part} of {r.total} granted triples used",
                y=top + i * row_h,
                width=span * r.total / most,
                part=span * r.part / most,
                text=f"{r.part} / {r.total} used ({ratio})",
            )
        )
    return Chart(
        "pairs",
        chart_id,
        title,
        "; ".join(f"{r.full}: {r.part} of {r.total} used" for r in rows),
        top + row_h * len(rows) + 10,
        left=left,
        legend=_legend([("#cbd5e1", "granted"), ("#1d4ed8", "used")], left),
        bars=tuple(bars),
    )


def amount_chart(
    chart_id: str, title: str, rows: Sequence[PairRow], colour: str, as_bytes: bool = False
) -> Chart:
    """Horizontal bars of one amount per agent (``PairRow.total``)."""
    if not rows:
        return _empty(chart_id, title, "No effects reported in this window.")
    row_h, top, left, right = 28, 12, 150, 150
    span = WIDTH - left - right
    most = max(max(r.total for r in rows), 1)

    def shown(n: int) -> str:
        return human_bytes(n) if as_bytes else f"{n:,}"

    bars = tuple(
        Bar(
            full=r.full,
            label=r.label,
            hint=f"{r.full}: {shown(r.total)}",
            y=top + i * row_h,
            width=span * r.total / most,
            part=0.0,
            text=shown(r.total),
        )
        for i, r in enumerate(rows)
    )
    return Chart(
        "amounts",
        chart_id,
        title,
        "; ".join(f"{r.full}: {shown(r.total)}" for r in rows),
        top + row_h * len(rows) + 8,
        left=left,
        colour=colour,
        bars=bars,
    )


def _time_label(bucket: Bucket, width_seconds: int) -> str:
    if width_seconds >= 86400:
        return bucket.start.strftime("%Y-%m-%d")
    return bucket.start.strftime("%H:%M")


def decisions_chart(buckets: Sequence[Bucket], bucket_seconds: int) -> Chart:
    """Stacked columns: decisions per time bucket, by decision."""
    chart_id = "chart-decisions"
    title = "Decisions over time, by decision"
    if not buckets:
        return _empty(chart_id, title, "No decisions in this window.")
    top, bottom, left, right = 34, 36, 48, 16
    plot_h = 180
    span = WIDTH - left - right
    step = span / len(buckets)
    bar_w = max(step * 0.7, 1.0)
    most = max(max(b.total for b in buckets), 1)
    totals = {d: sum(b.counts.get(d, 0) for b in buckets) for d in _STACK_ORDER}
    minutes = bucket_seconds // 60
    width_text = f"{minutes} min" if bucket_seconds < 3600 else f"{bucket_seconds // 3600} h"
    base = top + plot_h
    label_every = max(1, len(buckets) // 8)
    columns = []
    for i, bucket in enumerate(buckets):
        y: float = base
        segments = []
        for decision in _STACK_ORDER:
            n = bucket.counts.get(decision, 0)
            if n:
                h = plot_h * n / most
                y -= h
                segments.append(Segment(decision.value, DECISION_COLOURS[decision], y, h))
        when = _time_label(bucket, bucket_seconds)
        counts = ", ".join(f"{d.value} {bucket.counts.get(d, 0)}" for d in _STACK_ORDER)
        columns.append(
            Column(
                hint=f"{when} UTC: {counts}",
                x=left + i * step + (step - bar_w) / 2,
                segments=tuple(segments),
                label=when if i % label_every == 0 else None,
            )
        )
    return Chart(
        "decisions",
        chart_id,
        title,
        f"{len(buckets)} buckets of {width_text} (UTC); totals: "
        + ", ".join(f"{d.value} {n}" for d, n in totals.items()),
        top + plot_h + bottom,
        left=left,
        legend=_legend(
            [(DECISION_COLOURS[d], f"{d.value} ({totals[d]})") for d in _STACK_ORDER], left
        ),
        grid=tuple(
            GridLine(base - plot_h * value / most, value)
            for value in sorted({0, (most + 1) // 2, most})
        ),
        columns=tuple(columns),
        column_width=bar_w,
        base=base,
        right=WIDTH - right,
        footer=f"UTC, {width_text} per column",
    )
