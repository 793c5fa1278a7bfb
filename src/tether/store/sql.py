"""``SqlStore``: the one SQL implementation of the service's ``Store`` port.

It runs on SQLite (the embedded default) and PostgreSQL (several replicas on one database):
portable SQLAlchemy Core throughout, with the per-backend setup kept in
:mod:`tether.store.dialect`.

Every mutation is one write transaction, committed once:

1. lock the chain head (``SELECT ... FOR UPDATE`` on ``audit_head``, waiting at most the busy
   timeout; on SQLite the transaction began with ``BEGIN IMMEDIATE``, which already holds the
   database's write lock);
2. make the change, which may find there is nothing to do (``end_task`` on a task that is not
   open) or refuse (a second effect for a decision) before anything is written;
3. seal the audit entry after the head, insert it and move the head.

The head is locked first on every path, so all writers take their locks in the same order and
serialize on the head. If any step fails the transaction rolls back: the change and its audit
record are written together or not at all, and the caller gets ``Unavailable``. A store never
answers with a guess.

Error codes: mutations and reads of tasks, grants, decisions and effects raise
``Unavailable(STORE_UNAVAILABLE)``; ``append_audit``, ``audit_records`` and ``chain_head`` raise
``Unavailable(AUDIT_UNAVAILABLE)``, on every backend alike. Messages carry a one-line reason
(:func:`tether.store.dialect.reason`), never SQL, parameters, the database URL, its host or its
password; neither does ``repr``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from sqlalchemy import (
    URL,
    Connection,
    Engine,
    Integer,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError, StatementError

from tether.core.anomaly import Volume
from tether.core.approval import Approval, ApprovalState
from tether.core.audit import AuditRecord, ChainFormat, ChainHead, seal
from tether.core.budget import Hold
from tether.core.effect import Effect
from tether.core.errors import (
    Conflict,
    ErrorCode,
    NotFound,
    TetherError,
    Unavailable,
)
from tether.core.ids import ApprovalId, DecisionId, GrantId, TaskId
from tether.core.lease import Lease, LeaseState
from tether.core.scope import ActionKind, JSONValue
from tether.core.task import Grant, GrantState, Task, TaskState
from tether.service.ports import (
    AuditEntry,
    BudgetCharge,
    DecisionRecord,
    DecisionWrite,
    TaskActivity,
    TaskProgress,
)
from tether.store import agents as agents_sql
from tether.store import approvals as approvals_sql
from tether.store import breakglass_rows, codec
from tether.store import budgets as budgets_sql
from tether.store import history as history_sql
from tether.store import leases as leases_sql
from tether.store import migrate as migrate_schema
from tether.store.dialect import (
    WRITE_OPTION,
    make_engine,
    postgres_url,
    read_options,
    reason,
    serialize_bootstrap,
)
from tether.store.driver import DriverStatement
from tether.store.groupcommit import GroupCommit, Pending
from tether.store.hotread import GrantWithTaskQuery
from tether.store.migrate import SchemaState, SchemaUpgrade
from tether.store.schema import (
    CHAIN_FORMAT_KEY,
    HEAD_ROW_ID,
    UtcMicros,
    audit,
    audit_head,
    decisions,
    effects,
    grants,
    meta,
    tasks,
)
from tether.store.watchdog import Watchdog

DEFAULT_BUSY_TIMEOUT: Final = timedelta(seconds=5)
DEFAULT_STATEMENT_TIMEOUT: Final = timedelta(seconds=10)
DEFAULT_CONNECT_TIMEOUT: Final = timedelta(seconds=5)
DEFAULT_POOL_SIZE: Final = 5
DEFAULT_PAGE_SIZE: Final = 500
_DEADLINE_SLACK: Final = timedelta(seconds=1)

_STORE = ErrorCode.STORE_UNAVAILABLE
_AUDIT = ErrorCode.AUDIT_UNAVAILABLE

# Statements are built once: SQLAlchemy caches their compiled form, the driver its prepared one.
_LOCK_HEAD = (
    select(audit_head.c.seq, audit_head.c.hash)
    .where(audit_head.c.id == HEAD_ROW_ID)
    .with_for_update()
)
_READ_HEAD = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == HEAD_ROW_ID)
_MOVE_HEAD = (
    update(audit_head)
    .where(audit_head.c.id == HEAD_ROW_ID, audit_head.c.seq == bindparam("b_old_seq"))
    .values(seq=bindparam("b_new_seq"), hash=bindparam("b_new_hash"))
)
_INSERT_AUDIT = insert(audit)
_INSERT_TASK = insert(tasks)
_INSERT_GRANT = insert(grants)
_INSERT_DECISION = insert(decisions)
_INSERT_EFFECT = insert(effects)
_SELECT_TASK = select(tasks).where(tasks.c.task_id == bindparam("b_id"))
_SELECT_GRANT = select(grants).where(grants.c.grant_id == bindparam("b_id"))
_SELECT_DECISION = select(decisions).where(decisions.c.decision_id == bindparam("b_id"))
_SELECT_EFFECT = select(effects).where(effects.c.decision_id == bindparam("b_id"))
# The decision an effect reports on, and the effect already reported for it, in one round trip.
_EFFECT_SLOT = (
    select(decisions.c.decision_id, effects.c.effect_id)
    .select_from(decisions.outerjoin(effects, effects.c.decision_id == decisions.c.decision_id))
    .where(decisions.c.decision_id == bindparam("b_id"))
)
_END_TASK = (
    update(tasks)
    .where(tasks.c.task_id == bindparam("b_id"), tasks.c.state == TaskState.OPEN.value)
    .values(state=bindparam("b_state"), ended_at=bindparam("b_at", type_=UtcMicros()))
    .returning(*tasks.c)
)
_END_GRANTS = (
    update(grants)
    .where(grants.c.task_id == bindparam("b_id"), grants.c.state == GrantState.ACTIVE.value)
    .values(state=bindparam("b_state"))
)
_EXPIRED_OPEN = (
    select(tasks)
    .where(
        tasks.c.state == TaskState.OPEN.value,
        tasks.c.expires_at <= bindparam("b_now", type_=UtcMicros()),
    )
    .order_by(tasks.c.expires_at, tasks.c.task_id)
    .limit(bindparam("b_limit", type_=Integer()))
)
_CHAIN_FORMAT = select(meta.c.value).where(meta.c.key == CHAIN_FORMAT_KEY)
_AUDIT_PAGE = (
    select(audit)
    .where(audit.c.seq > bindparam("b_after", type_=Integer()))
    .order_by(audit.c.seq)
    .limit(bindparam("b_limit", type_=Integer()))
)


class SqlStore:
    """Durable state and the audit chain in one SQL database. Safe to share between threads.

    Each call checks a connection out of the engine's pool and returns it, so connections (and
    the driver's prepared statements) are reused. Open several ``SqlStore`` handles on one
    database, as several processes or replicas would: writers serialize on the chain head.
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
        """
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        # The deadline on a call to a server that stopped answering: past the server's own
        # limits (a lock wait, then statements), so a live server always answers first.
        self._watchdog = Watchdog(busy_timeout + statement_timeout + _DEADLINE_SLACK)
        engine = make_engine(
            url,
            busy_timeout=busy_timeout,
            statement_timeout=statement_timeout,
            connect_timeout=connect_timeout,
            pool_size=pool_size,
            watchdog=self._watchdog,
        )
        self._backend: str = engine.dialect.name
        # SQLite's busy handler polls with growing sleeps (up to 100 ms), so writers of one
        # process queue on a lock of their own instead: each is woken the moment the previous
        # one commits. Other processes on the file still meet SQLite's busy handler.
        self._writers = threading.Lock() if self._backend == "sqlite" else None
        self._writer_wait = busy_timeout.total_seconds()
        self._decisions: GroupCommit[DecisionWrite, AuditRecord] = GroupCommit(
            self._record_decisions, wait_seconds=self._writer_wait, code=_STORE
        )
        self._read_options = read_options(engine)
        # The hot read below SQLAlchemy's statement machinery, where the driver allows it.
        self._hot_read = GrantWithTaskQuery(engine) if self._backend == "sqlite" else None
        self._driver_writes = _DriverWrites(engine) if self._backend == "sqlite" else None
        self._engine: Engine | None = engine
        self._page_size = page_size
        self._format = ChainFormat.LEGACY
        try:
            self._bootstrap(migrate)
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
    ) -> SqlStore:
        """Open or create the SQLite database file at ``path`` (WAL, ``synchronous=NORMAL``)."""
        url = URL.create("sqlite+pysqlite", database=str(Path(path).absolute()))
        return cls(url, busy_timeout=busy_timeout, page_size=page_size, migrate=migrate)

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
    ) -> SqlStore:
        """Open tether's store in the PostgreSQL database ``dsn`` names, creating its tables on
        first use and applying pending migrations unless ``migrate=False`` (safe when several
        replicas start at once).

        ``dsn`` is a URL (``postgresql://``, ``postgres://`` or ``postgresql+psycopg://``; query
        parameters are libpq's) or a libpq ``key=value`` string. ``lock_timeout`` bounds the wait
        for the chain head another writer holds; ``statement_timeout`` bounds every statement and
        how long a session may sit idle inside a transaction; ``connect_timeout`` bounds
        connecting and waiting for a pooled connection. The pool keeps ``pool_size`` connections
        and opens up to as many again under load; each is pinged before use.
        """
        return cls(
            postgres_url(dsn),
            busy_timeout=lock_timeout,
            statement_timeout=statement_timeout,
            connect_timeout=connect_timeout,
            pool_size=pool_size,
            page_size=page_size,
            migrate=migrate,
        )

    def __repr__(self) -> str:
        # Never the URL: it may carry a password, and its host is nobody else's business.
        return f"SqlStore({self._backend}, {'open' if self._engine is not None else 'closed'})"

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._backend

    @property
    def chain_format(self) -> ChainFormat:
        """How this store's audit chain hashes its records: fixed for the chain's life."""
        return self._format

    # -- tasks and grants ----------------------------------------------------------------------

    def open_task(self, task: Task, grant: Grant, audit: AuditEntry) -> AuditRecord:
        if grant.task_id != task.task_id:
            raise ValueError("the grant must belong to the task it is opened with")
        with self._write(_STORE, "open the task") as tx:
            tx.conn.execute(_INSERT_TASK, codec.task_params(task))
            tx.conn.execute(_INSERT_GRANT, codec.grant_params(grant))
            return tx.append(audit)

    def get_task(self, task_id: TaskId) -> Task | None:
        with self._read(_STORE, "read the task") as conn:
            row = conn.execute(_SELECT_TASK, {"b_id": task_id}).first()
        return None if row is None else codec.task_from_row(row._mapping)

    def get_grant_with_task(self, grant_id: GrantId) -> tuple[Grant | None, Task | None]:
        if self._hot_read is not None:
            return self._read_hot(grant_id)
        # One read transaction for both: authorize needs them on every call.
        with self._read(_STORE, "read the grant") as conn:
            row = conn.execute(_SELECT_GRANT, {"b_id": grant_id}).first()
            if row is None:
                return None, None
            grant = codec.grant_from_row(row._mapping)
            found = conn.execute(_SELECT_TASK, {"b_id": grant.task_id}).first()
        return grant, None if found is None else codec.task_from_row(found._mapping)

    def _read_hot(self, grant_id: GrantId) -> tuple[Grant | None, Task | None]:
        """The grant and its task in one statement on the driver (:mod:`tether.store.hotread`),
        on SQLite: the read every authorize makes."""
        query = self._hot_read
        assert query is not None
        engine = self._live(_STORE)
        try:
            raw = engine.raw_connection()
            try:
                cursor = raw.cursor()
                try:
                    cursor.execute(query.sql, query.params(grant_id))
                    row = cursor.fetchone()
                finally:
                    cursor.close()
            finally:
                raw.close()  # back to the pool
        except sqlite3.Error as error:
            raise Unavailable(
                f"the store could not read the grant ({type(error).__name__}: {error}); check "
                "that the database is reachable, writable and not locked by another process",
                code=_STORE,
            ) from None
        except SQLAlchemyError as error:
            raise _unavailable(_STORE, "read the grant", error) from error
        return query.decode(row)

    def get_grant(self, grant_id: GrantId) -> Grant | None:
        with self._read(_STORE, "read the grant") as conn:
            row = conn.execute(_SELECT_GRANT, {"b_id": grant_id}).first()
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
        with self._write(_STORE, "end the task") as tx:
            return self._end_in(tx, task_id, state, at, audit, cascade)

    def _end_in(
        self,
        tx: _Writer,
        task_id: TaskId,
        state: TaskState,
        at: datetime,
        audit: AuditEntry,
        cascade: Callable[[Task], AuditEntry] | None,
    ) -> Task | None:
        grant_state = GrantState.EXPIRED if state is TaskState.EXPIRED else GrantState.REVOKED
        # INVARIANT: only an open task ends, once; ending it ends every grant it holds.
        row = tx.conn.execute(
            _END_TASK, {"b_id": task_id, "b_state": state.value, "b_at": at}
        ).first()
        if row is None:
            return None  # not open (or unknown): nothing changed, no audit record
        tx.conn.execute(_END_GRANTS, {"b_id": task_id, "b_state": grant_state.value})
        # INVARIANT: a lease lives only while its task is open; the record ending the task
        # names the leases it ended.
        lease_state = LeaseState.EXPIRED if state is TaskState.EXPIRED else LeaseState.REVOKED
        ended_leases = leases_sql.end_active(tx.conn, [task_id], lease_state, at)
        tx.append(_naming(_naming_leases(audit, ended_leases), _end_requests(tx, task_id, at)))
        # INVARIANT: ending a task ends every task delegated from it, at any depth.
        child_state = TaskState.EXPIRED if state is TaskState.EXPIRED else TaskState.REVOKED
        frontier = [task_id]
        while frontier:
            children = tx.conn.execute(
                select(tasks.c.task_id).where(
                    tasks.c.parent_task_id.in_(frontier),
                    tasks.c.state == TaskState.OPEN.value,
                )
            ).all()
            frontier = []
            for (child_id,) in children:
                ended = tx.conn.execute(
                    _END_TASK, {"b_id": child_id, "b_state": child_state.value, "b_at": at}
                ).first()
                if ended is None:
                    continue
                tx.conn.execute(_END_GRANTS, {"b_id": child_id, "b_state": grant_state.value})
                child_leases = leases_sql.end_active(tx.conn, [child_id], lease_state, at)
                requests = _end_requests(tx, child_id, at)
                if cascade is not None:
                    child = codec.task_from_row(ended._mapping)
                    tx.append(_naming(_naming_leases(cascade(child), child_leases), requests))
                frontier.append(child_id)
        return codec.task_from_row(row._mapping)

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
        all in one transaction; returns how many of its own tasks were ended."""
        with self._write(_STORE, "revoke the agent") as tx:
            agents_sql.mark(tx.conn, agent, at, reason, by)
            tx.append(audit)
            ended = 0
            for task_id in agents_sql.open_task_ids(tx.conn, agent):
                current = tx.conn.execute(_SELECT_TASK, {"b_id": task_id}).first()
                if current is None:
                    continue
                task = codec.task_from_row(current._mapping)
                if self._end_in(
                    tx, TaskId(task_id), TaskState.REVOKED, at, end_audit(task), cascade
                ):
                    ended += 1
            return ended

    def restore_agent(self, agent: str, audit: AuditEntry) -> bool:
        with self._write(_STORE, "restore the agent") as tx:
            removed = agents_sql.unmark(tx.conn, agent)
            if removed:
                tx.append(audit)
            return removed

    def count_live_leases(self, now: datetime) -> int:
        """Active leases not yet past their expiry (the ``tether_leases_live`` gauge)."""
        with self._read(_STORE, "count live leases") as conn:
            return leases_sql.count_live(conn, now)

    def is_agent_revoked(self, agent: str) -> bool:
        with self._read(_STORE, "check the agent") as conn:
            return agents_sql.listed(conn, agent)

    def revoked_agents(self) -> list[tuple[str, datetime, str, str]]:
        with self._read(_STORE, "list revoked agents") as conn:
            return agents_sql.all_listed(conn)

    def open_tasks_of(self, parent_task_id: TaskId) -> Sequence[Task]:
        """Open tasks delegated directly from ``parent_task_id``."""
        with self._read(_STORE, "list delegated tasks") as conn:
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
        with self._read(_STORE, "list expired tasks") as conn:
            rows = conn.execute(_EXPIRED_OPEN, {"b_now": now, "b_limit": limit}).all()
        return [codec.task_from_row(r._mapping) for r in rows]

    # -- decisions and effects -----------------------------------------------------------------

    def record_decision(
        self,
        decision: DecisionRecord,
        audit: AuditEntry,
        *,
        new_approval: tuple[Approval, AuditEntry] | None = None,
        use_approval: ApprovalId | None = None,
        budget: BudgetCharge | None = None,
        progress: Sequence[TaskProgress] = (),
        lease: tuple[Lease, AuditEntry] | None = None,
    ) -> AuditRecord:
        """Record one decision with everything it implies, group-committed with the decisions
        other threads are recording at the same moment (:mod:`tether.store.groupcommit`)."""
        write = DecisionWrite(decision, audit, new_approval, use_approval, budget, progress, lease)
        return self._decisions.submit(write)

    def record_decision_async(self, write: DecisionWrite) -> Awaitable[AuditRecord]:
        """:meth:`record_decision` for an event loop: the write joins the same group commit,
        led by the group's writer thread, and the loop awaits its result
        (:meth:`GroupCommit.submit_async`)."""
        self._live(_STORE)
        return self._decisions.submit_async(write)

    def _record_decisions(self, batch: Sequence[Pending[DecisionWrite, AuditRecord]]) -> None:
        """One transaction for the batch; each write in a savepoint of its own, so a write
        refused (budget over, approval used) rolls back alone. Results are handed out only
        after the commit."""
        done: list[tuple[Pending[DecisionWrite, AuditRecord], AuditRecord]] = []
        with self._write(_STORE, "record the decision") as tx:
            if len(batch) == 1:
                # Alone: a refusal rolls the whole transaction back, no savepoint needed.
                done.append((batch[0], self._apply_decision(tx, batch[0].work)))
            else:
                for pending in batch:
                    head = tx.head
                    try:
                        with tx.savepoint():
                            record = self._apply_decision(tx, pending.work)
                    except TetherError as refused:
                        tx.head = head  # the savepoint took its records back with it
                        pending.finish(error=refused)
                    except SQLAlchemyError as error:
                        tx.head = head
                        pending.finish(error=_unavailable(_STORE, "record the decision", error))
                    else:
                        done.append((pending, record))
        # INVARIANT: no decision is answered before the commit that holds its audit record.
        for pending, record in done:
            pending.finish(result=record)

    def _apply_decision(self, tx: _Writer, write: DecisionWrite) -> AuditRecord:
        decision = write.decision
        if write.use_approval is not None:
            self._use_approval(tx, write.use_approval, decision.decision_id)
        if write.budget is not None:
            # INVARIANT: a budget is never overspent: checked and reserved under the lock.
            budgets_sql.reserve(tx.conn, decision.decision_id, write.budget)
        for moved in write.progress:
            budgets_sql.apply_progress(tx.conn, moved)
        if tx.driver is not None:
            tx.driver.insert_decision.run(tx.conn, codec.decision_params(decision))
        else:
            tx.conn.execute(_INSERT_DECISION, codec.decision_params(decision))
        record = tx.append(write.audit)
        if write.new_approval is not None:
            approval, approval_audit = write.new_approval
            tx.conn.execute(approvals_sql.INSERT, approvals_sql.params(approval))
            tx.append(approval_audit)
        if write.lease is not None:
            leases_sql.insert_lease(tx.conn, write.lease[0])
            tx.append(write.lease[1])
        return record

    def _use_approval(self, tx: _Writer, approval_id: ApprovalId, decision_id: DecisionId) -> None:
        row = tx.conn.execute(approvals_sql.SELECT, {"b_id": approval_id}).first()
        if row is None:
            raise NotFound(f"no approval {approval_id}", code=ErrorCode.APPROVAL_NOT_FOUND)
        approval = approvals_sql.from_doc(row.doc)
        if approval.state is not ApprovalState.APPROVED:
            raise Conflict(
                f"the approval is {approval.state.value}", code=ErrorCode.APPROVAL_NOT_PENDING
            )
        used = replace(approval, state=ApprovalState.USED, used_by=decision_id)
        # INVARIANT: an approval is used at most once: the row moves approved -> used only from
        # the state we read, under the head lock that serializes every writer.
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

    # -- approvals -----------------------------------------------------------------------------

    def get_approval(self, approval_id: ApprovalId) -> Approval | None:
        with self._read(_STORE, "read the approval") as conn:
            row = conn.execute(approvals_sql.SELECT, {"b_id": approval_id}).first()
        return None if row is None else approvals_sql.from_doc(row.doc)

    def list_approvals(self, limit: int = 100) -> Sequence[Approval]:
        with self._read(_STORE, "list approvals") as conn:
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
        with self._read(_STORE, "look up pending approvals") as conn:
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
        with self._write(_STORE, "record the vote") as tx:
            row = tx.conn.execute(approvals_sql.SELECT, {"b_id": approval_id}).first()
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
            # The head lock makes this impossible; checked so a broken lock cannot lose a vote.
            if moved.rowcount != 1:
                raise Unavailable(
                    "the approval changed during the vote; nothing was written", code=_STORE
                )
            tx.append(audit(after))
            return after

    def task_activity(self, task_id: TaskId) -> TaskActivity:
        with self._read(_STORE, "summarize the task") as conn:
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

    def ended_task_volumes(self, workflow: str, limit: int) -> list[Volume]:
        """The anomaly signal's history (:mod:`tether.store.history`)."""
        with self._read(_STORE, "read the workflow's history") as conn:
            return history_sql.ended_task_volumes(conn, workflow, limit)

    def task_volume(self, task_id: TaskId) -> Volume:
        with self._read(_STORE, "read what the task has read") as conn:
            return history_sql.task_volume(conn, task_id)

    def get_decision(self, decision_id: DecisionId) -> DecisionRecord | None:
        with self._read(_STORE, "read the decision") as conn:
            row = conn.execute(_SELECT_DECISION, {"b_id": decision_id}).first()
        return None if row is None else codec.decision_from_row(row._mapping)

    def record_effect(self, effect: Effect, audit: AuditEntry) -> AuditRecord:
        """Record what a decided call did; one effect per decision.

        Raises ``Conflict(EFFECT_ALREADY_REPORTED)`` on a second report and
        ``NotFound(DECISION_NOT_FOUND)`` for an unknown decision; neither writes anything.
        """
        with self._write(_STORE, "record the effect") as tx:
            # The head lock serializes writers, so this check cannot race another report.
            slot = tx.conn.execute(_EFFECT_SLOT, {"b_id": effect.decision_id}).first()
            if slot is None:
                raise NotFound(
                    f"no decision {effect.decision_id} to report an effect for; report the "
                    "effect with the decision id the authorize call returned",
                    code=ErrorCode.DECISION_NOT_FOUND,
                )
            if slot.effect_id is not None:
                raise Conflict(
                    f"an effect was already reported for decision {effect.decision_id}; "
                    "each decision takes exactly one report",
                    code=ErrorCode.EFFECT_ALREADY_REPORTED,
                )
            tx.conn.execute(_INSERT_EFFECT, codec.effect_params(effect))
            budgets_sql.settle(tx.conn, effect)
            return tx.append(audit)

    def decision_holds(self, decision_id: DecisionId) -> Sequence[tuple[Hold, float | None]]:
        with self._read(_STORE, "read the budget holds") as conn:
            return budgets_sql.holds_of(conn, decision_id)

    def get_effect(self, decision_id: DecisionId) -> Effect | None:
        """The effect reported for ``decision_id``, if any."""
        with self._read(_STORE, "read the effect") as conn:
            row = conn.execute(_SELECT_EFFECT, {"b_id": decision_id}).first()
        return None if row is None else codec.effect_from_row(row._mapping)

    # -- audit ---------------------------------------------------------------------------------

    def append_audit(self, audit: AuditEntry) -> AuditRecord:
        with self._write(_AUDIT, "append to the audit log") as tx:
            return tx.append(audit)

    def audit_records(self, after_seq: int = 0) -> Iterator[AuditRecord]:
        """Records in chain order after ``after_seq``, fetched a page at a time.

        No connection is held between pages, so a slow reader never holds up writers.
        """
        after = after_seq
        while True:
            with self._read(_AUDIT, "read the audit log") as conn:
                rows = conn.execute(
                    _AUDIT_PAGE, {"b_after": after, "b_limit": self._page_size}
                ).all()
            page = [_audit_record(r._mapping, self._format) for r in rows]
            yield from page
            if len(page) < self._page_size:
                return
            after = page[-1].seq

    def chain_head(self) -> ChainHead | None:
        with self._read(_AUDIT, "read the audit chain head") as conn:
            row = conn.execute(_READ_HEAD).first()
        if row is None:
            # Never report "empty": that would hide every record from a head check.
            raise Unavailable(
                "the audit chain head is missing: the database was changed outside tether; "
                "export the audit log and investigate before writing to it again",
                code=_AUDIT,
            )
        return None if row.seq == 0 else ChainHead(int(row.seq), str(row.hash))

    # -- lifecycle -----------------------------------------------------------------------------

    def ping(self) -> None:
        """Take the write lock and the chain head, then roll back: reachable *and* writable."""
        engine = self._live(_STORE)
        with _translate(_STORE, "be written"), engine.connect() as conn, self._guard(conn):
            conn.execution_options(**{WRITE_OPTION: True})
            tx = conn.begin()
            try:
                conn.execute(_LOCK_HEAD).one()
            finally:
                tx.rollback()

    def close(self) -> None:
        """Close every pooled connection; later calls raise ``Unavailable``."""
        self._decisions.close()  # what is queued is written (or fails) first
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()
        self._watchdog.close()

    # -- plumbing ------------------------------------------------------------------------------

    def _live(self, code: ErrorCode) -> Engine:
        engine = self._engine
        if engine is None:
            raise Unavailable("the store is closed", code=code)
        return engine

    def _guard(self, conn: Connection) -> AbstractContextManager[None]:
        """The client-side deadline on ``conn`` (PostgreSQL; SQLite has its busy timeout)."""
        if self._backend != "postgresql":
            return nullcontext()
        return self._watchdog.guard(conn.connection.dbapi_connection)

    @contextmanager
    def _read(self, code: ErrorCode, action: str) -> Iterator[Connection]:
        engine = self._live(code)
        with _translate(code, action), engine.connect() as conn, self._guard(conn):
            yield conn.execution_options(**self._read_options)

    @contextmanager
    def _write_conn(self, code: ErrorCode, action: str) -> Iterator[Connection]:
        engine = self._live(code)
        with (
            self._one_writer(code, action),
            _translate(code, action),
            engine.connect() as conn,
            self._guard(conn),
        ):
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _one_writer(self, code: ErrorCode, action: str) -> Iterator[None]:
        """On SQLite, one write transaction of this process at a time, waited for at most the
        busy timeout (then ``Unavailable``, as a lock SQLite could not get)."""
        if self._writers is None:
            yield
            return
        if not self._writers.acquire(timeout=self._writer_wait):
            raise Unavailable(
                f"could not {action}: another write held the database longer than the busy "
                "timeout; nothing was written",
                code=code,
            )
        try:
            yield
        finally:
            self._writers.release()

    @contextmanager
    def _write(self, code: ErrorCode, action: str) -> Iterator[_Writer]:
        with self._write_conn(code, action) as conn:
            yield _Writer(conn, self._format, self._driver_writes)

    def _bootstrap(self, migrate: bool) -> None:
        """Check the schema on open and, when ``migrate``, bring it to this tether's revision."""
        with self._write_conn(_STORE, "open the database") as conn:
            # INVARIANT: one replica at a time checks and migrates the schema.
            serialize_bootstrap(conn)
            # Refuses a newer tether's database. A current one takes no DDL from here on.
            state = migrate_schema.schema_state(conn)
            if migrate and not state.up_to_date:
                self._migrate(conn)
            if migrate or state.up_to_date:
                self._read_format(conn)

    def _read_format(self, conn: Connection) -> None:
        """The chain's format, fixed when the schema reached revision 0006. A handle opened with
        ``migrate=False`` on an older schema keeps format 1: every chain begun before was."""
        found = conn.execute(_CHAIN_FORMAT).scalar()
        self._format = ChainFormat.LEGACY if found is None else ChainFormat(int(found))

    # -- the schema ----------------------------------------------------------------------------

    def schema_state(self) -> SchemaState:
        """The database's schema revision against this tether's (:mod:`tether.store.migrate`)."""
        with self._read(_STORE, "read the schema revision") as conn:
            return migrate_schema.schema_state(conn)

    def upgrade_schema(self) -> SchemaUpgrade:
        """Apply pending migrations, serialized with every other replica's start."""
        with self._write_conn(_STORE, "open the database") as conn:
            serialize_bootstrap(conn)
            upgrade = self._migrate(conn)
            self._read_format(conn)
            return upgrade

    def _migrate(self, conn: Connection) -> SchemaUpgrade:
        action = (
            "create or upgrade tether's tables (this takes the right to create tables: run "
            "`tether db upgrade` as the database's owner)"
        )
        with _translate(_STORE, action):
            return migrate_schema.upgrade(conn)


class _DriverWrites:
    """The statements every write repeats, on the driver (:mod:`tether.store.driver`)."""

    def __init__(self, engine: Engine) -> None:
        self.lock_head = DriverStatement(engine, _LOCK_HEAD, "lock the audit chain's head")
        self.move_head = DriverStatement(engine, _MOVE_HEAD, "move the audit chain's head")
        self.insert_audit = DriverStatement(engine, _INSERT_AUDIT, "append the audit record")
        self.insert_decision = DriverStatement(engine, _INSERT_DECISION, "record the decision")


class _Writer:
    """One write transaction that holds the chain head and appends after it."""

    def __init__(
        self, conn: Connection, format: ChainFormat, driver: _DriverWrites | None = None
    ) -> None:
        self.conn = conn
        self._format = format
        self.driver = driver
        # Locked first, before any other row, on every write path (see the module docstring).
        if driver is not None:
            found = driver.lock_head.run(conn, {}).fetchone()
            if found is None:
                raise Unavailable(
                    "the audit chain's head is missing, so nothing can be appended: the "
                    "database was changed outside tether; run `tether audit verify`",
                    code=_AUDIT,
                )
            seq, hash_ = found
        else:
            row = conn.execute(_LOCK_HEAD).one()
            seq, hash_ = row.seq, row.hash
        self._head = None if seq == 0 else ChainHead(int(seq), str(hash_))

    @property
    def head(self) -> ChainHead | None:
        return self._head

    @head.setter
    def head(self, value: ChainHead | None) -> None:
        # Only to undo appends a rolled-back savepoint took back with it.
        self._head = value

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A savepoint around one write of a batch: rolled back alone if the write raises.
        On the driver (SQLite) as plain statements, which SQLAlchemy would compile anew for
        every savepoint it names."""
        if self.driver is None:
            with self.conn.begin_nested():
                yield
            return
        cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute("SAVEPOINT tether_write")
        try:
            yield
        except BaseException:
            cursor.execute("ROLLBACK TO SAVEPOINT tether_write")
            cursor.execute("RELEASE SAVEPOINT tether_write")
            raise
        cursor.execute("RELEASE SAVEPOINT tether_write")

    def append(self, entry: AuditEntry) -> AuditRecord:
        # INVARIANT: the chain has no gap and no fork. The head is locked for this whole
        # transaction, the record is sealed after it, and the head moves only from the value we
        # read (a second guard besides the lock) in the same commit as the record itself.
        record = seal(
            self._head,
            record_id=entry.record_id,
            at=codec.audit_at(entry.at),
            kind=entry.kind,
            agent=entry.agent,
            task_id=entry.task_id,
            body=entry.body,
            format=self._format,
        )
        move = {
            "b_old_seq": 0 if self._head is None else self._head.seq,
            "b_new_seq": record.seq,
            "b_new_hash": record.hash,
        }
        if self.driver is not None:
            self.driver.insert_audit.run(self.conn, codec.audit_params(record))
            moved = self.driver.move_head.run(self.conn, move)
        else:
            self.conn.execute(_INSERT_AUDIT, codec.audit_params(record))
            moved = self.conn.execute(_MOVE_HEAD, move)
        if moved.rowcount != 1:
            raise Unavailable(
                "the audit chain head moved during a write; nothing was written", code=_AUDIT
            )
        self._head = ChainHead(record.seq, record.hash)
        return record


def _audit_record(row: codec.Row, format: ChainFormat) -> AuditRecord:
    try:
        return codec.audit_from_row(row, format)
    except (ValueError, KeyError, TypeError):
        raise Unavailable(
            f"audit record {row['seq']} cannot be read: its kind or body is not one tether "
            "writes, so it was changed outside tether; the log from here on cannot be trusted",
            code=_AUDIT,
        ) from None


def _end_requests(tx: _Writer, task_id: str, at: datetime) -> dict[str, list[str]]:
    """End the approvals and break-glass requests of a task that just ended.

    # INVARIANT: nothing asked for a task outlives it: a human cannot approve, nor an agent use,
    # an approval or break-glass of an ended task.
    """
    return {
        "approvals_ended": approvals_sql.end_for_tasks(tx.conn, [task_id]),
        "breakglass_ended": breakglass_rows.end_for_tasks(tx.conn, [task_id], at),
    }


def _naming(entry: AuditEntry, ended: dict[str, list[str]]) -> AuditEntry:
    """``entry`` naming what ended with its task, when anything did."""
    named: dict[str, JSONValue] = {}
    for key, ids in ended.items():
        if ids:
            values: list[JSONValue] = list(ids)
            named[key] = values
    if not named:
        return entry
    return replace(entry, body={**entry.body, **named})


def _naming_leases(entry: AuditEntry, ended: Sequence[Lease]) -> AuditEntry:
    """``entry`` with the ids of the leases that ended with its task, when there are any."""
    if not ended:
        return entry
    return replace(entry, body={**entry.body, "leases_revoked": [x.lease_id for x in ended]})


@contextmanager
def _translate(code: ErrorCode, action: str) -> Iterator[None]:
    """Map SQLAlchemy's errors onto tether's tree, without SQL, parameters or URLs."""
    try:
        yield
    except IntegrityError as exc:
        # Every writer holds the head lock, so this is no race: an id tether made is reused.
        raise Unavailable(
            f"could not {action}: an id it carries (task, grant, decision, effect or audit "
            "record) is already in use; nothing was written",
            code=ErrorCode.INTERNAL,
        ) from exc
    except StatementError as exc:
        # A value our own column types refused (a naive datetime) is the caller's bug, not an
        # outage: surface it as itself. Everything the database or the pool raised is an outage.
        if not isinstance(exc, DBAPIError) and isinstance(exc.orig, ValueError | TypeError):
            raise exc.orig from None
        raise _unavailable(code, action, exc) from exc
    except SQLAlchemyError as exc:
        raise _unavailable(code, action, exc) from exc


def _unavailable(code: ErrorCode, action: str, exc: SQLAlchemyError) -> Unavailable:
    return Unavailable(
        f"the store could not {action} ({reason(exc)}); check that the database is reachable, "
        "writable and not locked by another process",
        code=code,
    )
