"""Hot-path statements run on the driver's cursor, inside the transaction SQLAlchemy holds.

Every decision writes the same few statements: lock the chain head, insert the decision, insert
its audit record, move the head. Through SQLAlchemy Core each execution builds a context and
processes parameters generically; profiled, that was most of a decision's write. Here each
statement is compiled once for the engine's dialect and run on the raw DBAPI cursor of the
connection SQLAlchemy already opened its transaction on, each parameter bound by the processor
SQLAlchemy itself would use for its column's type (timestamps to integer microseconds, JSON).
Same SQL, same values, same transaction; the store's contract suite runs through it.

Used on SQLite, whose driver runs statements in-process; PostgreSQL keeps the Core path.
Driver errors are translated here, as :func:`tether.store.db.translate` does for SQLAlchemy's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from tether.core.errors import ErrorCode, Unavailable
from tether.store.integrity import integrity_message

_Processor = Callable[[Any], Any] | None


class DriverStatement:
    """One statement, compiled once, run positionally on the driver's cursor."""

    def __init__(self, engine: Engine, statement: ClauseElement, action: str) -> None:
        dialect = engine.dialect
        compiled = statement.compile(dialect=dialect)
        if not isinstance(compiled, SQLCompiler) or compiled.positiontup is None:
            raise ValueError("driver statements need a dialect with positional parameters")
        self.sql = str(compiled)
        self._action = action
        # Values the statement carries itself (a literal in its WHERE clause).
        self._fixed = {k: v for k, v in compiled.params.items() if v is not None}
        self._binds: list[tuple[str, _Processor]] = [
            (
                name,
                compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect),
            )
            for name in compiled.positiontup
        ]

    def run(self, conn: Connection, params: Mapping[str, object]) -> Any:
        """Execute on ``conn``'s driver connection (in its transaction); the driver's cursor."""
        values = []
        for name, bind in self._binds:
            value = params[name] if name in params else self._fixed[name]
            values.append(bind(value) if bind is not None and value is not None else value)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(self.sql, values)
        except sqlite3.IntegrityError as error:
            # The checks that race have their own constraint handling: a bug, not an outage
            # (which rule it broke: tether.store.integrity).
            raise Unavailable(
                integrity_message(self._action, error), code=ErrorCode.INTERNAL
            ) from None
        except sqlite3.Error as error:
            raise Unavailable(
                f"the store could not {self._action} ({type(error).__name__}: {error}); check "
                "that the database is writable and not locked by another process",
                code=ErrorCode.STORE_UNAVAILABLE,
            ) from None
        return cursor
