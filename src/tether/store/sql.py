"""``SqlStore``: the one SQL implementation of the service's ``Store`` port.

It runs on SQLite (the embedded default) and PostgreSQL (several replicas on one database):
portable SQLAlchemy Core throughout, with the per-backend setup kept in
:mod:`tether.store.dialect`. The store is a facade over its parts, each on the one
:class:`~tether.store.db.Database` (engine, connections, the write transaction that holds the
audit chain's head):

- :mod:`tether.store.tasks`: tasks and grants, ending them, the kill switch;
- :mod:`tether.store.decision_log`: decisions (group-committed) and effects;
- approvals, the audit log and the anomaly signal's history, here.

Neighbouring adapters (leases, break-glass, checkpoints, stats) reach the same database through
:attr:`SqlStore.db`'s public ``read`` and ``write``.

Error codes: mutations and reads of tasks, grants, decisions and effects raise
``Unavailable(STORE_UNAVAILABLE)``; ``append_audit``, ``audit_records`` and ``chain_head`` raise
``Unavailable(AUDIT_UNAVAILABLE)``, on every backend alike. Messages carry a one-line reason
(:func:`tether.store.dialect.reason`), never SQL, parameters, the database URL, its host or its
password; neither does ``repr``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final, cast

from sqlalchemy import URL, select
from sqlalchemy.exc import SQLAlchemyError

from tether.core.anomaly import Volume
from tether.core.approval import Approval
from tether.core.audit import LEGACY_PARTITION, AuditRecord, ChainFormat, ChainHead
from tether.core.budget import Hold
from tether.core.effect import Effect
from tether.core.errors import ErrorCode, NotFound, TetherError, Unavailable
from tether.core.ids import ApprovalId, DecisionId, GrantId, TaskId
from tether.core.scope import ActionKind
from tether.core.task import Grant, Task, TaskState
from tether.service.ports import (
    AuditEntry,
    DecisionRecord,
    DecisionWrite,
    ObservedRows,
    TaskActivity,
)
from tether.store import agents as agents_sql
from tether.store import approvals as approvals_sql
from tether.store import codec
from tether.store import gateway_events as gateway_events_sql
from tether.store import history as history_sql
from tether.store import leases as leases_sql
from tether.store import observations as observations_sql
from tether.store import tasks as tasks_sql
from tether.store.audit_log import AuditReader
from tether.store.db import AUDIT as _AUDIT
from tether.store.db import STORE as _STORE
from tether.store.db import Database, unavailable
from tether.store.decision_log import DecisionLogSql, EffectWrite, QueuedWrite
from tether.store.dialect import postgres_url
from tether.store.hotread import GrantWithTaskQuery, PostgresReads, SqliteReads
from tether.store.migrate import SchemaState, SchemaUpgrade
from tether.store.schema import tasks

DEFAULT_BUSY_TIMEOUT: Final = timedelta(seconds=5)
DEFAULT_STATEMENT_TIMEOUT: Final = timedelta(seconds=10)
DEFAULT_CONNECT_TIMEOUT: Final = timedelta(seconds=5)
DEFAULT_POOL_SIZE: Final = 5
DEFAULT_PAGE_SIZE: Final = 500


class SqlStore:
    """Durable state and the audit chain in one SQL database. Safe to share between threads.

    Open several ``SqlStore`` handles on one database, as several processes or replicas would:
    writers serialize on the chain head.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        busy_timeout: timedelta = DEFAULT_BUSY_TIMEOUT,
        page_size: int = DEFAULT_PAGE_SIZE,
        statement_timeout: timedelta = DEFAULT_STATEMENT_TIMEOUT,
        connect_timeout: timedelta = DEFAULT_CONNECT_TIMEOUT,
        pool_size: int = DEFAULT_POOL_SIZE,
        migrate: bool = True,
        partition: str = LEGACY_PARTITION,
    ) -> None:
        """Open the database at ``url`` (``sqlite:///...`` or ``postgresql://...``), creating
        tether's tables on first use and applying pending schema migrations
        (:mod:`tether.store.migrate`), one replica at a time.

        ``busy_timeout`` is how long a writer waits for another writer's lock (SQLite's
        ``busy_timeout``, PostgreSQL's ``lock_timeout``). The other settings apply to PostgreSQL
        only: see :meth:`postgres`. With ``migrate=False`` the schema is checked but left as it
        is: such a handle is for :meth:`schema_state` and :meth:`upgrade_schema` (``tether db``)
        until the schema is current. Raises ``ConfigurationError`` for a URL or schema this
        tether cannot use (a newer tether's) and ``Unavailable`` when the database cannot be
        reached or the schema cannot be migrated (a role without DDL rights).

        ``partition`` is the audit partition this handle appends to: its replica id
        (:mod:`tether.core.audit`). Handles with different partitions never wait on each
        other's chain head; handles sharing one serialize on it. ``ValueError`` for a name that
        cannot be one.
        """
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self._on_close: list[Callable[[], None]] = []
        self.db = Database(
            url,
            busy_timeout=busy_timeout,
            statement_timeout=statement_timeout,
            connect_timeout=connect_timeout,
            pool_size=pool_size,
            partition=partition,
        )
        engine = self.db.live(_STORE)
        self._decisions = DecisionLogSql(self.db)
        # The hot read below SQLAlchemy's statement machinery, on the driver (both backends).
        self._hot_read = GrantWithTaskQuery(engine)
        self._sqlite_reads = SqliteReads()
        self._postgres_reads = PostgresReads()
        self._audit = AuditReader(self.db, page_size)
        try:
            self.db.bootstrap(migrate)
        except BaseException:
            self.close()
            raise

    @classmethod
    def sqlite(
        cls,
        path: Path,
        *,
        busy_timeout: timedelta = DEFAULT_BUSY_TIMEOUT,
        page_size: int = DEFAULT_PAGE_SIZE,
        migrate: bool = True,
        partition: str = LEGACY_PARTITION,
    ) -> SqlStore:
        """Open or create the SQLite database file at ``path`` (WAL, ``synchronous=NORMAL``)."""
        url = URL.create("sqlite+pysqlite", database=str(Path(path).absolute()))
        return cls(
            url,
            busy_timeout=busy_timeout,
            page_size=page_size,
            migrate=migrate,
            partition=partition,
        )

    @classmethod
    def postgres(
        cls,
        dsn: str,
        *,
        lock_timeout: timedelta = DEFAULT_BUSY_TIMEOUT,
        statement_timeout: timedelta = DEFAULT_STATEMENT_TIMEOUT,
        connect_timeout: timedelta = DEFAULT_CONNECT_TIMEOUT,
        pool_size: int = DEFAULT_POOL_SIZE,
        page_size: int = DEFAULT_PAGE_SIZE,
        migrate: bool = True,
        partition: str = LEGACY_PARTITION,
    ) -> SqlStore:
        """Open tether's store in the PostgreSQL database ``dsn`` names, creating its tables on
        first use and applying pending migrations unless ``migrate=False`` (safe when several
        replicas start at once).

        ``dsn`` is a URL (``postgresql://``, ``postgres://`` or ``postgresql+psycopg://``; query
        parameters are libpq's) or a libpq ``key=value`` string. ``lock_timeout`` bounds the wait
        for the chain head another writer holds, and how long a session may sit idle inside a
        transaction (so a stalled replica frees the head); ``statement_timeout`` bounds every
        statement; ``connect_timeout`` bounds
        connecting and waiting for a pooled connection. The pool opens up to twice
        ``pool_size`` connections and keeps each it opened; each is pinged before use.
        """
        return cls(
            postgres_url(dsn),
            busy_timeout=lock_timeout,
            statement_timeout=statement_timeout,
            connect_timeout=connect_timeout,
            pool_size=pool_size,
            page_size=page_size,
            migrate=migrate,
            partition=partition,
        )

    def __repr__(self) -> str:
        # Never the URL: it may carry a password, and its host is nobody else's business.
        state = "open" if self.db.engine is not None else "closed"
        return f"SqlStore({self.db.backend}, {state})"

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.db.backend

    @property
    def chain_format(self) -> ChainFormat:
        """How this store's audit chain hashes its records: fixed for the chain's life."""
        return self.db.format

    # -- tasks and grants ----------------------------------------------------------------------

    def open_task(self, task: Task, grant: Grant, audit: AuditEntry) -> AuditRecord:
        if grant.task_id != task.task_id:
            raise ValueError("the grant must belong to the task it is opened with")
        with self.db.write(_STORE, "open the task") as tx:
            tx.conn.execute(tasks_sql.INSERT_TASK, codec.task_params(task))
            tx.conn.execute(tasks_sql.INSERT_GRANT, codec.grant_params(grant))
            return tx.append(audit)

    def get_task(self, task_id: TaskId) -> Task | None:
        with self.db.read(_STORE, "read the task") as conn:
            row = conn.execute(tasks_sql.SELECT_TASK, {"b_id": task_id}).first()
        return None if row is None else codec.task_from_row(row._mapping)

    def get_grant_with_task(self, grant_id: GrantId) -> tuple[Grant | None, Task | None]:
        if self._hot_read is not None:
            return self._read_hot(grant_id)
        # One read transaction for both: authorize needs them on every call.
        with self.db.read(_STORE, "read the grant") as conn:
            row = conn.execute(tasks_sql.SELECT_GRANT, {"b_id": grant_id}).first()
            if row is None:
                return None, None
            grant = codec.grant_from_row(row._mapping)
            found = conn.execute(tasks_sql.SELECT_TASK, {"b_id": grant.task_id}).first()
        return grant, None if found is None else codec.task_from_row(found._mapping)

    def _read_hot(self, grant_id: GrantId) -> tuple[Grant | None, Task | None]:
        """The grant and its task in one statement on the driver (:mod:`tether.store.hotread`):
        the read every authorize makes."""
        query = self._hot_read
        assert query is not None
        if self.db.backend == "postgresql":
            return self._postgres_reads.read(self.db, query, grant_id)
        engine = self.db.live(_STORE)
        try:
            row = self._sqlite_reads.fetch(self.db, engine, query.sql, query.params(grant_id))
        except sqlite3.Error as error:
            raise Unavailable(
                f"the store could not read the grant ({type(error).__name__}: {error}); check "
                "that the database is reachable, writable and not locked by another process",
                code=_STORE,
            ) from None
        except SQLAlchemyError as error:
            raise unavailable(_STORE, "read the grant", error) from error
        return query.decode(row)

    def get_grant(self, grant_id: GrantId) -> Grant | None:
        with self.db.read(_STORE, "read the grant") as conn:
            row = conn.execute(tasks_sql.SELECT_GRANT, {"b_id": grant_id}).first()
        return None if row is None else codec.grant_from_row(row._mapping)

    def end_task(
        self,
        task_id: TaskId,
        state: TaskState,
        at: datetime,
        audit: AuditEntry,
        cascade: Callable[[Task], AuditEntry] | None = None,
    ) -> Task | None:
        if state is TaskState.OPEN:
            raise ValueError("end_task moves a task out of the open state")
        with self.db.write(_STORE, "end the task") as tx:
            ended = tasks_sql.end_in(tx, task_id, state, at, audit, cascade)
        self.forget_ended()
        return ended

    def forget_ended(self) -> None:
        """Forget the task rows this process remembers, so that no ended task's provenance
        secret (wiped from its row when it ended) stays in memory: at once after this process
        ends tasks, and at every housekeeping sweep for tasks another process ended."""
        if self._hot_read is not None:
            self._hot_read.forget()

    def open_tasks_of(self, parent_task_id: TaskId) -> Sequence[Task]:
        """Open tasks delegated directly from ``parent_task_id``."""
        with self.db.read(_STORE, "list delegated tasks") as conn:
            rows = conn.execute(
                select(tasks).where(
                    tasks.c.parent_task_id == parent_task_id,
                    tasks.c.state == TaskState.OPEN.value,
                )
            ).all()
        return [codec.task_from_row(r._mapping) for r in rows]

    def expired_open_tasks(self, now: datetime, limit: int) -> Sequence[Task]:
        """Open tasks whose expiry is at or before ``now``, soonest expiry first."""
        if limit < 1:
            return []
        with self.db.read(_STORE, "list expired tasks") as conn:
            rows = conn.execute(tasks_sql.EXPIRED_OPEN, {"b_now": now, "b_limit": limit}).all()
        return [codec.task_from_row(r._mapping) for r in rows]

    # -- the kill switch (OWASP ASI10) ---------------------------------------------------------

    def revoke_agent(
        self,
        agent: str,
        at: datetime,
        reason: str,
        by: str,
        audit: AuditEntry,
        end_audit: Callable[[Task], AuditEntry],
        cascade: Callable[[Task], AuditEntry],
    ) -> int:
        """List ``agent`` as revoked and end every open task it holds (and their delegates),
        all in one transaction with their audit records; returns how many of its own tasks were
        ended.

        The kill switch must take effect even while decisions are failing: its write is
        patient (:meth:`Database.write`), waiting for the audit chain's head past the longest a
        stalled replica can hold it, while decisions give up after the busy timeout."""
        with self.db.write(_STORE, "revoke the agent", patient=True) as tx:
            ended = tasks_sql.revoke(tx, agent, at, reason, by, audit, end_audit, cascade)
        self.forget_ended()
        return ended

    def restore_agent(self, agent: str, audit: AuditEntry) -> bool:
        with self.db.write(_STORE, "restore the agent") as tx:
            removed = agents_sql.unmark(tx.conn, agent)
            if removed:
                tx.append(audit)
            return removed

    def count_live_leases(self, now: datetime) -> int:
        """Active leases not yet past their expiry (the ``tether_leases_live`` gauge)."""
        with self.db.read(_STORE, "count live leases") as conn:
            return leases_sql.count_live(conn, now)

    def is_agent_revoked(self, agent: str) -> bool:
        with self.db.read(_STORE, "check the agent") as conn:
            return agents_sql.listed(conn, agent)

    def revoked_agents(self) -> list[tuple[str, datetime, str, str]]:
        with self.db.read(_STORE, "list revoked agents") as conn:
            return agents_sql.all_listed(conn)

    # -- decisions and effects (tether.store.decision_log) -------------------------------------

    def record_decision(self, write: DecisionWrite) -> AuditRecord:
        """Record one decision with everything it implies, group-committed with the decisions
        other threads are recording at the same moment (:mod:`tether.store.groupcommit`)."""
        return self._decisions.record(write)

    def record_decision_async(self, write: DecisionWrite) -> Awaitable[AuditRecord]:
        """:meth:`record_decision` for an event loop: the write joins the same group commit,
        led by the group's writer thread, and the loop awaits its result."""
        return self._decisions.record_async(write)

    def record_decision_handed(
        self,
        write: DecisionWrite,
        loop: asyncio.AbstractEventLoop,
        answer: asyncio.Future[AuditRecord],
    ) -> None:
        """:meth:`record_decision` handed over from a worker thread that does not wait for it:
        the same group commit, led by the group's writer thread, whose outcome is set on
        ``answer`` on ``loop`` (:class:`~tether.service.ports.HandedDecisionLog`)."""
        self._decisions.record_from_thread(write, loop, answer)

    def decision_holds(self, decision_id: DecisionId) -> Sequence[tuple[Hold, float | None]]:
        return self._decisions.holds(decision_id)

    def get_decision(self, decision_id: DecisionId) -> DecisionRecord | None:
        return self._decisions.get(decision_id)

    def get_effect(self, decision_id: DecisionId) -> Effect | None:
        """The effect reported for ``decision_id``, if any."""
        return self._decisions.get_effect(decision_id)

    def record_effect(
        self, effect: Effect, audit: AuditEntry, observed: ObservedRows | None = None
    ) -> AuditRecord:
        """Record what a decided call did; one effect per decision (``Conflict`` on a second,
        ``NotFound`` for an unknown decision; neither writes the effect). ``observed``: the
        call's observation, in the same transaction, kept when the effect is refused
        (:meth:`~tether.store.decision_log.DecisionLogSql.record_effect`)."""
        then = None if observed is None else observations_sql.observed_write(self.backend, observed)
        return self._decisions.record_effect(effect, audit, then)

    def queue_effect(
        self, effect: Effect, audit: AuditEntry, observed: ObservedRows | None = None
    ) -> Awaitable[AuditRecord]:
        """:meth:`record_effect`, queued into the decisions' group commit and awaited; the
        decisions on its task wait for it (:meth:`wait_for_effects`). ``observed``: the
        call's observation, in the same write (:class:`~tether.store.decision_log.EffectWrite`)."""
        if observed is None:
            # An effect's write returns its audit record.
            return cast("Awaitable[AuditRecord]", self._decisions.queue(EffectWrite(effect, audit)))
        then = observations_sql.observed_write(self.backend, observed)
        return _refusal_raised(self._decisions.queue(EffectWrite(effect, audit, then)))

    def queue_write(self, write: QueuedWrite) -> Awaitable[object]:
        """Queue another write made after its call's answer (an observation) the same way."""
        return self._decisions.queue(write)

    def wait_for_effects(self, task_ids: Sequence[str]) -> None:
        """Wait for the queued effects of ``task_ids`` (:mod:`tether.store.pending_effects`)."""
        self._decisions.pending.wait(task_ids)

    def task_activity(self, task_id: TaskId) -> TaskActivity:
        return self._decisions.task_activity(task_id)

    # -- approvals -----------------------------------------------------------------------------

    def get_approval(self, approval_id: ApprovalId) -> Approval | None:
        with self.db.read(_STORE, "read the approval") as conn:
            row = conn.execute(approvals_sql.SELECT, {"b_id": approval_id}).first()
        return None if row is None else approvals_sql.from_doc(row.doc)

    def list_approvals(self, limit: int = 100) -> Sequence[Approval]:
        with self.db.read(_STORE, "list approvals") as conn:
            rows = conn.execute(approvals_sql.LIST, {"b_limit": max(1, limit)}).all()
        return [approvals_sql.from_doc(r.doc) for r in rows]

    def find_pending_approval(
        self,
        *,
        agent: str,
        task_id: TaskId,
        tool: str,
        action: ActionKind,
        dataset: str | None,
        args_mac: str,
        now: datetime,
    ) -> Approval | None:
        with self.db.read(_STORE, "look up pending approvals") as conn:
            rows = conn.execute(
                approvals_sql.PENDING_FOR_CALL,
                {
                    "b_agent": agent,
                    "b_task": task_id,
                    "b_tool": tool,
                    "b_action": action.value,
                    "b_mac": args_mac,
                    "b_now": now,
                },
            ).all()
        for row in rows:
            approval = approvals_sql.from_doc(row.doc)
            if approval.dataset == dataset:
                return approval
        return None

    def vote_approval(
        self,
        approval_id: ApprovalId,
        apply: Callable[[Approval], Approval],
        audit: Callable[[Approval], AuditEntry],
    ) -> Approval:
        """Read the approval under the write lock, ``apply`` a vote (which may raise and so
        write nothing), store the result and audit it, in one transaction."""
        with self.db.write(_STORE, "record the vote") as tx:
            # INVARIANT: no vote is lost: the row is locked from this read to the commit, so a
            # vote on another replica (another audit partition) waits and reads this one's.
            row = tx.conn.execute(approvals_sql.LOCK, {"b_id": approval_id}).first()
            if row is None:
                raise NotFound(f"no approval {approval_id}", code=ErrorCode.APPROVAL_NOT_FOUND)
            before = approvals_sql.from_doc(row.doc)
            after = apply(before)
            moved = tx.conn.execute(
                approvals_sql.REPLACE,
                {
                    "b_id": approval_id,
                    "b_old": before.state.value,
                    "b_state": after.state.value,
                    "b_doc": approvals_sql.to_doc(after),
                },
            )
            # The row lock makes this impossible; checked so a broken lock cannot lose a vote.
            if moved.rowcount != 1:
                raise Unavailable(
                    "the approval changed during the vote; nothing was written", code=_STORE
                )
            tx.append(audit(after))
            return after

    def ended_task_volumes(self, workflow: str, limit: int) -> list[Volume]:
        """The anomaly signal's history (:mod:`tether.store.history`)."""
        with self.db.read(_STORE, "read the workflow's history") as conn:
            return history_sql.ended_task_volumes(conn, workflow, limit)

    def task_volume(self, task_id: TaskId) -> Volume:
        with self.db.read(_STORE, "read what the task has read") as conn:
            return history_sql.task_volume(conn, task_id)

    # -- audit ---------------------------------------------------------------------------------

    def append_audit(self, audit: AuditEntry) -> AuditRecord:
        with self.db.write(_AUDIT, "append to the audit log") as tx:
            return tx.append(audit)

    def record_gateway_event(self, gateway: str, event_id: str, audit: AuditEntry) -> AuditRecord:
        return gateway_events_sql.record_gateway_event(self.db, gateway, event_id, audit)

    def audit_records(
        self, after_seq: int = 0, partition: str | None = None
    ) -> Iterator[AuditRecord]:
        """``partition``'s records after ``after_seq`` in chain order; with no partition, every
        partition's (each after ``after_seq``) in the log's stable order
        (:func:`tether.core.partitions.log_order`)."""
        return self._audit.records(after_seq, partition)

    def keep_sealed(self) -> None:
        """From now on, keep the leaf hashes of what this process commits, for checkpoints."""
        self.db.sealed.keep()

    def sealed_leaves(
        self, partition: str, after: ChainHead | None, upto: ChainHead
    ) -> list[bytes] | None:
        """The leaf hashes of ``partition``'s records after ``after`` through ``upto`` when this
        process sealed and committed every one of them (:mod:`tether.store.sealed`), else
        ``None``: read them instead."""
        return self.db.sealed.leaves(partition, after, upto)

    def sealed_hash(self, partition: str, seq: int) -> str | None:
        """The hash this process sealed as ``partition``'s record ``seq``, while it keeps it."""
        return self.db.sealed.hash_of(partition, seq)

    def chain_head(self) -> ChainHead | None:
        """The head of the partition this store appends to (``None``: not written yet)."""
        return self._audit.head(self.db.partition)

    def chain_heads(self) -> dict[str, ChainHead | None]:
        """Every partition's head (``None``: empty)."""
        return self._audit.heads()

    def audit_partitions(self) -> set[str]:
        """Every partition the log holds (by its head row or its records)."""
        return self._audit.partitions()

    @property
    def partition(self) -> str:
        """The audit partition this store appends to (its replica id)."""
        return self.db.partition

    # -- lifecycle and the schema --------------------------------------------------------------

    def ping(self) -> None:
        """Take the write lock and the chain head, then roll back: reachable *and* writable."""
        self.db.ping()

    def on_close(self, release: Callable[[], None]) -> None:
        """Call ``release`` once the store has closed (what the handle held for its life)."""
        self._on_close.append(release)

    def close(self) -> None:
        """Close every pooled connection; later calls raise ``Unavailable``."""
        try:
            self._decisions.close()  # what is queued is written (or fails) first
            self._sqlite_reads.close()
            self._postgres_reads.close()
            self.db.close()
        finally:
            releases, self._on_close = self._on_close, []
            for release in releases:
                release()

    def schema_state(self) -> SchemaState:
        """The database's schema revision against this tether's (:mod:`tether.store.migrate`)."""
        return self.db.schema_state()

    def upgrade_schema(self) -> SchemaUpgrade:
        """Apply pending migrations, serialized with every other replica's start."""
        return self.db.upgrade_schema()


async def _refusal_raised(written: Awaitable[object]) -> AuditRecord:
    """The effect's record once its write (with an observation) committed; the effect's
    refusal, which that write returns so as to keep the observation, raised."""
    record = await written
    if isinstance(record, TetherError):
        raise record
    return cast(AuditRecord, record)
