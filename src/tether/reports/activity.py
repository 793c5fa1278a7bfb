"""What the charts show besides privilege: decisions over time, and data read per agent.

Decisions over time are counted per decision and per bucket of a fixed width, aligned to the
Unix epoch; the width is the smallest of :data:`BUCKET_WIDTHS` that needs no more than
:data:`MAX_BUCKETS` buckets for the window's decisions. Records and bytes read are the sums of
what effect records report (``records``, ``bytes``; missing counts as 0) per agent.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from tether.core.audit import AuditKind, AuditRecord
from tether.core.verdict import Decision
from tether.reports.records import DECISION_KINDS, Window, count, decision_facts, windowed

BUCKET_WIDTHS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
MAX_BUCKETS = 48


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    counts: dict[Decision, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class Reads:
    agent: str
    effects: int
    records: int
    bytes: int


@dataclass(frozen=True, slots=True)
class Activity:
    bucket_seconds: int
    buckets: tuple[Bucket, ...]
    reads: tuple[Reads, ...]

    @property
    def decisions(self) -> dict[Decision, int]:
        out = dict.fromkeys(Decision, 0)
        for bucket in self.buckets:
            for decision, n in bucket.counts.items():
                out[decision] += n
        return out


def activity(records: Iterable[AuditRecord], window: Window | None = None) -> Activity:
    per_second: dict[int, Counter[Decision]] = defaultdict(Counter)
    effects: Counter[str] = Counter()
    rows: Counter[str] = Counter()
    size: Counter[str] = Counter()
    for record, at in windowed(records, window or Window()):
        if record.kind in DECISION_KINDS:
            per_second[int(at.timestamp())][decision_facts(record).decision] += 1
        elif record.kind is AuditKind.EFFECT:
            agent = record.agent or "(unknown agent)"
            effects[agent] += 1
            rows[agent] += count(record, record.body, "records")
            size[agent] += count(record, record.body, "bytes")
    reads = tuple(Reads(a, effects[a], rows[a], size[a]) for a in sorted(effects))
    if not per_second:
        return Activity(BUCKET_WIDTHS[0], (), reads)
    first, last = min(per_second), max(per_second)
    width = BUCKET_WIDTHS[-1]
    for candidate in BUCKET_WIDTHS:
        if last // candidate - first // candidate + 1 <= MAX_BUCKETS:
            width = candidate
            break
    grouped: dict[int, Counter[Decision]] = defaultdict(Counter)
    for second, counts in per_second.items():
        grouped[second // width] += counts
    buckets = tuple(
        Bucket(
            datetime.fromtimestamp(index * width, UTC),
            {d: grouped[index][d] for d in Decision},
        )
        for index in range(first // width, last // width + 1)
    )
    return Activity(width, buckets, reads)
