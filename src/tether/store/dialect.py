"""Backend hooks: the one place that knows which SQL database is underneath.

Everything else in :mod:`tether.store` is portable SQLAlchemy Core. What differs per backend is how
a connection is set up and how a *write* transaction begins so that writers serialize:

- **SQLite**: each connection gets ``busy_timeout``, ``foreign_keys = ON``, ``journal_mode = WAL``
  and ``synchronous = NORMAL``. The sqlite3 driver's own transaction handling is switched off and
  we emit ``BEGIN IMMEDIATE`` for writes (the write lock is taken at BEGIN, waiting up to the busy
  timeout, so two writers never both read the same chain head) and a deferred ``BEGIN`` for reads
  (a consistent snapshot that never blocks a writer in WAL mode).

  Why WAL with ``synchronous = NORMAL``: a committed transaction is in the write-ahead log before
  ``COMMIT`` returns, so it survives the *process* crashing at any point. Only a power loss or OS
  crash can drop the last few commits (never corrupt the file, never break the chain in the
  middle: the log is replayed or truncated at a frame boundary). ``FULL`` would fsync on every
  commit, one fsync per authorize; we trade that for latency. Run PostgreSQL when commits must
  survive losing the machine.

- **PostgreSQL** (and other servers with row locks): nothing to add. Writers serialize on
  ``SELECT ... FOR UPDATE`` of the ``audit_head`` row, which the store issues on every backend
  (SQLAlchemy omits ``FOR UPDATE`` where the dialect has none, as on SQLite).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final

from sqlalchemy import Connection, Engine, event

from tether.core.errors import ConfigurationError

WRITE_OPTION: Final = "tether_write"
"""Execution option marking a connection whose next transaction writes."""


def install(engine: Engine, *, busy_timeout: timedelta) -> None:
    """Attach the backend's hooks to ``engine``; call before its first connection."""
    if engine.dialect.name == "sqlite":
        _install_sqlite(engine, busy_timeout=busy_timeout)


def _install_sqlite(engine: Engine, *, busy_timeout: timedelta) -> None:
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
                mode = str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower()
                if mode != "wal":
                    mode = str(cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
                if mode != "wal":
                    raise ConfigurationError(
                        "the SQLite database could not be switched to WAL mode; put the data "
                        "directory on a local disk (WAL does not work on network file systems)"
                    )
            # Per connection, not stored in the file. See the module docstring for why NORMAL.
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")
