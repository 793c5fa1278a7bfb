"""The anomaly signal: a task reading far more than its workflow's tasks usually do.

A read-heavy agent exfiltrating through legitimate queries stays inside its grant and, with a
generous budget, inside its limits too; what gives it away is volume out of line with the
workflow's history. A workflow that declares ``anomaly`` in ``workflows.yaml`` has a baseline:
the ``percentile`` (default 99) of the records, and of the bytes, that its last ``history``
ended tasks each read in total. When a task's reads so far plus what a read call declares pass
the baseline on either measure, the call needs a human (``approval_required``) instead of being
allowed (OWASP ASI10: an agent behaving unlike its peers; ASI02: tool misuse by volume).

No baseline is drawn from fewer than ``min_history`` tasks (default 20): with too little history
nothing is anomalous. A measure that no past task reported (every total 0) is not judged: there is
nothing to compare with. The percentile is the nearest-rank one, so it is always a total some past
task really read. Pure: the history comes from the store, through the service.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_PERCENTILE = 99.0
DEFAULT_MIN_HISTORY = 20
DEFAULT_HISTORY = 1000
MAX_HISTORY = 100_000


@dataclass(frozen=True, slots=True)
class Volume:
    """Records and bytes read (by a task so far, or declared by one call)."""

    records: int = 0
    bytes: int = 0

    def __add__(self, other: Volume) -> Volume:
        return Volume(self.records + other.records, self.bytes + other.bytes)


@dataclass(frozen=True, slots=True)
class AnomalyRule:
    """``anomaly: {percentile: 99, min_history: 20, history: 1000}`` of one workflow."""

    percentile: float = DEFAULT_PERCENTILE
    min_history: int = DEFAULT_MIN_HISTORY
    #: How many of the most recently ended tasks make the baseline.
    history: int = DEFAULT_HISTORY


@dataclass(frozen=True, slots=True)
class Baseline:
    """The thresholds drawn from ``tasks`` past tasks; ``None`` for a measure not judged."""

    tasks: int
    percentile: float
    records: int | None
    bytes: int | None


def nearest_rank(values: Sequence[int], percentile: float) -> int:
    """The nearest-rank percentile of ``values`` (not empty): the smallest value such that at
    least ``percentile`` % of the values are at or below it."""
    ordered = sorted(values)
    rank = max(1, math.ceil(percentile / 100 * len(ordered)))
    return ordered[rank - 1]


def baseline(totals: Sequence[Volume], rule: AnomalyRule) -> Baseline | None:
    """The baseline of past tasks' totals, or ``None`` when there are too few of them."""
    if len(totals) < rule.min_history:
        return None
    records = [t.records for t in totals]
    bytes_ = [t.bytes for t in totals]
    return Baseline(
        tasks=len(totals),
        percentile=rule.percentile,
        records=nearest_rank(records, rule.percentile) if any(records) else None,
        bytes=nearest_rank(bytes_, rule.percentile) if any(bytes_) else None,
    )


def _pct(value: float) -> str:
    text = f"{value:g}"
    suffix = "th"
    if not 10 <= value % 100 < 20 and value == int(value):
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(int(value) % 10, "th")
    return text + suffix


def exceeded(base: Baseline, so_far: Volume, declared: Volume, workflow: str) -> str | None:
    """Why ``so_far + declared`` is anomalous against ``base``, or ``None`` when it is not."""
    total = so_far + declared
    for name, value, threshold in (
        ("records", total.records, base.records),
        ("bytes", total.bytes, base.bytes),
    ):
        if threshold is not None and value > threshold:
            done, asked = getattr(so_far, name), getattr(declared, name)
            return (
                f"this task would have read {value} {name} ({done} so far, {asked} declared by "
                f"this call), above the {_pct(base.percentile)} percentile ({threshold}) of the "
                f"last {base.tasks} ended tasks of workflow {workflow!r}; a human must approve"
            )
    return None
