"""The database under every SQL adapter: engine, connections, transactions, the chain head.

:class:`Database` owns one engine (SQLite or PostgreSQL, set up by :mod:`tether.store.dialect`)
and is the only way the SQL adapters (:mod:`tether.store.sql` and its neighbours: leases,
break-glass, checkpoints, stats) reach it:

- :meth:`Database.read`: a pooled connection for reads, under the client-side deadline on
  PostgreSQL (:mod:`tether.store.watchdog`);
- :meth:`Database.write`: one write transaction as a :class:`Writer`, which locks the head of
  this writer's own audit partition first and appends audit records after it. Every mutation is
  one such transaction, committed once: lock the partition's head (``SELECT ... FOR UPDATE`` on
  its ``audit_head`` row, waiting at most the busy timeout; on SQLite the transaction began with
  ``BEGIN IMMEDIATE``, which already holds the database's write lock), make the change, seal the
  audit entry after the head, insert it and move the head. If any step fails the transaction
  rolls back: a change and its audit record are written together or not at all.

The log is partitioned (:mod:`tether.core.audit`): each :class:`Database` writes to one
partition (``partition``: the replica id), so on PostgreSQL writers of different replicas lock
different head rows and never wait on each other; writers sharing a partition serialize on its
row as before. The head lock therefore serializes nothing *across* partitions: a read-check-write
of shared state (a budget's sum, an approval's votes, one effect per decision) takes a lock on
the row it checks, as its module says. A partition's head row is created by its first write.

Errors: SQLAlchemy's are mapped by :func:`translate` onto ``Unavailable`` with the caller's code
and a one-line reason (:func:`tether.store.dialect.reason`), never SQL, parameters, the URL, its
host or its password.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from datetime import timedelta
from typing import Final

from sqlalchemy import URL, Connection, Engine, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError, StatementError
from sqlalchemy.pool import SingletonThreadPool

from tether.core.audit import (
    GENESIS_HASH,
    LEGACY_PARTITION,
    AuditRecord,
    ChainFormat,
    ChainHead,
    Sealed,
    check_partition,
    seal_with_leaf,
)
from tether.core.errors import ErrorCode, Unavailable
from tether.service.ports import AuditEntry
from tether.store import codec, fastjson
from tether.store import migrate as migrate_schema
from tether.store.dialect import (
    WRITE_OPTION,
    make_engine,
    read_options,
    reason,
    serialize_bootstrap,
    sqlite_file,
)
from tether.store.driver import (
    DriverSavepoints,
    DriverStatement,
    DriverStatements,
    driver_errors,
)
from tether.store.groupcommit import WouldWait
from tether.store.integrity import integrity_message
from tether.store.migrate import SchemaState, SchemaUpgrade
from tether.store.schema import CHAIN_FORMAT_KEY, audit, audit_head, meta
from tether.store.sealed import SealedTail
from tether.store.walcheck import WalCheckpointer
from tether.store.watchdog import Watchdog

STORE: Final = ErrorCode.STORE_UNAVAILABLE
AUDIT: Final = ErrorCode.AUDIT_UNAVAILABLE
_DEADLINE_SLACK: Final = timedelta(seconds=1)

# Statements are built once: SQLAlchemy caches their compiled form, the driver its prepared one.
LOCK_HEAD: Final = (
    select(audit_head.c.seq, audit_head.c.hash)
    .where(audit_head.c.partition_id == bindparam("b_part"))
    .with_for_update()
)
READ_HEADS: Final = select(audit_head.c.partition_id, audit_head.c.seq, audit_head.c.hash)
MOVE_HEAD: Final = (
    update(audit_head)
    .where(
        audit_head.c.partition_id == bindparam("b_part"),
        audit_head.c.seq == bindparam("b_old_seq"),
    )
    .values(seq=bindparam("b_new_seq"), hash=bindparam("b_new_hash"))
)
_PARTITION_RECORDS = select(func.count()).where(audit.c.partition_id == bindparam("b_part"))
_INSERT_AUDIT = insert(audit)
_CHAIN_FORMAT = select(meta.c.value).where(meta.c.key == CHAIN_FORMAT_KEY)


class Database:
    """One SQL database's engine and transactions. Safe to share between threads.

    Each call checks a connection out of the engine's pool and returns it, so connections (and
    the driver's prepared statements) are reused.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        busy_timeout: timedelta,
        statement_timeout: timedelta,
        connect_timeout: timedelta,
        pool_size: int,
        partition: str = LEGACY_PARTITION,
    ) -> None:
        #: The audit partition this handle appends to (its replica id).
        self.partition = check_partition(partition)
        # The deadline on a call to a server that stopped answering: past the server's own
        # limits (a lock wait, then statements), so a live server always answers first.
        self._watchdog = Watchdog(busy_timeout + statement_timeout + _DEADLINE_SLACK)
        # A patient writer (the kill switch) waits for the head past the longest any other
        # holder can keep it: a running holder is bounded by its own lock wait and statement
        # timeouts, a stalled one (idle in its transaction) is ended by the server after the
        # busy timeout, at least a second (dialect: idle_in_transaction_session_timeout), which
        # the statement timeout bounds.
        self._patient = busy_timeout + statement_timeout + _DEADLINE_SLACK
        self._patient_deadline = self._patient + statement_timeout + _DEADLINE_SLACK
        wal_file = sqlite_file(url)
        engine = make_engine(
            url,
            busy_timeout=busy_timeout,
            statement_timeout=statement_timeout,
            connect_timeout=connect_timeout,
            pool_size=pool_size,
            watchdog=self._watchdog,
            wal_autocheckpoint=wal_file is None,
        )
        self.backend: str = engine.dialect.name
        # SQLite's busy handler polls with growing sleeps (up to 100 ms), so writers of one
        # process queue on a lock of their own instead: each is woken the moment the previous
        # one commits. Other processes on the file still meet SQLite's busy handler.
        self._writers = threading.Lock() if self.backend == "sqlite" else None
        # SQLite's one write connection, used under the writers' lock (see _sqlite_write).
        # Not for an in-memory database: its pool gives each thread a connection (a database)
        # of its own, which no other thread may use.
        self._write_conn: Connection | None = None
        self._keep_write_conn = not isinstance(engine.pool, SingletonThreadPool)
        self.busy_seconds = busy_timeout.total_seconds()
        self._busy_millis = max(0, int(busy_timeout / timedelta(milliseconds=1)))  # as set
        # A file's WAL checkpoints run on a thread of their own, not inside a write's COMMIT.
        self._wal = None if wal_file is None else WalCheckpointer(wal_file, self._busy_millis)
        self._read_options = read_options(engine)
        self._driver = DriverWrites(engine)
        self._engine: Engine | None = engine
        self.format = ChainFormat.LEGACY
        #: What this handle's writes sealed and committed, until a checkpoint covers it.
        self.sealed = SealedTail()

    @property
    def engine(self) -> Engine | None:
        """The engine, or ``None`` once closed."""
        return self._engine

    @property
    def prepared(self) -> DriverStatements:
        """Statements run on the driver inside this database's transactions
        (:mod:`tether.store.driver`), each compiled once for its engine."""
        return self._driver.prepared

    def live(self, code: ErrorCode) -> Engine:
        engine = self._engine
        if engine is None:
            raise Unavailable("the store is closed", code=code)
        return engine

    @contextmanager
    def sqlite_write_driver(self) -> Iterator[sqlite3.Connection | None]:
        """SQLite's write connection's driver connection, held for a read while no write of
        this process holds it; ``None`` when a write does, or there is none to lend. Its page
        cache stays warm across this process's own commits, where another connection empties
        its cache after each commit it did not make (a read there cost ~7 µs more). No
        transaction is open on it outside a write, so a read sees what is committed."""
        writers = self._writers
        if writers is None or not writers.acquire(blocking=False):
            yield None
            return
        try:
            conn = self._write_conn
            if conn is None or conn.closed or conn.invalidated or conn.in_transaction():
                yield None
            else:
                driver = conn.connection.driver_connection
                yield driver if isinstance(driver, sqlite3.Connection) else None
        finally:
            writers.release()

    def guard(self, conn: Connection, *, patient: bool = False) -> AbstractContextManager[None]:
        """The client-side deadline on ``conn`` (PostgreSQL; SQLite has its busy timeout)."""
        if self.backend != "postgresql":
            return nullcontext()
        limit = self._patient_deadline if patient else None
        return self._watchdog.guard(conn.connection.dbapi_connection, limit)

    def guard_driver(self, dbapi_connection: object) -> AbstractContextManager[None]:
        """The client-side deadline on a pooled driver connection (PostgreSQL)."""
        return self._watchdog.guard(dbapi_connection)

    @contextmanager
    def read(self, code: ErrorCode, action: str) -> Iterator[Connection]:
        """A connection for reads; errors become ``Unavailable(code)`` saying ``action``."""
        engine = self.live(code)
        with translate(code, action), engine.connect() as conn, self.guard(conn):
            yield conn.execution_options(**self._read_options)

    @contextmanager
    def write_conn(
        self,
        code: ErrorCode,
        action: str,
        *,
        patient: bool = False,
        lean: bool = False,
        wait: bool = True,
    ) -> Iterator[Connection]:
        """A connection in a write transaction, committed when the block ends. A ``patient``
        one waits longer for the locks it needs (see :meth:`write`); a ``lean`` one, on
        SQLite, begins and commits on the driver (see :meth:`_sqlite_write`). One that must
        not ``wait`` (SQLite, lean: a write led on an event loop) raises
        :class:`~tether.store.groupcommit.WouldWait` before anything is written when the
        database's write lock is not free at once."""
        engine = self.live(code)
        if self._writers is not None:
            with self._one_writer(code, action, patient, wait), translate(code, action):
                yield from self._sqlite_write(engine, code, action, lean, wait)
            return
        if not wait:
            raise ValueError("only SQLite's lean writes can be asked not to wait")
        with (
            self._one_writer(code, action, patient),
            translate(code, action),
            engine.connect() as conn,
            self.guard(conn, patient=patient),
        ):
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                if patient and self.backend == "postgresql":
                    millis = math.ceil(self._patient / timedelta(milliseconds=1))
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = {millis}")
                yield conn

    def _sqlite_write(
        self, engine: Engine, code: ErrorCode, action: str, lean: bool, wait: bool = True
    ) -> Iterator[Connection]:
        """SQLite's write transaction, on the process's one write connection (called holding
        the writers' lock, so one thread at a time uses it): a pool checkout and check-in and
        the write option per batch were a third of the group-commit writer's CPU. A
        transaction that fails takes the connection with it (closed, back to the pool); the
        next write opens another.

        ``lean`` (the decisions' group commit): ``BEGIN IMMEDIATE`` and ``COMMIT`` go to the
        driver, as the hot statements do (:mod:`tether.store.driver`), instead of through
        SQLAlchemy's transaction and its begin hook, which were most of the rest of a batch's
        SQLAlchemy cost. A Core statement run inside joins the driver's transaction
        (:func:`tether.store.dialect` begins none while one is open) and is then committed
        through SQLAlchemy, which commits the driver's. Same transaction, same lock order."""
        conn = self._write_conn
        if conn is None or conn.closed or conn.invalidated:
            conn = engine.connect()
            conn.execution_options(**{WRITE_OPTION: True})
            if self._keep_write_conn:
                self._write_conn = conn
        try:
            if not lean:
                with conn.begin():
                    yield conn
                self._committed()
                return
            raw = conn.connection.driver_connection
            if wait:
                with driver_errors(None, action, code):
                    raw.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
            else:
                _begin_at_once(raw, self._busy_millis, code, action)
            yield conn
            if conn.in_transaction():
                conn.commit()
            else:
                with driver_errors(None, action, code):
                    raw.commit()  # type: ignore[union-attr]
            self._committed()
        except WouldWait:
            raise  # nothing began: the connection stays as it was, for the next write
        except BaseException:
            self._write_conn = None
            with suppress(Exception):
                if conn.in_transaction():
                    conn.rollback()
                elif lean:
                    conn.connection.driver_connection.rollback()  # type: ignore[union-attr]
            with suppress(SQLAlchemyError):
                conn.close()
            raise
        if not self._keep_write_conn:
            conn.close()

    def _committed(self) -> None:
        if self._wal is not None:
            self._wal.committed()

    @contextmanager
    def write(
        self,
        code: ErrorCode,
        action: str,
        *,
        patient: bool = False,
        lean: bool = False,
        wait: bool = True,
    ) -> Iterator[Writer]:
        """One write transaction holding the chain head (see the module docstring).

        A ``patient`` write waits for the head past the longest another holder can keep it
        (its lock wait and statements, or the server ending a session stalled inside its
        transaction), so it succeeds while a stalled replica holds the head and decisions
        fail: the kill switch. Still bounded, by the client-side deadline. A ``lean`` one
        (the hot path's) begins and commits on SQLite's driver (see :meth:`_sqlite_write`)."""
        with self.write_conn(code, action, patient=patient, lean=lean, wait=wait) as conn:
            writer = Writer(conn, self.format, self.partition, self._driver)
            yield writer
        # Committed: what it sealed can be signed without reading it back.
        if writer.sealed:
            self.sealed.add(writer.sealed)

    @contextmanager
    def _one_writer(
        self, code: ErrorCode, action: str, patient: bool = False, wait: bool = True
    ) -> Iterator[None]:
        """On SQLite, one write transaction of this process at a time, waited for at most the
        busy timeout (then ``Unavailable``, as a lock SQLite could not get); not at all when
        ``wait`` is false (then :class:`WouldWait`)."""
        if self._writers is None:
            yield
            return
        if not wait:
            if not self._writers.acquire(blocking=False):
                raise WouldWait("another write of this process holds the database")
            try:
                yield
            finally:
                self._writers.release()
            return
        seconds = self._patient.total_seconds() if patient else self.busy_seconds
        if not self._writers.acquire(timeout=seconds):
            raise Unavailable(
                f"could not {action}: another write held the database longer than the busy "
                "timeout; nothing was written",
                code=code,
            )
        try:
            yield
        finally:
            self._writers.release()

    def ping(self) -> None:
        """Take the write lock and this partition's head, then roll back: reachable *and*
        writable (a partition not yet written has no head row to lock)."""
        engine = self.live(STORE)
        with translate(STORE, "be written"), engine.connect() as conn, self.guard(conn):
            conn.execution_options(**{WRITE_OPTION: True})
            tx = conn.begin()
            try:
                conn.execute(LOCK_HEAD, {"b_part": self.partition}).all()
            finally:
                tx.rollback()

    def close(self) -> None:
        """Close every pooled connection; later calls raise ``Unavailable``."""
        engine, self._engine = self._engine, None
        # The write connection is closed unless a write still holds it (then disposing the
        # engine ends it once that write returns it).
        if self._writers is not None and self._writers.acquire(timeout=self.busy_seconds):
            try:
                conn, self._write_conn = self._write_conn, None
                if conn is not None:
                    with suppress(SQLAlchemyError):
                        conn.close()
            finally:
                self._writers.release()
        if self._wal is not None:
            self._wal.close()  # before the last connection closes, which checkpoints the rest
        if engine is not None:
            engine.dispose()
        self._watchdog.close()

    # -- the schema ----------------------------------------------------------------------------

    def bootstrap(self, migrate: bool) -> None:
        """Check the schema on open and, when ``migrate``, bring it to this tether's revision."""
        with self.write_conn(STORE, "open the database") as conn:
            # INVARIANT: one replica at a time checks and migrates the schema.
            serialize_bootstrap(conn)
            # Refuses a newer tether's database. A current one takes no DDL from here on.
            state = migrate_schema.schema_state(conn)
            if migrate and not state.up_to_date:
                self._migrate(conn)
            if migrate or state.up_to_date:
                self._read_format(conn)

    def schema_state(self) -> SchemaState:
        with self.read(STORE, "read the schema revision") as conn:
            return migrate_schema.schema_state(conn)

    def upgrade_schema(self) -> SchemaUpgrade:
        """Apply pending migrations, serialized with every other replica's start."""
        with self.write_conn(STORE, "open the database") as conn:
            serialize_bootstrap(conn)
            upgrade = self._migrate(conn)
            self._read_format(conn)
            return upgrade

    def _read_format(self, conn: Connection) -> None:
        """The chain's format, fixed when the schema reached revision 0006. A handle opened with
        ``migrate=False`` on an older schema keeps format 1: every chain begun before was."""
        found = conn.execute(_CHAIN_FORMAT).scalar()
        self.format = ChainFormat.LEGACY if found is None else ChainFormat(int(found))

    def _migrate(self, conn: Connection) -> SchemaUpgrade:
        action = (
            "create or upgrade tether's tables (this takes the right to create tables: run "
            "`tether db upgrade` as the database's owner)"
        )
        with translate(STORE, action):
            return migrate_schema.upgrade(conn)


class DriverWrites:
    """The statements every write repeats, on the driver (:mod:`tether.store.driver`)."""

    def __init__(self, engine: Engine) -> None:
        #: Any other statement of a write, compiled on its first use (an effect's, an
        #: observation's).
        self.prepared = DriverStatements(engine)
        self.lock_head = DriverStatement(engine, LOCK_HEAD, "lock the audit chain's head")
        self.move_head = DriverStatement(engine, MOVE_HEAD, "move the audit chain's head")
        self.insert_audit = DriverStatement(engine, _INSERT_AUDIT, "append the audit record")


def seal_entry(
    head: ChainHead | None, entry: AuditEntry, format: ChainFormat, partition: str
) -> Sealed:
    """``entry`` sealed after ``head`` in ``partition``, with its leaf hash kept."""
    return seal_with_leaf(
        head,
        record_id=entry.record_id,
        at=codec.audit_at(entry.at),
        kind=entry.kind,
        agent=entry.agent,
        task_id=entry.task_id,
        body=entry.body,
        format=format,
        partition=partition,
        plain=fastjson.plain,
    )


class Writer:
    """One write transaction that holds its partition's head and appends after it."""

    def __init__(
        self,
        conn: Connection,
        format: ChainFormat,
        partition: str = LEGACY_PARTITION,
        driver: DriverWrites | None = None,
    ) -> None:
        self.conn = conn
        self._format = format
        self.partition = partition
        self.driver = driver
        self._savepoints: DriverSavepoints | None = None
        # Locked first, before any other row, on every write path (see the module docstring).
        found = self._lock_head()
        if found is None:
            _open_partition(conn, partition)
            found = self._lock_head()
        if found is None:
            raise Unavailable(
                f"the head of audit partition {partition!r} is missing, so nothing can be "
                "appended: the database was changed outside tether; run `tether audit verify`",
                code=AUDIT,
            )
        seq, hash_ = found
        self._head = None if seq == 0 else ChainHead(int(seq), str(hash_))
        self.sealed: list[Sealed] = []
        """The records appended and not rolled back, in order: kept for checkpoints once the
        transaction commits (:mod:`tether.store.sealed`)."""

    def _lock_head(self) -> tuple[int, str] | None:
        key = {"b_part": self.partition}
        if self.driver is not None:
            found = self.driver.lock_head.run(self.conn, key).fetchone()
            return None if found is None else (int(found[0]), str(found[1]))
        row = self.conn.execute(LOCK_HEAD, key).first()
        return None if row is None else (int(row.seq), str(row.hash))

    @property
    def prepared(self) -> DriverStatements:
        """The statements of this transaction's writes, on the driver (:class:`DriverWrites`)."""
        if self.driver is None:
            raise ValueError("this writer was given no driver statements")
        return self.driver.prepared

    @property
    def head(self) -> ChainHead | None:
        return self._head

    @head.setter
    def head(self, value: ChainHead | None) -> None:
        # Only to undo appends a rolled-back savepoint took back with it.
        self._head = value
        kept = 0 if value is None else value.seq
        while self.sealed and self.sealed[-1].record.seq > kept:
            self.sealed.pop()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A savepoint around one write of a batch: rolled back alone if the write raises.
        On the driver as plain statements, which SQLAlchemy would compile anew for every
        savepoint it names."""
        if self.driver is None:
            with self.conn.begin_nested():
                yield
            return
        if self._savepoints is None:
            self._savepoints = DriverSavepoints(self.conn, "record the decision", STORE)
        with self._savepoints.around():
            yield

    def append(self, entry: AuditEntry) -> AuditRecord:
        # INVARIANT: the chain has no gap and no fork. The head is locked for this whole
        # transaction, the record is sealed after it, and the head moves only from the value we
        # read (a second guard besides the lock) in the same commit as the record itself.
        sealed = seal_entry(self._head, entry, self._format, self.partition)
        record = sealed.record
        move = {
            "b_part": self.partition,
            "b_old_seq": 0 if self._head is None else self._head.seq,
            "b_new_seq": record.seq,
            "b_new_hash": record.hash,
        }
        row = codec.audit_params(record, sealed.body_text)
        if self.driver is not None:
            self.driver.insert_audit.run(self.conn, row)
            moved = self.driver.move_head.run(self.conn, move)
        else:
            self.conn.execute(_INSERT_AUDIT, row)
            moved = self.conn.execute(MOVE_HEAD, move)
        if moved.rowcount != 1:
            raise Unavailable(
                "the audit chain head moved during a write; nothing was written", code=AUDIT
            )
        self._head = ChainHead(record.seq, record.hash)
        self.sealed.append(sealed)
        return record


def _open_partition(conn: Connection, partition: str) -> None:
    """Create ``partition``'s head row (empty) for its first write. Two writers opening it at
    once both succeed: the second one's insert does nothing. A partition that already holds
    records but has lost its head row is not reopened (that would fork it)."""
    if conn.execute(_PARTITION_RECORDS, {"b_part": partition}).scalar():
        return  # the caller reports the missing head
    values = {"partition_id": partition, "seq": 0, "hash": GENESIS_HASH}
    if conn.dialect.name == "postgresql":
        conn.execute(pg_dialect.insert(audit_head).values(values).on_conflict_do_nothing())
    else:
        conn.execute(sqlite_dialect.insert(audit_head).values(values).on_conflict_do_nothing())


def audit_record(row: codec.Row, format: ChainFormat) -> AuditRecord:
    """An audit row as a record, or ``Unavailable(AUDIT)`` for a row tether did not write."""
    try:
        return codec.audit_from_row(row, format)
    except (ValueError, KeyError, TypeError):
        raise Unavailable(
            f"audit record {row['seq']} cannot be read: its kind or body is not one tether "
            "writes, so it was changed outside tether; the log from here on cannot be trusted",
            code=AUDIT,
        ) from None


def _begin_at_once(raw: object, busy_millis: int, code: ErrorCode, action: str) -> None:
    """``BEGIN IMMEDIATE`` on SQLite's driver connection ``raw`` without waiting for another
    process's write lock: :class:`WouldWait` (nothing begun) when it is held. The busy timeout
    is lifted for the ``BEGIN`` alone."""
    execute = raw.execute  # type: ignore[attr-defined]
    with driver_errors(None, action, code):
        execute("PRAGMA busy_timeout = 0")
        try:
            execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode == sqlite3.SQLITE_BUSY:
                raise WouldWait("another process holds the database's write lock") from None
            raise
        finally:
            execute(f"PRAGMA busy_timeout = {int(busy_millis)}")


@contextmanager
def translate(code: ErrorCode, action: str) -> Iterator[None]:
    """Map SQLAlchemy's errors onto tether's tree, without SQL, parameters or URLs."""
    try:
        yield
    except IntegrityError as exc:
        # The checks that race (one effect per decision, one gateway event per id) have their
        # own constraint handling, so a constraint refusing a write here (at a statement, or at
        # COMMIT for a deferred one) is a bug or a database changed outside tether, not an
        # outage; which rule it broke is in the driver's own error code.
        raise Unavailable(integrity_message(action, exc.orig), code=ErrorCode.INTERNAL) from exc
    except StatementError as exc:
        # A value our own column types refused (a naive datetime) is the caller's bug, not an
        # outage: surface it as itself. Everything the database or the pool raised is an outage.
        if not isinstance(exc, DBAPIError) and isinstance(exc.orig, ValueError | TypeError):
            raise exc.orig from None
        raise unavailable(code, action, exc) from exc
    except SQLAlchemyError as exc:
        raise unavailable(code, action, exc) from exc


def unavailable(code: ErrorCode, action: str, exc: SQLAlchemyError) -> Unavailable:
    return Unavailable(
        f"the store could not {action} ({reason(exc)}); check that the database is reachable, "
        "writable and not locked by another process",
        code=code,
    )
