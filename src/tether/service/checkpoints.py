"""Making signed checkpoints of the audit log (:mod:`tether.core.checkpoint`), off the request path.

The server's housekeeping calls :meth:`Checkpointer.tick` every few seconds. A checkpoint is made
when ``every_records`` records have been written (over all partitions) since the last one, or
``every_seconds`` have passed and at least one has; and at shutdown (``force``), so a clean stop
leaves nothing unanchored. Making one reads only the records after the last checkpoint, partition
by partition: it checks their links from the last checkpoint's head of that partition (a chain
already broken is never signed), extends the partition's Merkle tree from the stored frontier,
signs every partition's head together, and stores the result, which the store accepts only if it
is still the newest and every record it names unchanged (several replicas may tick at once).

While the legacy partition is the only one holding records (a single SQLite process, a store from
before partitions), the checkpoint is the one signed before partitions (v1): nothing changes for
its readers. Once another partition holds records, checkpoints cover every partition (v2).

Records this process sealed itself are not read back: their leaf hashes were kept when their
transaction committed (:mod:`tether.store.sealed`), and the partition's tree is extended from
those when they cover, linked, everything from the last checkpoint's head to the head signed.
What this process did not write (another replica's partition, a CLI command's record, anything
from before it started) is read and verified as above.

Each witness (a file, a webhook) is then sent the newest checkpoint it has not had yet; one that
fails is told again on the next tick. A witness holds a copy outside the database, so deleting
checkpoints from the store, or cutting the log back to an old one, is still seen.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from tether.core.audit import (
    GENESIS_HASH,
    LEGACY_PARTITION,
    AuditRecord,
    ChainFormat,
    ChainHead,
    verify_chain,
)
from tether.core.checkpoint import Checkpoint, Signer, Verifier
from tether.core.errors import ErrorCode, Unavailable
from tether.core.merkle import Frontier, leaf_hash
from tether.service.ports import Clock


class AuditLog(Protocol):
    """The partitioned log, as the store reads it."""

    def chain_heads(self) -> Mapping[str, ChainHead | None]: ...

    def audit_records(
        self, after_seq: int = 0, partition: str | None = None
    ) -> Iterator[AuditRecord]: ...

    def keep_sealed(self) -> None:
        """Keep the leaf hashes of what this process commits from now on."""
        ...

    def sealed_leaves(
        self, partition: str, after: ChainHead | None, upto: ChainHead
    ) -> list[bytes] | None:
        """The leaf hashes of ``partition``'s records after ``after`` through ``upto``, linked
        from ``after`` to ``upto``, when this process sealed and committed them all; else
        ``None``."""
        ...

    def sealed_hash(self, partition: str, seq: int) -> str | None:
        """The hash this process sealed as ``partition``'s record ``seq``, if it did."""
        ...


class CheckpointStore(Protocol):
    @property
    def chain_format(self) -> ChainFormat: ...

    def latest(self) -> tuple[Checkpoint, dict[str, Frontier]] | None: ...

    def add(self, checkpoint: Checkpoint, frontiers: Mapping[str, Frontier]) -> bool: ...


class Witness(Protocol):
    """Somewhere outside the database that keeps each checkpoint it is sent."""

    @property
    def name(self) -> str:
        """What logs call it: never a URL's credentials."""
        ...

    def send(self, checkpoint: Checkpoint) -> None:
        """Deliver or raise."""
        ...


DEFAULT_EVERY_RECORDS = 1000
DEFAULT_EVERY_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class CheckpointSchedule:
    every_records: int = DEFAULT_EVERY_RECORDS
    every_seconds: float = DEFAULT_EVERY_SECONDS

    def __post_init__(self) -> None:
        if self.every_records < 1 or self.every_seconds <= 0:
            raise ValueError("checkpoints are made every one record or more, every >0 seconds")


WitnessError = Callable[[Witness, Exception], None]


class Checkpointer:
    def __init__(
        self,
        *,
        log: AuditLog,
        checkpoints: CheckpointStore,
        signer: Signer,
        verify: Verifier,
        clock: Clock,
        schedule: CheckpointSchedule | None = None,
        witnesses: Sequence[Witness] = (),
        on_witness_error: WitnessError | None = None,
    ) -> None:
        self._log = log
        self._checkpoints = checkpoints
        self._signer = signer
        self._verify = verify
        self._clock = clock
        self._schedule = schedule or CheckpointSchedule()
        self._witnesses = tuple(witnesses)
        self._on_witness_error = on_witness_error
        self._delivered: dict[int, int] = {}
        self._newest: Checkpoint | None = None
        log.keep_sealed()

    def tick(self, *, force: bool = False) -> Checkpoint | None:
        """Make a checkpoint if one is due (any new record at all when ``force``), then bring
        the witnesses up to the newest. The checkpoint made, if any.

        Raises ``Unavailable(AUDIT_UNAVAILABLE)`` when the store cannot be read or written, and
        when the log no longer matches its last checkpoint (nothing is signed then)."""
        try:
            return self._maybe_checkpoint(force)
        finally:
            self._deliver()

    def _maybe_checkpoint(self, force: bool) -> Checkpoint | None:
        heads = self._log.chain_heads()
        latest = self._checkpoints.latest()
        if latest is not None:
            self._newest = latest[0]
        signed = {} if latest is None else latest[0].views()
        for name, view in signed.items():
            head = heads.get(name)
            seq = 0 if head is None else head.seq
            if seq < view.size:
                raise Unavailable(
                    f"the head of audit partition {name!r} (record {seq}) is behind its last "
                    f"checkpoint (record {view.size}): records were removed from the end; run "
                    "`tether audit verify`",
                    code=ErrorCode.AUDIT_UNAVAILABLE,
                )
        total = sum(0 if h is None else h.seq for h in heads.values())
        size = 0 if latest is None else latest[0].size
        if total == size:
            return None
        if not (force or latest is None or total - size >= self._schedule.every_records):
            try:
                elapsed = (self._clock.now() - datetime.fromisoformat(latest[0].at)).total_seconds()
            except (ValueError, TypeError):
                elapsed = self._schedule.every_seconds  # unreadable: _make checks its signature
            if elapsed < self._schedule.every_seconds:
                return None
        return self._make(latest, heads)

    def _make(
        self,
        latest: tuple[Checkpoint, dict[str, Frontier]] | None,
        heads: Mapping[str, ChainHead | None],
    ) -> Checkpoint | None:
        format = self._checkpoints.chain_format
        views = {} if latest is None else latest[0].views()
        frontiers = {} if latest is None else dict(latest[1])
        if latest is not None:
            last = latest[0]
            if not self._verify(last) or last.format is not format:
                raise Unavailable(
                    f"the stored checkpoint of size {last.size} is not signed by this audit key "
                    "(or not of this chain's format): no checkpoint extends it; run `tether "
                    "audit verify`",
                    code=ErrorCode.AUDIT_UNAVAILABLE,
                )
        grown: dict[str, _Growth] = {}
        for name in sorted(set(views) | {n for n, h in heads.items() if h is not None}):
            view = views.get(name)
            after = None if view is None or view.size == 0 else ChainHead(view.size, view.head)
            growth = _Growth(
                frontiers.get(name, Frontier()), GENESIS_HASH if after is None else after.hash
            )
            head = heads.get(name)
            sealed = None if head is None else self._log.sealed_leaves(name, after, head)
            if head is not None and sealed is not None:
                # Sealed and committed by this process, after the signed head: nothing to read.
                growth.frontier = growth.frontier.extend(sealed)
                growth.head = head.hash
                grown[name] = growth
                continue
            report = verify_chain(
                growth.follow(
                    self._as_sealed(
                        name,
                        self._log.audit_records(0 if after is None else after.seq, partition=name),
                    )
                ),
                after=after,
                format=format,
                partition=name,
            )
            if not report.ok:
                raise Unavailable(
                    f"audit partition {name!r} is broken at record {report.first_bad_seq} "
                    f"({report.problem}): it is not signed; run `tether audit verify`",
                    code=ErrorCode.AUDIT_UNAVAILABLE,
                )
            grown[name] = growth
        if all(g.frontier.size == frontiers.get(n, Frontier()).size for n, g in grown.items()):
            return None
        at = self._clock.now().isoformat()
        legacy_only = set(grown) <= {LEGACY_PARTITION} and (
            latest is None or not latest[0].partitions
        )
        if legacy_only:
            growth = grown[LEGACY_PARTITION]
            checkpoint = self._signer.checkpoint(format, growth.frontier, growth.head, at)
        else:
            checkpoint = self._signer.checkpoint_all(
                format, {n: (g.frontier, g.head) for n, g in grown.items()}, at
            )
        if not self._checkpoints.add(checkpoint, {n: g.frontier for n, g in grown.items()}):
            return None  # another replica stored a newer one meanwhile
        self._newest = checkpoint
        return checkpoint

    def _as_sealed(self, partition: str, records: Iterable[AuditRecord]) -> Iterator[AuditRecord]:
        """``records``, refusing one that is not what this process sealed under its number."""
        for record in records:
            sealed = self._log.sealed_hash(partition, record.seq)
            if sealed is not None and not hmac.compare_digest(sealed, record.hash):
                raise Unavailable(
                    f"audit record {record.seq} of partition {partition!r} is not the record "
                    "this process wrote under that number: it was changed in the database, so "
                    "it is not signed; run `tether audit verify`",
                    code=ErrorCode.AUDIT_UNAVAILABLE,
                )
            yield record

    def _deliver(self) -> None:
        newest = self._newest
        if newest is None:
            return
        for index, witness in enumerate(self._witnesses):
            if self._delivered.get(index, -1) >= newest.size:
                continue
            try:
                witness.send(newest)
            except Exception as error:  # any failure of any witness: told again next tick
                if self._on_witness_error is not None:
                    self._on_witness_error(witness, error)
                continue
            self._delivered[index] = newest.size


class _Growth:
    """Extends a Merkle frontier with each record as the chain check reads it."""

    def __init__(self, frontier: Frontier, head: str) -> None:
        self.frontier = frontier
        self.head = head

    def follow(self, records: Iterable[AuditRecord]) -> Iterator[AuditRecord]:
        for record in records:
            yield record  # checked by verify_chain before it asks for the next one
            self.frontier = self.frontier.append(leaf_hash(record.leaf()))
            self.head = record.hash


__all__ = [
    "DEFAULT_EVERY_RECORDS",
    "DEFAULT_EVERY_SECONDS",
    "AuditLog",
    "CheckpointSchedule",
    "CheckpointStore",
    "Checkpointer",
    "Witness",
]
