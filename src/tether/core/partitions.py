"""The partitioned audit log read as one: its stable order, and its heads.

Each writer (replica) appends to a chain of its own (:mod:`tether.core.audit`), so the log is a
set of partitions, each ordered by ``seq``. Readers that show the log as one sequence (``tether
audit tail``, ``export``, reports) use :func:`log_order`: a merge of the partitions that keeps
each partition in ``seq`` order and, between partitions, takes the record with the earliest time
(``at``), then the smaller partition id, then the smaller ``seq``. The order depends only on the
records, so two reads of the same log give it identically. Times come from the replicas' clocks,
so records of different partitions written within the clocks' skew may show in either order; the
chain each one is in is what proves its order, never its place in the merge.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping

from tether.core.audit import AuditRecord, ChainHead


def _merge_key(record: AuditRecord) -> tuple[str, str, int]:
    return (record.at, record.partition, record.seq)


def log_order(partitions: Iterable[Iterable[AuditRecord]]) -> Iterator[AuditRecord]:
    """The records of every partition (each given in ``seq`` order) in the log's stable order
    (see the module docstring)."""
    return heapq.merge(*partitions, key=_merge_key)


def total_size(heads: Mapping[str, ChainHead | None]) -> int:
    """How many records the partitions with these heads hold together."""
    return sum(0 if head is None else head.seq for head in heads.values())


__all__ = ["log_order", "total_size"]
