"""Backend hooks: the one place that knows which SQL database is underneath.

Everything else in :mod:`tether.store` is portable SQLAlchemy Core. What differs per backend is how
the engine and its connections are set up, how a *write* transaction begins so that writers
serialize, how the first start is kept single, and how a driver error is worded:

- **SQLite**: each connection gets ``busy_timeout``, ``foreign_keys = ON``, ``journal_mode = WAL``
  and ``synchronous = NORMAL``. The sqlite3 driver's own transaction handling is switched off and
  we emit ``BEGIN IMMEDIATE`` for writes (the write lock is taken at BEGIN, waiting up to the busy
  timeout, so two writers never both read the same chain head) and a deferred ``BEGIN`` for reads
  (a consistent snapshot that never blocks a writer in WAL mode). ``BEGIN IMMEDIATE`` also keeps
  two processes from creating or migrating the schema at once.

  Why WAL with ``synchronous = NORMAL``: a committed transaction is in the write-ahead log before
  ``COMMIT`` returns, so it survives the *process* crashing at any point. Only a power loss or OS
  crash can drop the last few commits (never corrupt the file, never break the chain in the
  middle: the log is replayed or truncated at a frame boundary). ``FULL`` would fsync on every
  commit, one fsync per authorize; we trade that for latency. Run PostgreSQL when commits must
  survive losing the machine.

- **PostgreSQL** (psycopg 3): writers of one audit partition serialize on ``SELECT ... FOR
  UPDATE`` of its ``audit_head`` row, which the store issues on every backend (SQLAlchemy omits
  ``FOR UPDATE`` where the dialect has none, as on SQLite); read-check-write steps across
  partitions lock the rows they check (see :mod:`tether.store.db`). Transactions run at ``READ
  COMMITTED``, pinned here whatever the server's default: each statement after a lock sees
  everything the previous holder committed, which those steps (a budget's sum, an approval's
  votes) rely on; at ``REPEATABLE READ`` they would fail with serialization errors instead.
  Each session sets ``lock_timeout`` (the busy timeout: how long a writer waits for the head),
  ``statement_timeout`` and ``idle_in_transaction_session_timeout`` (a replica frozen
  mid-transaction cannot hold the head for longer), and TCP keepalives; the pool pings a
  connection before lending it (so a restarted server is picked up by itself) and waits a
  bounded time for a free one (a caller that retries a lost connection itself may skip the ping:
  :data:`UNPINGED`). The ping and every store call run under a client-side deadline
  (:mod:`tether.store.watchdog`) for a server that accepts connections but stops answering. The
  first start takes a transaction-scoped advisory lock
  (:data:`BOOTSTRAP_LOCK_KEY`) around checking and migrating the schema, so two replicas starting
  together do not both run the migrations.

Driver errors are reduced to one line that names the failure and never the server's address, the
user, the password or the statement (:func:`reason`).
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
import time
from contextvars import ContextVar
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import psycopg
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import ArgumentError, DisconnectionError, NoSuchModuleError, SQLAlchemyError

from tether.core.errors import ConfigurationError
from tether.store.watchdog import Watchdog

WRITE_OPTION: Final = "tether_write"
"""Execution option marking a connection whose next transaction writes."""

POSTGRES_DRIVER: Final = "postgresql+psycopg"

BOOTSTRAP_LOCK_KEY: Final = int.from_bytes(
    hashlib.sha256(b"tether.store.bootstrap").digest()[:8], "big", signed=True
)
"""The ``pg_advisory_xact_lock`` key held while the schema is checked and migrated."""

_BAD_URL = (
    "the store URL names no database tether can use, or its driver is not installed; use "
    "sqlite:///path/to/tether.db or postgresql+psycopg://user:password@host:5432/dbname"
)
# libpq counts connect_timeout in whole seconds and treats anything below 2 as 2.
_MIN_CONNECT_SECONDS: Final = 2
#: The shortest idle-in-transaction timeout a session gets, whatever its busy timeout.
MIN_IDLE_IN_TRANSACTION: Final = timedelta(seconds=1)
#: The idle-in-transaction bound of the schema's check-and-migrate transaction on PostgreSQL.
#: Alembic runs Python between its statements (imports on first use, the revision graph); on a
#: busy host that outlasted the decisions' bound, and the server ended the migration half-way.
BOOTSTRAP_IDLE_IN_TRANSACTION: Final = timedelta(minutes=1)
_KEEPALIVE: Final = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2}
_KEEPALIVE_COUNT: Final = 3
_POOL_RECYCLE_SECONDS: Final = 1800
_FRESH: Final = "tether_fresh"

UNPINGED: Final[ContextVar[bool]] = ContextVar("tether_unpinged", default=False)
"""True while a caller that retries a connection it finds lost checks one out of the pool (the
hot read, :mod:`tether.store.hotread`): its checkout skips the ping, a round trip per call."""


def parse_url(url: str | URL) -> URL:
    """The store URL as SQLAlchemy's ``URL``, with ``postgresql://`` meaning psycopg 3.

    Raises ``ConfigurationError`` (without the URL, which may hold a password) when it is not one.
    """
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigurationError(_BAD_URL) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername=POSTGRES_DRIVER)
    return parsed


def sqlite_file(url: str | URL) -> Path | None:
    """The file of a SQLite URL; ``None`` for an in-memory database or another backend."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def postgres_url(dsn: str) -> URL:
    """A PostgreSQL URL from a ``postgresql://`` (or ``+psycopg``) URL or a libpq ``key=value``
    string; anything else is a ``ConfigurationError``."""
    if "://" in dsn:
        url = parse_url(dsn)
    else:
        try:
            params = psycopg.conninfo.conninfo_to_dict(dsn)
        except psycopg.Error:
            raise ConfigurationError(_BAD_URL) from None
        port = params.pop("port", None)
        try:
            url = URL.create(
                POSTGRES_DRIVER,
                username=_opt(params.pop("user", None)),
                password=_opt(params.pop("password", None)),
                host=_opt(params.pop("host", None)),
                port=None if port is None else int(str(port)),
                database=_opt(params.pop("dbname", None)),
                query={k: str(v) for k, v in params.items() if v is not None},
            )
        except ValueError:
            raise ConfigurationError(_BAD_URL) from None
    if url.drivername != POSTGRES_DRIVER:
        raise ConfigurationError(_BAD_URL)
    return url


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def make_engine(
    url: str | URL,
    *,
    busy_timeout: timedelta,
    statement_timeout: timedelta,
    connect_timeout: timedelta,
    pool_size: int,
    watchdog: Watchdog,
    wal_autocheckpoint: bool = True,
) -> Engine:
    """The engine for ``url`` with the backend's settings and hooks installed; on PostgreSQL
    the pool's ping runs under ``watchdog``. Without ``wal_autocheckpoint``, a SQLite file's
    connections leave checkpoints to the caller (:mod:`tether.store.walcheck`)."""
    parsed = parse_url(url)
    # Only the backends the contract suite runs against: the invariants are proven nowhere else.
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigurationError(_BAD_URL)
    try:
        if parsed.get_backend_name() == "postgresql":
            if parsed.drivername != POSTGRES_DRIVER:
                raise ConfigurationError(_BAD_URL)
            return _postgres_engine(
                parsed,
                busy_timeout=busy_timeout,
                statement_timeout=statement_timeout,
                connect_timeout=connect_timeout,
                pool_size=pool_size,
                watchdog=watchdog,
            )
        engine = create_engine(parsed, hide_parameters=True)
    except (ArgumentError, NoSuchModuleError, ImportError):
        raise ConfigurationError(_BAD_URL) from None
    _install_sqlite(engine, busy_timeout=busy_timeout, wal_autocheckpoint=wal_autocheckpoint)
    return engine


def read_options(engine: Engine) -> dict[str, Any]:
    """Execution options for a connection that only reads.

    On PostgreSQL a read needs no transaction: in ``READ COMMITTED`` each statement sees its own
    snapshot either way, and autocommit saves the ``BEGIN`` and ``ROLLBACK`` round trips. SQLite
    keeps its deferred ``BEGIN``: one snapshot for the whole read, never blocking a writer.
    """
    if engine.dialect.name == "postgresql":
        return {"isolation_level": "AUTOCOMMIT"}
    return {}


def serialize_bootstrap(conn: Connection) -> None:
    """Make the schema check-and-migrate transaction on ``conn`` the only one running.

    SQLite needs nothing: the transaction began with ``BEGIN IMMEDIATE``. On PostgreSQL, DDL is
    transactional, so holding an advisory lock until commit makes a second replica wait, then
    find the schema the first one migrated and committed (:mod:`tether.store.migrate`); the
    transaction may idle between statements for :data:`BOOTSTRAP_IDLE_IN_TRANSACTION`.
    """
    if conn.dialect.name == "postgresql":
        # Its own bound for this transaction only (SET LOCAL): the session's, meant to free the
        # chain head a stalled replica holds, comes back at commit.
        idle = _millis(BOOTSTRAP_IDLE_IN_TRANSACTION)
        conn.execute(text(f"SET LOCAL idle_in_transaction_session_timeout = {idle}"))
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": BOOTSTRAP_LOCK_KEY})


def reason(exc: SQLAlchemyError) -> str:
    """The driver's one-line reason (``database is locked``), never the statement or the DSN."""
    orig = getattr(exc, "orig", None)
    if isinstance(orig, psycopg.Error):
        return _postgres_reason(orig)
    text_ = str(orig if orig is not None else exc).strip()
    first = text_.splitlines()[0] if text_ else type(exc).__name__
    return first[:200]


# -- PostgreSQL ----------------------------------------------------------------------------------


def _millis(value: timedelta) -> int:
    return max(1, math.ceil(value / timedelta(milliseconds=1)))


def _postgres_engine(
    url: URL,
    *,
    busy_timeout: timedelta,
    statement_timeout: timedelta,
    connect_timeout: timedelta,
    pool_size: int,
    watchdog: Watchdog,
) -> Engine:
    query = dict(url.query)
    # Session settings go in the startup packet: no extra round trip per connection. A URL's own
    # ``options`` come last, so an operator can still override one of ours.
    settings = {
        "lock_timeout": _millis(busy_timeout),
        "statement_timeout": _millis(statement_timeout),
        # A session stalled inside its transaction (its replica frozen) holds the chain head
        # no longer than others wait for it: then the server ends it and frees the head. At
        # least a second, so a busy process descheduled between two statements of its own
        # transaction is not cut off (a short busy timeout is a wait, not a stall).
        "idle_in_transaction_session_timeout": _millis(
            min(max(busy_timeout, MIN_IDLE_IN_TRANSACTION), statement_timeout)
        ),
    }
    options = " ".join(f"-c {name}={value}" for name, value in settings.items())
    extra = query.pop("options", None)
    if isinstance(extra, str) and extra.strip():
        options = f"{options} {extra.strip()}"
    connect_seconds = max(_MIN_CONNECT_SECONDS, math.ceil(connect_timeout.total_seconds()))
    connect_args: dict[str, Any] = {"options": options}
    defaults: dict[str, Any] = {
        "connect_timeout": connect_seconds,
        "application_name": "tether",
        **_KEEPALIVE,
        "keepalives_count": _KEEPALIVE_COUNT,
        # Unacknowledged data (a server gone without a FIN) closes the connection this soon.
        "tcp_user_timeout": connect_seconds * 1000,
    }
    for name, value in defaults.items():
        if name not in query:
            connect_args[name] = value
    engine = create_engine(
        url.set(query=query),
        connect_args=connect_args,
        isolation_level="READ COMMITTED",
        # Up to twice pool_size connections, each kept once opened: an overflow connection
        # the pool closed when it came back was opened again at the next burst (a backend
        # forked and a SCRAM exchange, server CPU, about one per 60 decisions under load).
        pool_size=2 * pool_size,
        max_overflow=0,
        pool_timeout=connect_seconds,
        pool_recycle=_POOL_RECYCLE_SECONDS,
        pool_use_lifo=True,
        hide_parameters=True,
    )
    _install_ping(engine, watchdog, timedelta(seconds=connect_seconds))
    return engine


def _install_ping(engine: Engine, watchdog: Watchdog, limit: timedelta) -> None:
    """Ping a pooled connection before lending it, as ``pool_pre_ping`` would, but under the
    watchdog: SQLAlchemy's own ping has no deadline, and a frozen server would hang it."""

    @event.listens_for(engine, "connect")
    def _on_connect(_dbapi_connection: Any, record: Any) -> None:
        record.info[_FRESH] = True  # just connected: no need to ping

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if record.info.pop(_FRESH, False) or UNPINGED.get():
            return
        try:
            with watchdog.guard(dbapi_connection, limit):
                autocommit = dbapi_connection.autocommit
                dbapi_connection.autocommit = True
                try:
                    dbapi_connection.execute("SELECT 1")
                finally:
                    dbapi_connection.autocommit = autocommit
        except psycopg.Error as exc:
            # The pool discards this connection and opens a new one (or fails to: Unavailable).
            raise DisconnectionError("a pooled connection is dead") from exc


# SQLSTATE classes and codes (PostgreSQL manual, appendix A) worded for an operator. The server's
# own text is used only for errors the server raised while running a statement, where it names a
# table or a setting at most; connection failures are libpq's words, which name host and user.
_SQLSTATE: Final = {
    "55P03": "timed out waiting for the write lock another writer holds (lock_timeout)",
    "57014": "a statement was cancelled (statement_timeout, or an operator cancelled it)",
    "57P01": "the PostgreSQL server is shutting down",
    "57P02": "the PostgreSQL server is shutting down",
    "57P03": "the PostgreSQL server is starting up or shutting down",
    "25006": "the database is read-only (a standby, or default_transaction_read_only is on)",
    "3D000": "the database does not exist",
    "40001": "the server rolled the transaction back (serialization failure)",
    "40P01": "the server rolled the transaction back (deadlock)",
}
_SQLSTATE_CLASS: Final = {
    "08": "lost the connection to the PostgreSQL server",
    "28": "the PostgreSQL server refused tether's credentials",
    "53": "the PostgreSQL server is out of resources (connections, disk or memory)",
    "58": "the PostgreSQL server reported an I/O error",
    "XX": "the PostgreSQL server reported an internal error",
}


def _postgres_reason(exc: psycopg.Error) -> str:
    state = exc.sqlstate
    if state is None:
        # Raised by libpq or psycopg, not by a statement: almost always connecting or a lost
        # connection. libpq's text names the host, port and user, so it is not repeated.
        words = str(exc).lower()
        if "password" in words or "authentication" in words:
            return "the PostgreSQL server refused tether's credentials"
        if "does not exist" in words:
            return "the database or role does not exist"
        if isinstance(exc, psycopg.DataError):
            return "a value PostgreSQL cannot store (such as a NUL character in text)"
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return "cannot connect to the PostgreSQL server, or the connection was lost"
        return f"the PostgreSQL driver refused the request ({type(exc).__name__})"
    known = _SQLSTATE.get(state) or _SQLSTATE_CLASS.get(state[:2])
    if known is not None:
        return f"{known}; SQLSTATE {state}"
    primary = (exc.diag.message_primary or type(exc).__name__).splitlines()[0][:200]
    return f"{primary}; SQLSTATE {state}"


# -- SQLite --------------------------------------------------------------------------------------


def _switch_to_wal(cursor: Any, busy_timeout: timedelta) -> str:
    """Put the database in WAL mode and return the journal mode it ends in.

    Changing the journal mode can answer ``database is locked`` at once, without calling the busy
    handler, while another connection of a replica starting at the same moment holds a lock. So
    the switch is retried until the busy timeout runs out, as a locked write would wait.
    """
    deadline = time.monotonic() + busy_timeout.total_seconds()
    delay = 0.001
    while True:
        try:
            mode = str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            if mode != "wal":
                mode = str(cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            return mode
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _install_sqlite(engine: Engine, *, busy_timeout: timedelta, wal_autocheckpoint: bool) -> None:
    timeout_ms = max(0, int(busy_timeout / timedelta(milliseconds=1)))
    in_memory = engine.url.database in (None, "", ":memory:")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # We emit BEGIN ourselves (below); the driver must not emit its own.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first: switching to WAL needs a lock another process may hold.
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not in_memory:
                mode = _switch_to_wal(cursor, busy_timeout)
                if mode != "wal":
                    raise ConfigurationError(
                        "the SQLite database could not be switched to WAL mode; put the data "
                        "directory on a local disk (WAL does not work on network file systems)"
                    )
            # Per connection, not stored in the file. See the module docstring for why NORMAL.
            cursor.execute("PRAGMA synchronous = NORMAL")
            if not wal_autocheckpoint and not in_memory:
                cursor.execute("PRAGMA wal_autocheckpoint = 0")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.connection.driver_connection.in_transaction:  # type: ignore[union-attr]
            return  # begun on the driver (store.db's lean write): the statement joins it
        if conn.get_execution_options().get(WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")
