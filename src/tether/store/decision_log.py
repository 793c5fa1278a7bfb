"""Decisions and the effects reported for them, in SQL: the store's ``DecisionLog`` role.

A decision's write (:class:`~tether.service.ports.DecisionWrite`: the decision row, its audit
record, budget holds, task progress, an approval it creates or uses, a lease it minted) is one
unit, group-committed with the decisions recorded at the same moment
(:mod:`tether.store.groupcommit`): one transaction for the batch, each write in a savepoint of its
own so a refused write (budget over, approval used) rolls back alone, and no result handed out
before the commit. Threads submit and wait; an event loop awaits ``record_async``.

An effect (or an observation, :mod:`tether.store.observations`) may join the same group commit
(:meth:`DecisionLogSql.queue`), for an enforcement point that answers before it is written: it
is written in the next batch, in its own savepoint like a decision, with no transaction of its
own; until that batch is done the decisions on its tasks wait
(:mod:`tether.store.pending_effects`). Writes are made in the order they were queued, and
closing the log writes what is queued first.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, cast

from sqlalchemy import bindparam, exists, func, insert, select
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import SQLAlchemyError

from tether.core.approval import ApprovalState
from tether.core.audit import AuditRecord
from tether.core.budget import Hold
from tether.core.effect import Effect
from tether.core.errors import Conflict, ErrorCode, NotFound, TetherError, Unavailable
from tether.core.ids import ApprovalId, DecisionId, TaskId
from tether.service.ports import AuditEntry, DecisionRecord, DecisionWrite, TaskActivity
from tether.store import approvals as approvals_sql
from tether.store import budgets as budgets_sql
from tether.store import codec
from tether.store import leases as leases_sql
from tether.store.db import STORE, Database, Writer, unavailable
from tether.store.driver import DriverStatement
from tether.store.groupcommit import GroupCommit, Pending
from tether.store.pending_effects import PendingEffects
from tether.store.pgbatch import HandBack, PostgresBatch, plain
from tether.store.schema import budget_holds, decisions, effects

_INSERT_DECISION = insert(decisions)
#: How many decisions committed here are kept for :meth:`DecisionLogSql.get`.
RECENT_DECISIONS = 4096


# The effect's insert, adding nothing when the decision already has one (see record_effect).
# RETURNING says whether it added the row (a driver's rowcount for it is not to be relied on).
_INSERT_EFFECT = {
    name: dialect.insert(effects)
    .on_conflict_do_nothing(index_elements=["decision_id"])
    .returning(effects.c.effect_id)
    for name, dialect in (("postgresql", pg_dialect), ("sqlite", sqlite_dialect))
}


_SELECT_DECISION = select(decisions).where(decisions.c.decision_id == bindparam("b_id"))
_SELECT_EFFECT = select(effects).where(effects.c.decision_id == bindparam("b_id"))

# The decision an effect reports on, and the effect already reported for it, in one round trip.
# Whether it holds any budget is read too: the holds were written with the decision, and
# without any there is nothing to settle (three statements fewer).
_EFFECT_SLOT = (
    select(
        decisions.c.decision_id,
        effects.c.effect_id,
        exists().where(budget_holds.c.decision_id == decisions.c.decision_id).label("held"),
    )
    .select_from(decisions.outerjoin(effects, effects.c.decision_id == decisions.c.decision_id))
    .where(decisions.c.decision_id == bindparam("b_id"))
)


class QueuedWrite(Protocol):
    """A write queued after its call was answered: made in the next batch, in a savepoint of
    its own; the decisions on ``task_ids`` wait for it."""

    @property
    def task_ids(self) -> Sequence[str]:
        """The tasks whose decisions must not read their facts before this write."""
        ...

    @property
    def key(self) -> str:
        """What this write (and the same write, retried) is known by while it fails."""
        ...

    @property
    def locks(self) -> Sequence[str]:
        """The task rows it updates: locked with the batch's, in one order."""
        ...

    def apply(self, tx: Writer) -> object:
        """Make the write in ``tx``; raise ``TetherError`` to refuse it for good."""
        ...


@dataclass(frozen=True, slots=True)
class EffectWrite:
    """An effect queued into the group commit, with its audit record (which names the task
    whose decisions wait for it), and perhaps the observation of the same call's result
    (``observed``), written after it in the same savepoint: one write, committed together."""

    effect: Effect
    audit: AuditEntry
    observed: QueuedWrite | None = None

    @property
    def task_ids(self) -> Sequence[str]:
        own = () if self.audit.task_id is None else (self.audit.task_id,)
        if self.observed is None:
            return own
        return tuple(dict.fromkeys((*own, *self.observed.task_ids)))

    @property
    def key(self) -> str:
        return f"effect {self.effect.decision_id}"

    @property
    def locks(self) -> Sequence[str]:
        # The effect settles the decision's own holds, no task row.
        return () if self.observed is None else self.observed.locks

    def apply(self, tx: Writer) -> AuditRecord | TetherError:
        """The effect's record; with ``observed``, a refusal of the effect is returned (it
        wrote nothing) and the observation written all the same: what the agent was shown
        is known to provenance whatever became of the effect."""
        if self.observed is None:
            return _apply_effect(tx, tx.conn.dialect.name, self.effect, self.audit)
        try:
            record: AuditRecord | TetherError = _apply_effect(
                tx, tx.conn.dialect.name, self.effect, self.audit
            )
        except Unavailable:
            raise  # the store failed (its driver's error): nothing of the write is kept
        except TetherError as refused:
            record = refused
        self.observed.apply(tx)
        return record


#: What the group commit writes: a decision, or what a call did, queued after its answer.
_Write = DecisionWrite | QueuedWrite


class _Isolate(Exception):
    """A write of a batch written without savepoints failed: the transaction rolls back and
    the batch is written again, each write in a savepoint of its own."""


class DecisionLogSql:
    """Decisions, their group commit, and effects, on one :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self._db = db
        engine = db.live(STORE)
        self._insert_decision = DriverStatement(engine, _INSERT_DECISION, "record the decision")
        #: PostgreSQL: a batch of plain decisions in two round trips (:mod:`tether.store.pgbatch`).
        self._pg_batch = (
            PostgresBatch(db, self._insert_decision) if db.backend == "postgresql" else None
        )
        #: On SQLite, decisions committed here lately (rows never updated nor deleted): their
        #: effects and observations are checked without a read. On PostgreSQL every read goes
        #: to the server, so a lost server fails each call alike. OrderedDict: its single steps
        #: are atomic, for the writer thread and the readers.
        self._recent: OrderedDict[DecisionId, DecisionRecord] | None = (
            OrderedDict() if db.backend == "sqlite" else None
        )
        # Bounded like a queued write: the writer gives up on it after the busy timeout, and
        # its batch then holds the database at most that long again.
        self.pending = PendingEffects(wait_seconds=2 * db.busy_seconds + 1.0, code=STORE)
        # A decision's result is its audit record; a queued write's, what it returns.
        self._commits: GroupCommit[_Write, object] = GroupCommit(
            self._run_batch,
            wait_seconds=db.busy_seconds,
            code=STORE,
            # SQLite's transaction is in-process work: an event loop leads its own batches.
            run_now=self._run_batch_now if db.backend == "sqlite" else None,
            finished=self._finished,
        )

    def record(self, write: DecisionWrite) -> AuditRecord:
        """Record ``write``, group-committed with what other threads record at the moment."""
        return cast(AuditRecord, self._commits.submit(write))

    def record_async(self, write: DecisionWrite) -> Awaitable[AuditRecord]:
        """:meth:`record` for an event loop: awaited; on SQLite the loop leads the batch of the
        writes queued in its turn (:mod:`tether.store.groupcommit`)."""
        self._db.live(STORE)
        return cast("Awaitable[AuditRecord]", self._commits.submit_async(write))

    def record_from_thread(
        self,
        write: DecisionWrite,
        loop: asyncio.AbstractEventLoop,
        answer: asyncio.Future[AuditRecord],
    ) -> None:
        """:meth:`record_async` from a worker thread: the group's writer thread leads the batch
        and sets ``answer`` on ``loop`` once it committed (or failed)."""
        self._db.live(STORE)
        commits = cast("GroupCommit[_Write, AuditRecord]", self._commits)
        commits.submit_from_thread(write, loop, answer)

    def queue(self, write: QueuedWrite) -> Awaitable[object]:
        """Queue ``write`` into the group commit and return what the running event loop awaits:
        what it returns once its batch committed, what it raised (its refusal), or
        ``Unavailable`` when the batch did not commit. Until then, decisions on its tasks wait
        in :meth:`PendingEffects.wait <tether.store.pending_effects.PendingEffects.wait>`."""
        self._db.live(STORE)
        self.pending.add(write.task_ids)
        try:
            # INVARIANT: a write decisions wait for is never left to the loop that may be the
            # one waiting (a delegate's call waits on its parent's effect): the writer leads it.
            return self._commits.submit_async(write, waited_on=True)
        except BaseException:
            self.pending.done(write.task_ids, write.key, None)
            raise

    def close(self) -> None:
        self._commits.close()  # what is queued is written (or fails) first
        if self._pg_batch is not None:
            self._pg_batch.close()

    def _finished(self, batch: Sequence[Pending[_Write, object]]) -> None:
        """Release the tasks whose queued writes this batch made, or mark them failed."""
        for pending in batch:
            write = pending.work
            if isinstance(write, DecisionWrite):
                continue
            error = pending.error
            failed = None
            if error is not None and (
                isinstance(error, Unavailable) or not isinstance(error, TetherError)
            ):
                # Not written, and may be on a retry: its tasks wait for it.
                failed = (
                    error
                    if isinstance(error, Unavailable)
                    else Unavailable("the write was not made", code=STORE)
                )
            self.pending.done(write.task_ids, write.key, failed)

    def _run_batch_now(self, batch: Sequence[Pending[_Write, object]]) -> None:
        """:meth:`_run_batch` on an event loop: ``WouldWait``, nothing written, when the
        database's write lock is not free at once."""
        self._run_batch(batch, wait=False)

    def _run_batch(self, batch: Sequence[Pending[_Write, object]], *, wait: bool = True) -> None:
        """One transaction for the batch; each write in a savepoint of its own, so a write
        refused (budget over, approval used, effect already reported) rolls back alone.
        Results are handed out only after the commit. On PostgreSQL a batch of plain decisions
        goes in two round trips instead (:mod:`tether.store.pgbatch`), unless it hands the
        batch back, nothing written, for this general write to isolate a refused write.

        Elsewhere (SQLite) a batch of plain decisions, which nothing checks as it is written
        (:func:`~tether.store.pgbatch.plain`), is written without savepoints: two statements
        less per decision. Should one of its writes fail all the same, the whole transaction
        rolls back, nothing written, and the batch is written again with its savepoints, so
        every write ends as it would have."""
        if self._pg_batch is not None:
            if self._run_plain(self._pg_batch, batch):
                return
        elif len(batch) > 1 and all(plain(p.work) for p in batch):
            try:
                self._write_batch(batch, wait, isolate=False)
                return
            except _Isolate:
                pass  # rolled back, nothing written
        self._write_batch(batch, wait, isolate=True)

    def _write_batch(
        self, batch: Sequence[Pending[_Write, object]], wait: bool, *, isolate: bool
    ) -> None:
        """:meth:`_run_batch`'s transaction; without ``isolate``, no savepoints, and a write
        that raises rolls the whole transaction back (:class:`_Isolate`)."""
        done: list[tuple[Pending[_Write, object], object]] = []
        with self._db.write(STORE, "record the decision", lean=True, wait=wait) as tx:
            # The head locked is this replica's partition's, which no other replica waits on;
            # what the batch checks and changes across replicas (budgets, task progress) is
            # locked here, every task of the batch at once and in one order.
            charged: set[str] = set()
            for pending in batch:
                work = pending.work
                if isinstance(work, DecisionWrite):
                    charged |= budgets_sql.charged_tasks(work.budget, work.progress)
                else:
                    charged.update(work.locks)
            budgets_sql.lock_tasks(tx.conn, charged)
            if len(batch) == 1:
                # Alone: a refusal rolls the whole transaction back, no savepoint needed.
                done.append((batch[0], self._apply_any(tx, batch[0].work)))
            elif not isolate:
                for pending in batch:
                    try:
                        done.append((pending, self._apply_any(tx, pending.work)))
                    except (TetherError, SQLAlchemyError) as error:
                        raise _Isolate from error
            else:
                for pending in batch:
                    head = tx.head
                    try:
                        with tx.savepoint():
                            record = self._apply_any(tx, pending.work)
                    except TetherError as refused:
                        tx.head = head  # the savepoint took its records back with it
                        pending.finish(error=refused)
                    except SQLAlchemyError as error:
                        tx.head = head
                        pending.finish(error=unavailable(STORE, "record the decision", error))
                    else:
                        done.append((pending, record))
        # INVARIANT: no decision is answered before the commit that holds its audit record.
        for pending, record in done:
            work = pending.work
            if isinstance(work, DecisionWrite):
                self._remember(work.decision)
            pending.finish(result=record)

    @staticmethod
    def _run_plain(runner: PostgresBatch, batch: Sequence[Pending[_Write, object]]) -> bool:
        """The batch in two round trips if every write in it is plain; whether it was run."""
        if not all(plain(p.work) for p in batch):
            return False
        try:
            committed = runner.write([cast(DecisionWrite, p.work) for p in batch])
        except HandBack:
            return False  # nothing written
        # INVARIANT: no decision is answered before the commit that holds its audit record.
        for pending, audit_record in zip(batch, committed, strict=True):
            pending.finish(result=audit_record)
        return True

    def _apply_any(self, tx: Writer, write: _Write) -> object:
        if isinstance(write, DecisionWrite):
            return self._apply(tx, write)
        return write.apply(tx)

    def _apply(self, tx: Writer, write: DecisionWrite) -> AuditRecord:
        decision = write.decision
        if write.use_approval is not None:
            _use_approval(tx, write.use_approval, decision.decision_id)
        if write.budget is not None:
            # INVARIANT: a budget is never overspent: checked and reserved with its tasks'
            # rows locked (see _run_batch).
            budgets_sql.reserve(tx.conn, decision.decision_id, write.budget)
        for moved in write.progress:
            budgets_sql.apply_progress(tx.conn, moved)
        self._insert_decision.run(tx.conn, codec.decision_params(decision))
        record = tx.append(write.audit)
        if write.new_approval is not None:
            approval, approval_audit = write.new_approval
            tx.conn.execute(approvals_sql.INSERT, approvals_sql.params(approval))
            tx.append(approval_audit)
        if write.lease is not None:
            leases_sql.insert_lease(tx.conn, write.lease[0])
            tx.append(write.lease[1])
        return record

    # -- reads and effects ---------------------------------------------------------------------

    def _remember(self, decision: DecisionRecord) -> None:
        """Keep a committed decision for :meth:`get` (a decision row never changes)."""
        recent = self._recent
        if recent is None:
            return
        recent[decision.decision_id] = decision
        if len(recent) > RECENT_DECISIONS:
            recent.popitem(last=False)

    def get(self, decision_id: DecisionId) -> DecisionRecord | None:
        """The decision ``decision_id``: on SQLite one this process committed lately from
        memory (the effect and the observation of a call it just decided check it), else read."""
        if self._recent is not None:
            self._db.live(STORE)  # a closed store answers nothing
            recent = self._recent.get(decision_id)
            if recent is not None:
                return recent
        with self._db.read(STORE, "read the decision") as conn:
            row = conn.execute(_SELECT_DECISION, {"b_id": decision_id}).first()
        return None if row is None else codec.decision_from_row(row._mapping)

    def holds(self, decision_id: DecisionId) -> Sequence[tuple[Hold, float | None]]:
        with self._db.read(STORE, "read the budget holds") as conn:
            return budgets_sql.holds_of(conn, decision_id)

    def get_effect(self, decision_id: DecisionId) -> Effect | None:
        with self._db.read(STORE, "read the effect") as conn:
            row = conn.execute(_SELECT_EFFECT, {"b_id": decision_id}).first()
        return None if row is None else codec.effect_from_row(row._mapping)

    def record_effect(
        self, effect: Effect, audit: AuditEntry, observed: QueuedWrite | None = None
    ) -> AuditRecord:
        """Record what a decided call did; one effect per decision.

        Raises ``Conflict(EFFECT_ALREADY_REPORTED)`` on a second report and
        ``NotFound(DECISION_NOT_FOUND)`` for an unknown decision; neither writes the effect.
        ``observed``: the observation of the same call's result, written after the effect in
        the same transaction (:meth:`EffectWrite.apply`, as the group commit writes it):
        committed with the effect or not at all, and committed alone before the effect's
        refusal is raised. A store failure writes nothing of either.
        """
        written = EffectWrite(effect, audit, observed)
        # Lean, as the group commit writes the same EffectWrite: on SQLite, BEGIN and COMMIT on
        # the driver, the same transaction (about 30 of the ~330 µs of CPU serve's effect with
        # its observation took, measured in-process).
        with self._db.write(STORE, "record the effect", lean=True) as tx:
            record = written.apply(tx)
        self.pending.written(written.task_ids, written.key)
        if isinstance(record, TetherError):
            raise record
        return record

    def task_activity(self, task_id: TaskId) -> TaskActivity:
        with self._db.read(STORE, "summarize the task") as conn:
            outcomes = conn.execute(
                select(decisions.c.decision, func.count())
                .where(decisions.c.task_id == task_id)
                .group_by(decisions.c.decision)
            ).all()
            totals = conn.execute(
                select(
                    func.count(effects.c.effect_id),
                    func.sum(effects.c.records),
                    func.sum(effects.c.bytes),
                )
                .select_from(
                    decisions.join(effects, effects.c.decision_id == decisions.c.decision_id)
                )
                .where(decisions.c.task_id == task_id)
            ).one()
        return TaskActivity(
            decisions={str(d): int(n) for d, n in outcomes},
            effects=int(totals[0] or 0),
            records=int(totals[1] or 0),
            bytes=int(totals[2] or 0),
        )


def _apply_effect(tx: Writer, backend: str, effect: Effect, audit: AuditEntry) -> AuditRecord:
    """The effect's row, its budget holds settled, its audit record: in ``tx``, or nothing
    (``NotFound`` for an unknown decision, ``Conflict`` for a second report)."""
    prepared = tx.prepared
    slots = prepared(_EFFECT_SLOT, "read the decision").rows(tx.conn, {"b_id": effect.decision_id})
    if not slots:
        raise NotFound(
            f"no decision {effect.decision_id} to report an effect for; report the "
            "effect with the decision id the authorize call returned",
            code=ErrorCode.DECISION_NOT_FOUND,
        )
    _decision, effect_id, held = slots[0]
    if effect_id is not None:
        raise Conflict(
            f"an effect was already reported for decision {effect.decision_id}; "
            "each decision takes exactly one report",
            code=ErrorCode.EFFECT_ALREADY_REPORTED,
        )
    # INVARIANT: one effect per decision. The check above can race a report on another
    # replica (another audit partition, another head), so the unique decision id of
    # ``effects`` decides: a second insert waits for the first's commit and then adds
    # nothing, and this report is refused like one the check caught.
    insert = prepared(_INSERT_EFFECT[backend], "record the effect")
    if not insert.rows(tx.conn, codec.effect_params(effect)):
        raise Conflict(
            f"an effect was already reported for decision {effect.decision_id}; "
            "each decision takes exactly one report",
            code=ErrorCode.EFFECT_ALREADY_REPORTED,
        )
    if held:
        budgets_sql.settle(tx.conn, effect)
    return tx.append(audit)


def _use_approval(tx: Writer, approval_id: ApprovalId, decision_id: DecisionId) -> None:
    row = tx.conn.execute(approvals_sql.LOCK, {"b_id": approval_id}).first()
    if row is None:
        raise NotFound(f"no approval {approval_id}", code=ErrorCode.APPROVAL_NOT_FOUND)
    approval = approvals_sql.from_doc(row.doc)
    if approval.state is not ApprovalState.APPROVED:
        raise Conflict(
            f"the approval is {approval.state.value}", code=ErrorCode.APPROVAL_NOT_PENDING
        )
    used = replace(approval, state=ApprovalState.USED, used_by=decision_id)
    # INVARIANT: an approval is used at most once: the row is locked from the read above to the
    # commit, and moves approved -> used only from the state we read.
    moved = tx.conn.execute(
        approvals_sql.REPLACE,
        {
            "b_id": approval_id,
            "b_old": ApprovalState.APPROVED.value,
            "b_state": used.state.value,
            "b_doc": approvals_sql.to_doc(used),
        },
    )
    if moved.rowcount != 1:
        raise Conflict("the approval was already used", code=ErrorCode.APPROVAL_NOT_PENDING)
