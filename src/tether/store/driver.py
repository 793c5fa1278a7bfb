"""Hot-path statements run on the driver's cursor, inside the transaction SQLAlchemy holds.

Every decision writes the same few statements: lock the chain head, insert the decision, insert
its audit record, move the head. Through SQLAlchemy Core each execution builds a context and
processes parameters generically; profiled, that was most of a decision's write. Here each
statement is compiled once for the engine's dialect and run on the raw DBAPI cursor of the
connection SQLAlchemy already opened its transaction on, each parameter bound by the processor
SQLAlchemy itself would use for its column's type (timestamps to integer microseconds, JSON).
Same SQL (with the casts the dialect renders), same values, same transaction; the store's
contract suite runs through it on SQLite and PostgreSQL.

Parameters are bound as the dialect compiled them: in order for a positional paramstyle
(sqlite3's ``?``), by name for a named one (psycopg's ``%(name)s``, which psycopg takes as a
mapping and sends as ``$n`` parameters of a statement it prepares once it is used often).

Driver errors (:func:`driver_errors`): sqlite3's are translated here, as
:func:`tether.store.db.translate` does for SQLAlchemy's (a constraint is a bug, ``INTERNAL``;
anything else an outage). psycopg's are raised as SQLAlchemy raises them, a ``DBAPIError``
around the driver's, so the ``translate`` of the read or write they run in words them with its
caller's code and action, exactly as for a statement run through Core (these statements always
run inside one). A PostgreSQL connection the error broke is invalidated first, so the pool never
lends it again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError, StatementError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from tether.core.errors import ErrorCode, Unavailable
from tether.store.integrity import integrity_message

_Processor = Callable[[Any], Any] | None
#: Where a PostgreSQL connection's reused cursor is kept (the pool's info of the connection).
_CURSOR = "tether_cursor"
_SAVEPOINT = "tether_write"


class DriverStatement:
    """One statement, compiled once, run on the driver's cursor."""

    def __init__(self, engine: Engine, statement: ClauseElement, action: str) -> None:
        dialect = engine.dialect
        compiled = statement.compile(dialect=dialect)
        if not isinstance(compiled, SQLCompiler):
            raise ValueError("driver statements are SQL statements")
        self.sql = str(compiled)
        self._action = action
        # Positional (qmark, format) in the compiled order; named (pyformat) as a mapping.
        self._positional = compiled.positiontup is not None
        names = compiled.positiontup if compiled.positiontup is not None else list(compiled.binds)
        # Values the statement carries itself (a literal in its WHERE clause).
        self._fixed = {k: v for k, v in compiled.params.items() if v is not None}
        self._binds: list[tuple[str, _Processor]] = [
            (
                name,
                compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect),
            )
            for name in names
        ]

    def driver_params(self, params: Mapping[str, object]) -> list[object] | dict[str, object]:
        """``params`` as the driver takes them, each bound by its column type's processor, with
        the values the statement carries itself: a list in the statement's order for a
        positional paramstyle (a parameter the SQL names twice given twice), else a mapping."""
        values: list[object] = []
        for name, bind in self._binds:
            value = params[name] if name in params else self._fixed[name]
            values.append(bind(value) if bind is not None and value is not None else value)
        if self._positional:
            return values
        return dict(zip((name for name, _ in self._binds), values, strict=True))

    def run(self, conn: Connection, params: Mapping[str, object]) -> Any:
        """Execute on ``conn``'s driver connection (in its transaction); the driver's cursor."""
        values = self.driver_params(params)
        with driver_errors(conn, self._action, ErrorCode.STORE_UNAVAILABLE):
            cursor = driver_cursor(conn)
            cursor.execute(self.sql, values)
        return cursor

    def rows(self, conn: Connection, params: Mapping[str, object]) -> list[Any]:
        """:meth:`run`, and every row it returns, read at once: nothing is left in progress on
        the connection (SQLite refuses to release a savepoint or commit under a write statement
        not yet stepped to its end, an ``INSERT ... RETURNING`` read only in part)."""
        return list(self.run(conn, params).fetchall())

    def run_many(self, conn: Connection, many: Sequence[Mapping[str, object]]) -> int:
        """Execute once for each of ``many`` on ``conn``'s driver connection (in its
        transaction); how many rows the executions changed together, -1 when the driver does
        not say (sqlite3 and psycopg 3.1+ sum them: psycopg pipelines the executions)."""
        values = [self.driver_params(params) for params in many]
        with driver_errors(conn, self._action, ErrorCode.STORE_UNAVAILABLE):
            cursor = driver_cursor(conn)
            cursor.executemany(self.sql, values)
        made = cursor.rowcount
        return -1 if made is None else int(made)


class DriverStatements:
    """The driver statements of one engine, each compiled on its first use and kept: for
    writes made of module-level statements (an effect, an observation) that a ``Writer`` or a
    ``Database`` runs on the driver."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        #: By the statement's identity (a module-level constant, kept alive here with it).
        self._compiled: dict[int, tuple[ClauseElement, DriverStatement]] = {}

    def __call__(self, statement: ClauseElement, action: str) -> DriverStatement:
        found = self._compiled.get(id(statement))
        if found is None or found[0] is not statement:
            found = (statement, DriverStatement(self._engine, statement, action))
            self._compiled[id(statement)] = found  # two threads compiling one: either is kept
        return found[1]


def driver_cursor(conn: Connection) -> Any:
    """A cursor of ``conn``'s driver connection. On PostgreSQL one per connection, kept with it
    in the pool and reused (psycopg sets up each new cursor's adapters, a cost per statement
    otherwise); the caller reads its results before the connection's next statement."""
    proxied = conn.connection
    raw = proxied.driver_connection
    if not isinstance(raw, psycopg.Connection):
        return raw.cursor()  # type: ignore[union-attr]
    return pooled_cursor(proxied.info, raw)


def pooled_cursor(info: dict[Any, Any], raw: psycopg.Connection[Any]) -> Any:
    """The cursor kept in a pooled PostgreSQL connection's ``info`` (see :func:`driver_cursor`)."""
    cursor = info.get(_CURSOR)
    if cursor is None or cursor.closed or cursor.connection is not raw:
        cursor = info[_CURSOR] = raw.cursor()
    return cursor


class DriverSavepoints:
    """The savepoints of one write transaction, one around each write of a batch, on the
    driver's cursor (SQLAlchemy would compile anew each savepoint it names).

    On PostgreSQL each savepoint costs one round trip, not two: a write's savepoint is left
    open when it succeeds, and released in the same message that takes the next one (``COMMIT``
    releases the last). So no more than one is ever open, as with a release after each write.
    """

    def __init__(self, conn: Connection, action: str, code: ErrorCode) -> None:
        self._conn = conn
        self._action = action
        self._code = code
        self._chained = isinstance(conn.connection.driver_connection, psycopg.Connection)
        self._open = False

    @contextmanager
    def around(self) -> Iterator[None]:
        """A savepoint around the block: rolled back alone if the block raises."""
        take = f"RELEASE SAVEPOINT {_SAVEPOINT}; SAVEPOINT {_SAVEPOINT}"
        with driver_errors(self._conn, self._action, self._code):
            cursor = driver_cursor(self._conn)
            cursor.execute(take if self._open else f"SAVEPOINT {_SAVEPOINT}")
            self._open = self._chained
        try:
            yield
        except BaseException:
            with driver_errors(self._conn, self._action, self._code):
                cursor.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")  # the savepoint stays
                if not self._chained:
                    cursor.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
            raise
        if not self._chained:
            with driver_errors(self._conn, self._action, self._code):
                cursor.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")


@contextmanager
def driver_errors(conn: Connection | None, action: str, code: ErrorCode) -> Iterator[None]:
    """sqlite3's errors raised in the block as ``Unavailable``: a constraint as ``INTERNAL``
    (the checks that race have their own constraint handling, so a bug, not an outage:
    :mod:`tether.store.integrity` says which rule), anything else as ``code``. psycopg's as
    SQLAlchemy's ``DBAPIError`` (see the module docstring), after invalidating ``conn`` if the
    error left its connection closed or broken."""
    try:
        yield
    except (sqlite3.IntegrityError, psycopg.IntegrityError) as error:
        raise Unavailable(integrity_message(action, error), code=ErrorCode.INTERNAL) from None
    except sqlite3.Error as error:
        raise Unavailable(
            f"the store could not {action} ({type(error).__name__}: {error}); check that the "
            "database is writable and not locked by another process",
            code=code,
        ) from None
    except psycopg.Error as error:
        lost = conn is not None and _drop_if_broken(conn)
        raise as_dbapi_error(error, None if conn is None else conn.dialect, lost) from error


def as_dbapi_error(error: psycopg.Error, dialect: Any, lost: bool = False) -> StatementError:
    """psycopg's ``error`` as SQLAlchemy's ``DBAPIError`` (parameters hidden), which the
    store's callers translate as they do any other; ``lost``: the connection is gone."""
    return DBAPIError.instance(
        None,
        None,
        error,
        psycopg.Error,
        hide_parameters=True,
        connection_invalidated=lost,
        dialect=dialect,
    )


def _drop_if_broken(conn: Connection) -> bool:
    """Invalidate ``conn`` when its psycopg connection is lost (and say so): SQLAlchemy, which
    did not see the error, would otherwise try to reuse it."""
    raw = conn.connection.driver_connection
    if not isinstance(raw, psycopg.Connection) or not (raw.closed or raw.broken):
        return False
    with suppress(SQLAlchemyError):
        conn.invalidate()
    return True
