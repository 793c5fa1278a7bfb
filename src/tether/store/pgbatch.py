"""A batch of plain decisions on PostgreSQL in two round trips: the group commit's fast path.

Through the general write (:meth:`Database.write <tether.store.db.Database.write>` and
:meth:`DecisionLogSql._run_batch <tether.store.decision_log.DecisionLogSql._run_batch>`) a
batch of N decisions cost 4 + 4N round trips: the pool's ping, ``BEGIN``, the head's lock, then
for each decision a savepoint, its row, its audit record and the head's move, and ``COMMIT``.
Each round trip is a wake-up of the server's backend and of the writing thread, and most of the
writer's CPU. A *plain* decision (no budget to check, no approval to use or create, no lease:
nothing in it is checked by reading first) needs none of that back and forth, so here a batch of
them is sent as two messages, each a few statements in one simple query:

1. ``BEGIN``, then the head of this replica's audit partition locked (``FOR UPDATE``), then the
   rows of the tasks the batch moves (label, workflow step) locked in task id order: the same
   locks in the same order as the general write (:mod:`tether.store.db`,
   :func:`tether.store.budgets.lock_tasks`), under the same ``lock_timeout``.
2. Each decision's row, its task's progress and its audit record (sealed here after the head
   just read, in order), the head moved from the value read to the last record, and
   ``COMMIT``. The head's move fails the query (a division by zero) unless it moved exactly one
   row from the value read: the general write's second guard besides the lock, kept without a
   round trip to look at its row count.

Values are bound client-side by psycopg (:class:`psycopg.ClientCursor`, the driver's quoting,
never string formatting), each first processed as SQLAlchemy binds its column's type, exactly
as :mod:`tether.store.driver` runs the same statements. Nothing is answered before the second
message returns, which is after ``COMMIT`` (INVARIANT: no decision is answered before the commit
that holds its audit record). If it fails the transaction is rolled back; a failure a write's
own values could cause (a constraint, a value PostgreSQL refuses: SQLSTATE classes 22 and 23,
the guard among them) hands the batch back, nothing written, to the general write, which runs
each write in a savepoint of its own so such a write fails alone, as it always did. Any other
failure fails the whole batch (the group commit then denies every decision in it).

The connection is kept from one batch to the next, out of the pool and in autocommit (a
checkout, a ``Connection`` around it and the switches to autocommit and back cost a sixth of a
batch's CPU), and is not pinged: one found lost before anything was sent in it (the first
message failing at once on a lost connection) is closed and the batch sent once more on a
pinged one from the pool, which is kept in its place, as the hot read does
(:mod:`tether.store.hotread`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Final

import psycopg
from psycopg.rows import TupleRow
from sqlalchemy import bindparam, insert, update
from sqlalchemy.exc import DBAPIError

from tether.core.audit import AuditRecord, ChainHead, Sealed
from tether.service.ports import AuditEntry, DecisionWrite
from tether.store import codec
from tether.store.db import LOCK_HEAD, MOVE_HEAD, STORE, Database, seal_entry, translate
from tether.store.driver import DriverStatement, as_dbapi_error
from tether.store.hotread import raw_checkout
from tether.store.schema import audit, audit_head, tasks

_ACTION: Final = "record the decision"
#: How soon a lost connection fails the first message when it was lost before it was sent.
_AT_ONCE: Final = 0.25
#: SQLSTATE classes a write's own values can raise: data exceptions, integrity violations.
_A_WRITES_OWN: Final = ("22", "23")
_BEGIN: Final = "BEGIN ISOLATION LEVEL READ COMMITTED"
_LOCK_TASKS: Final = (
    "SELECT task_id FROM tasks WHERE task_id = ANY(%(ids)s) ORDER BY task_id FOR UPDATE"
)
_LABEL = update(tasks).where(tasks.c.task_id == bindparam("b_id")).values(label=bindparam("label"))
_LABEL_AND_STEP = (
    update(tasks)
    .where(tasks.c.task_id == bindparam("b_id"))
    .values(label=bindparam("label"), workflow_step=bindparam("workflow_step"))
)


#: The batch's connection, kept from one batch to the next, with its cursor.
_Kept = tuple[psycopg.Connection[TupleRow], psycopg.ClientCursor[TupleRow]]


class HandBack(Exception):
    """The batch was not written (rolled back): make it through the general write instead."""


def plain(write: object) -> bool:
    """Whether ``write`` is a decision this path writes: nothing in it is read and checked."""
    return (
        isinstance(write, DecisionWrite)
        and write.budget is None
        and write.use_approval is None
        and write.new_approval is None
        and write.lease is None
    )


class PostgresBatch:
    """The two-message batch on one PostgreSQL :class:`Database`."""

    def __init__(self, db: Database, insert_decision: DriverStatement) -> None:
        engine = db.live(STORE)
        self._db = db
        self._insert_decision = insert_decision
        self._lock_head = DriverStatement(engine, LOCK_HEAD, _ACTION)
        self._insert_audit = DriverStatement(engine, insert(audit), _ACTION)
        self._move_head = DriverStatement(engine, MOVE_HEAD.returning(audit_head.c.seq), _ACTION)
        self._label = DriverStatement(engine, _LABEL, _ACTION)
        self._label_and_step = DriverStatement(engine, _LABEL_AND_STEP, _ACTION)
        self._kept: _Kept | None = None

    def write(self, writes: Sequence[DecisionWrite]) -> list[AuditRecord]:
        """Commit ``writes`` in one transaction and return their audit records, in order.

        Raises :class:`HandBack` (nothing written) for a failure one write's values may have
        caused, ``Unavailable`` (through :func:`~tether.store.db.translate`) for any other."""
        records = self._write(writes, ping=False)
        if records is None:
            records = self._write(writes, ping=True)
        assert records is not None
        return records

    def _write(self, writes: Sequence[DecisionWrite], *, ping: bool) -> list[AuditRecord] | None:
        """The batch, or ``None`` when a connection lent unpinged was found lost at once: the
        first message failed, so nothing was written, and the batch may be sent again."""
        db = self._db
        locked = sorted({p.task_id for w in writes for p in w.progress})
        started = time.monotonic()
        with self._connection(ping) as (raw, cursor):
            first = [_BEGIN, _client(cursor, self._lock_head, {"b_part": db.partition})]
            if locked:
                first.append(cursor.mogrify(_LOCK_TASKS, {"ids": locked}))
            try:
                with self._errors(raw):
                    cursor.execute("; ".join(first))
                    found = _result(cursor, 1)
            except DBAPIError as error:
                at_once = time.monotonic() - started < _AT_ONCE
                if ping or not (error.connection_invalidated and at_once):
                    raise
                return None
            if found is None:
                raise HandBack("the partition has no head row yet")  # its first write opens it
            seq, hash_ = int(str(found[0])), str(found[1])
            head = None if seq == 0 else ChainHead(seq, hash_)
            statements: list[str] = []
            sealed: list[Sealed] = []
            for write in writes:
                decision = codec.decision_params(write.decision)
                statements.append(_client(cursor, self._insert_decision, decision))
                for moved in write.progress:
                    step = self._label_and_step if moved.moves_step else self._label
                    values = {"b_id": moved.task_id, "label": moved.label}
                    statements.append(
                        _client(cursor, step, {**values, "workflow_step": moved.workflow_step})
                    )
                one = self._seal(head, write.audit)
                record = codec.audit_params(one.record, one.body_text)
                statements.append(_client(cursor, self._insert_audit, record))
                sealed.append(one)
                head = ChainHead(one.record.seq, one.record.hash)
            assert head is not None
            move = {"b_part": db.partition, "b_old_seq": seq, "b_new_seq": head.seq}
            move_head = _client(cursor, self._move_head, {**move, "b_new_hash": head.hash})
            # INVARIANT: the chain has no gap and no fork: the head moves only from the value
            # locked and read above, or the whole query fails before its COMMIT.
            # (move_head is the driver's rendering, its values bound as literals by psycopg.)
            guarded = f"WITH moved AS ({move_head}) SELECT 1 / count(*) FROM moved"  # noqa: S608
            statements.append(guarded)
            statements.append("COMMIT")
            with self._errors(raw):
                try:
                    cursor.execute("; ".join(statements))
                except psycopg.Error as error:
                    if (error.sqlstate or "")[:2] in _A_WRITES_OWN:
                        raise HandBack("a write of the batch was refused") from error
                    raise
        # Committed: what it sealed can be signed without reading it back.
        db.sealed.add(sealed)
        return [s.record for s in sealed]

    def _seal(self, head: ChainHead | None, entry: AuditEntry) -> Sealed:
        return seal_entry(head, entry, self._db.format, self._db.partition)

    @contextmanager
    def _connection(
        self, ping: bool
    ) -> Iterator[tuple[psycopg.Connection[TupleRow], psycopg.ClientCursor[TupleRow]]]:
        """The batch's connection, under the client-side deadline: kept from one batch to the
        next, out of the pool and in autocommit for good (the messages carry their own
        ``BEGIN`` and ``COMMIT``); a fresh one from the pool, pinged, with ``ping``. Batches
        run one at a time (under the group commit's leader's lock), so one is enough. A
        transaction left open by a failure is rolled back; a connection lost, or that cannot
        be rolled back, is closed, and the next batch takes another."""
        kept = self._kept
        if ping or kept is None:
            self.close()
            kept = self._kept = self._open(ping)
        raw, cursor = kept
        settled = False
        try:
            with translate(STORE, _ACTION), self._db.guard_driver(raw):
                try:
                    yield raw, cursor
                finally:
                    settled = _settled(raw)
        finally:
            if not settled and self._kept is kept:
                self.close()

    def _open(self, ping: bool) -> _Kept:
        """A connection taken out of the pool (pinged or not), in autocommit."""
        engine = self._db.live(STORE)
        with translate(STORE, _ACTION):
            proxied = raw_checkout(engine, ping=ping)
        raw = proxied.driver_connection
        assert isinstance(raw, psycopg.Connection)
        proxied.detach()  # out of the pool: closing it is this batch's business
        with translate(STORE, _ACTION), self._errors(raw):
            try:
                raw.autocommit = True
                return raw, psycopg.ClientCursor(raw)
            except BaseException:
                raw.close()
                raise

    @contextmanager
    def _errors(self, raw: psycopg.Connection[TupleRow]) -> Iterator[None]:
        """psycopg's errors raised as SQLAlchemy's ``DBAPIError``, saying whether they left
        the connection lost (as :func:`~tether.store.driver.driver_errors` does)."""
        try:
            yield
        except psycopg.Error as error:
            lost = raw.closed or raw.broken
            raise as_dbapi_error(error, self._db.live(STORE).dialect, lost) from error

    def close(self) -> None:
        """Close the kept connection (the store's close; a lost one)."""
        kept, self._kept = self._kept, None
        if kept is not None:
            kept[0].close()


def _client(
    cursor: psycopg.ClientCursor[TupleRow], statement: DriverStatement, params: dict[str, object]
) -> str:
    """``statement`` with ``params`` bound as literals by the driver; :class:`HandBack` for a
    value it refuses (a NUL in a text), which the general write then refuses for its write."""
    try:
        return cursor.mogrify(statement.sql, statement.driver_params(params))
    except psycopg.DataError as refused:
        raise HandBack("the driver refused a value of the batch") from refused


def _result(cursor: psycopg.ClientCursor[TupleRow], index: int) -> tuple[object, ...] | None:
    """The first row of the ``index``-th result of a multi-statement query (0: the first)."""
    for _ in range(index):
        if not cursor.nextset():
            return None
    row = cursor.fetchone()
    return None if row is None else tuple(row)


def _settled(raw: psycopg.Connection[TupleRow]) -> bool:
    """Whether the connection is as a batch needs it: open, no transaction left open (one a
    failure left is rolled back here)."""
    if raw.closed or raw.broken:
        return False
    if raw.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        return True
    try:
        raw.execute("ROLLBACK")
    except psycopg.Error:
        return False
    return raw.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
