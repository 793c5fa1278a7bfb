"""Making signed checkpoints of the audit log (:mod:`tether.core.checkpoint`), off the request path.

The server's housekeeping calls :meth:`Checkpointer.tick` every few seconds. A checkpoint is made
when ``every_records`` records have been written since the last one, or ``every_seconds`` have
passed and at least one has; and at shutdown (``force``), so a clean stop leaves nothing
unanchored. Making one reads only the records after the last checkpoint: it checks their links
from the last checkpoint's head (a chain already broken is never signed), extends the Merkle tree
from the stored frontier, signs, and stores the result, which the store accepts only if it is
still the newest and its last record unchanged (several replicas may tick at once).

Each witness (a file, a webhook) is then sent the newest checkpoint it has not had yet; one that
fails is told again on the next tick. A witness holds a copy outside the database, so deleting
checkpoints from the store, or cutting the log back to an old one, is still seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from tether.core.audit import GENESIS_HASH, AuditRecord, ChainFormat, ChainHead, verify_chain
from tether.core.checkpoint import Checkpoint, Signer, Verifier
from tether.core.errors import ErrorCode, Unavailable
from tether.core.merkle import Frontier, leaf_hash
from tether.service.ports import Clock


class AuditLog(Protocol):
    """The chain, as the store reads it."""

    def chain_head(self) -> ChainHead | None: ...

    def audit_records(self, after_seq: int = 0) -> Iterator[AuditRecord]: ...


class CheckpointStore(Protocol):
    @property
    def chain_format(self) -> ChainFormat: ...

    def latest(self) -> tuple[Checkpoint, Frontier] | None: ...

    def add(self, checkpoint: Checkpoint, frontier: Frontier) -> bool: ...


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
        head = self._log.chain_head()
        seq = 0 if head is None else head.seq
        latest = self._checkpoints.latest()
        if latest is not None:
            self._newest = latest[0]
        size = 0 if latest is None else latest[0].size
        if seq < size:
            raise Unavailable(
                f"the audit chain's head (record {seq}) is behind its last checkpoint (record "
                f"{size}): records were removed from the end; run `tether audit verify`",
                code=ErrorCode.AUDIT_UNAVAILABLE,
            )
        if seq == size:
            return None
        if not (force or latest is None or seq - size >= self._schedule.every_records):
            try:
                elapsed = (self._clock.now() - datetime.fromisoformat(latest[0].at)).total_seconds()
            except (ValueError, TypeError):
                elapsed = self._schedule.every_seconds  # unreadable: _make checks its signature
            if elapsed < self._schedule.every_seconds:
                return None
        return self._make(latest)

    def _make(self, latest: tuple[Checkpoint, Frontier] | None) -> Checkpoint | None:
        format = self._checkpoints.chain_format
        if latest is None:
            frontier, after = Frontier(), None
        else:
            last, frontier = latest
            if not self._verify(last) or last.format is not format:
                raise Unavailable(
                    f"the stored checkpoint of size {last.size} is not signed by this audit key "
                    "(or not of this chain's format): no checkpoint extends it; run `tether "
                    "audit verify`",
                    code=ErrorCode.AUDIT_UNAVAILABLE,
                )
            after = ChainHead(last.size, last.head)
        grown = _Growth(frontier, GENESIS_HASH if after is None else after.hash)
        report = verify_chain(
            grown.follow(self._log.audit_records(0 if after is None else after.seq)),
            after=after,
            format=format,
        )
        if not report.ok:
            raise Unavailable(
                f"the audit chain is broken at record {report.first_bad_seq} ({report.problem}): "
                "it is not signed; run `tether audit verify`",
                code=ErrorCode.AUDIT_UNAVAILABLE,
            )
        if grown.frontier.size == frontier.size:
            return None
        checkpoint = self._signer.checkpoint(
            format, grown.frontier, grown.head, self._clock.now().isoformat()
        )
        if not self._checkpoints.add(checkpoint, grown.frontier):
            return None  # another replica stored a newer one meanwhile
        self._newest = checkpoint
        return checkpoint

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
