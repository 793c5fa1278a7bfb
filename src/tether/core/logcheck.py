"""Checking the partitioned audit log against its stored heads and signed checkpoints.

:func:`verify_log` reads the records once, in any interleaving of the partitions that keeps each
partition in ``seq`` order (the store's log order, an export's lines), and checks:

- each partition as a chain (:func:`tether.core.audit.verify_chain`, record by record): no gap,
  fork, reorder, edit or move between partitions;
- every checkpoint's signature, and that the checkpoints only grew: each partition a checkpoint
  covers is in every later one, at the same size or more (none dropped, none cut back);
- each partition against every checkpoint covering it: its Merkle root and head at the signed
  size are the signed ones, and the partition reaches that size (not cut below it, not dropped);
- each partition against its stored head, when the store's heads are given (a tail cut and the
  head moved back is caught by a checkpoint; a tail cut alone by the head).

A checkpoint signed before partitions (v1) covers the legacy partition alone.
"""

from __future__ import annotations

import hmac
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tether.core.audit import GENESIS_HASH, LEGACY_PARTITION, AuditRecord, ChainFormat, ChainHead
from tether.core.audit import verify_chain as _verify_chain
from tether.core.checkpoint import Checkpoint, PartitionHead, Signer, Verifier
from tether.core.merkle import Frontier, leaf_hash


@dataclass(frozen=True, slots=True)
class LogReport:
    """The log checked link by link and against every checkpoint given."""

    ok: bool
    records: int
    first_bad_seq: int | None = None
    problem: str | None = None
    checkpoints: int = 0
    """How many checkpoints matched the records (every partition they cover)."""
    anchored: int = 0
    """How many records (over all partitions) a good checkpoint covers."""
    frontiers: dict[str, Frontier] = field(default_factory=dict)
    """Each partition's Merkle frontier, when every record was read."""
    heads: dict[str, str] = field(default_factory=dict)
    """Each partition's last record's hash."""
    format: ChainFormat | None = None
    partition: str | None = None
    """The partition ``first_bad_seq`` is in, when the log is broken."""

    @property
    def unanchored(self) -> int:
        """Records after the last checkpoint: intact as chains, not yet signed."""
        return max(0, self.records - self.anchored)

    @property
    def frontier(self) -> Frontier | None:
        """The legacy partition's frontier when it is the only one (what a v1 checkpoint signs)."""
        if set(self.frontiers) <= {LEGACY_PARTITION}:
            return self.frontiers.get(LEGACY_PARTITION, Frontier())
        return None

    @property
    def head(self) -> str:
        """The legacy partition's head hash when it is the only one; else 64 zeros."""
        if set(self.heads) <= {LEGACY_PARTITION}:
            return self.heads.get(LEGACY_PARTITION, GENESIS_HASH)
        return GENESIS_HASH


@dataclass
class _Partition:
    name: str
    after: ChainHead | None = None
    frontier: Frontier = field(default_factory=Frontier)
    #: (checkpoint index, what it signs of this partition), smallest size first.
    pending: list[tuple[int, PartitionHead]] = field(default_factory=list)
    anchored: int = 0

    @property
    def size(self) -> int:
        return 0 if self.after is None else self.after.seq


class _Broken(Exception):
    def __init__(self, partition: str, seq: int | None, problem: str) -> None:
        self.partition, self.seq, self.problem = partition, seq, problem


def verify_log(
    records: Iterable[AuditRecord],
    checkpoints: Sequence[Checkpoint],
    verify: Verifier,
    *,
    head: ChainHead | None = None,
    heads: Mapping[str, ChainHead | None] | None = None,
    format: ChainFormat | None = None,
) -> LogReport:
    """Check ``records`` (every partition, each from its first record and in ``seq`` order)
    against the stored ``heads`` when known (``head``: the legacy partition's, for a log of that
    partition alone) and against every checkpoint. See the module docstring."""
    stored = dict(heads) if heads is not None else None
    if stored is None and head is not None:
        stored = {LEGACY_PARTITION: head}
    ordered = sorted(checkpoints, key=lambda c: c.size)
    walk = _LogWalk(ordered, format)
    try:
        for cp in ordered:
            if not verify(cp):
                raise _Broken(
                    "",
                    cp.size,
                    f"the checkpoint of size {cp.size} (signed {cp.at}) does not carry a good "
                    "signature under the audit key: it was forged or altered, or another key "
                    "signed it",
                )
        _check_growth(ordered)
        walk.start()
        for record in records:
            walk.step(record)
        walk.finish(stored)
    except _Broken as broken:
        return LogReport(
            False,
            walk.records,
            broken.seq,
            broken.problem,
            checkpoints=walk.matched(),
            anchored=walk.anchored(),
            partition=broken.partition or None,
        )
    return LogReport(
        True,
        walk.records,
        checkpoints=walk.matched(),
        anchored=walk.anchored(),
        frontiers={n: p.frontier for n, p in walk.partitions.items()},
        heads={n: GENESIS_HASH if p.after is None else p.after.hash for n, p in walk.parts()},
        format=walk.format,
    )


def _check_growth(ordered: Sequence[Checkpoint]) -> None:
    """INVARIANT: checkpoints only grow: each partition one covers is in every later one, at
    the same size or more."""
    for older, newer in itertools.pairwise(ordered):
        before, after = older.views(), newer.views()
        for name, seen in before.items():
            later = after.get(name)
            if later is None or later.size < seen.size:
                now = "no longer covered" if later is None else f"covered at {later.size} records"
                raise _Broken(
                    name,
                    seen.size,
                    f"partition {name!r} has {seen.size} records in the checkpoint signed "
                    f"{older.at} but is {now} in the later one signed {newer.at}: a partition "
                    "was dropped or cut back",
                )


class _LogWalk:
    def __init__(self, ordered: Sequence[Checkpoint], format: ChainFormat | None) -> None:
        self.checkpoints = ordered
        self.format = format
        self.records = 0
        self.partitions: dict[str, _Partition] = {}
        self._unmatched = [len(cp.views()) for cp in ordered]
        for index, cp in enumerate(ordered):
            for name, view in sorted(cp.views().items()):
                self._partition(name).pending.append((index, view))

    def parts(self) -> Iterable[tuple[str, _Partition]]:
        return self.partitions.items()

    def _partition(self, name: str) -> _Partition:
        found = self.partitions.get(name)
        if found is None:
            found = self.partitions[name] = _Partition(name)
        return found

    def matched(self) -> int:
        return sum(1 for left in self._unmatched if left == 0)

    def anchored(self) -> int:
        return sum(p.anchored for p in self.partitions.values())

    def start(self) -> None:
        for part in self.partitions.values():
            self._check(part)  # checkpoints of an empty partition

    def step(self, record: AuditRecord) -> None:
        self.records += 1
        part = self._partition(record.partition)
        self.format = self.format or record.format
        link = _verify_chain([record], after=part.after, format=self.format)
        if not link.ok:
            raise _Broken(part.name, link.first_bad_seq, _in(part.name, link.problem))
        part.after = ChainHead(record.seq, record.hash)
        part.frontier = part.frontier.append(leaf_hash(record.leaf()))
        self._check(part)

    def _check(self, part: _Partition) -> None:
        while part.pending and part.pending[0][1].size == part.size:
            index, view = part.pending.pop(0)
            cp = self.checkpoints[index]
            head = GENESIS_HASH if part.after is None else part.after.hash
            wrong = self.format is not None and cp.format is not self.format
            same = hmac.compare_digest(view.root, part.frontier.root().hex()) and (
                hmac.compare_digest(view.head, head)
            )
            if wrong or not same:
                first = part.anchored + 1
                raise _Broken(
                    part.name,
                    first,
                    f"records {first}..{view.size}{_of(part.name)} are not those the "
                    f"checkpoint of size {cp.size} (signed {cp.at}) covers: a record among them "
                    "was changed, removed, reordered or inserted, and the later hashes "
                    "recomputed",
                )
            self._unmatched[index] -= 1
            part.anchored = view.size

    def finish(self, heads: Mapping[str, ChainHead | None] | None) -> None:
        for part in self.partitions.values():
            if part.pending:
                last = max(part.pending, key=lambda item: item[1].size)
                cp, view = self.checkpoints[last[0]], last[1]
                present = part.after is not None or (heads is not None and part.name in heads)
                if not present and part.name != LEGACY_PARTITION:
                    raise _Broken(
                        part.name,
                        1,
                        f"partition {part.name!r}, which the checkpoint signed {cp.at} covers "
                        f"with {view.size} records, is gone: a whole partition was dropped",
                    )
                raise _Broken(
                    part.name,
                    part.size + 1,
                    f"{_the(part.name)} ends at record {part.size}, but a checkpoint signed "
                    f"{cp.at} covers {view.size} records: records were removed from the end "
                    "(and the stored head moved back)",
                )
        if heads is None:
            return
        for name in sorted(set(self.partitions) - set(heads)):
            if self.partitions[name].after is not None:
                raise _Broken(
                    name,
                    1,
                    f"partition {name!r} holds records but its stored head is missing: the "
                    "database was changed outside tether",
                )
        for name, stored in sorted(heads.items()):
            part = self._partition(name)
            if stored is None and part.after is not None:
                raise _Broken(
                    name,
                    1,
                    _in(
                        name,
                        "records after the store's head (record 0) were appended outside tether",
                    ),
                )
            report = _verify_chain([], stored, after=part.after)
            if not report.ok:
                raise _Broken(name, report.first_bad_seq, _in(name, report.problem))


def _the(partition: str) -> str:
    """How a message names a partition: the legacy one (the whole log of a store that has no
    other) as "the log", as before partitions."""
    return "the log" if partition == LEGACY_PARTITION else f"partition {partition!r}"


def _of(partition: str) -> str:
    return "" if partition == LEGACY_PARTITION else f" of partition {partition!r}"


def _in(partition: str, problem: str | None) -> str:
    return str(problem) if partition == LEGACY_PARTITION else f"partition {partition!r}: {problem}"


def sign_log(signer: Signer, report: LogReport, at: str) -> Checkpoint:
    """A checkpoint over exactly the records ``report`` read (an intact log): as before
    partitions (v1) while the legacy partition is the only one, else over every partition."""
    format = report.format or ChainFormat.JCS
    if report.frontier is not None:
        return signer.checkpoint(format, report.frontier, report.head, at)
    heads = {name: (report.frontiers[name], report.heads[name]) for name in report.frontiers}
    return signer.checkpoint_all(format, heads, at)


__all__ = ["LogReport", "sign_log", "verify_log"]
