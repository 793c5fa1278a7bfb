"""The hot path's read, one statement through the driver: the grant and its task, joined.

Every authorize reads a grant and the task it belongs to. Through SQLAlchemy Core that is two
executed statements, each paying for an execution context and row processing; profiled, that
was most of the read's cost. Here the join is compiled once for the engine's dialect, run on the
raw DBAPI cursor, and each column decoded by the same result processor SQLAlchemy would use for
its type (timestamps from integer microseconds, JSON documents), so the values are those
:meth:`SqlStore.get_grant_with_task` always returned. The store's contract suite runs it.

On PostgreSQL it runs on the pool's driver connection itself, switched to autocommit for the
statement, under the store's client-side deadline, lent without the pool's ping
(:func:`read_postgres` retries a connection found lost): one round trip instead of four (the
ping, and a statement for each row), without SQLAlchemy's execution of each nor its
``Connection`` around the driver's. The threads that read most keep a connection of their own,
in autocommit for good (:class:`PostgresReads`): no checkout at all.

One statement reads both rows from one snapshot, so no transaction is opened for it. Decoding
is memoized on the raw row: the same bytes always decode to the same frozen values, and a row
that changed (a grant revoked, a task's label raised) is different bytes, so never a stale hit.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Final

import psycopg
from sqlalchemy import Engine, PoolProxiedConnection, bindparam, select
from sqlalchemy.pool import SingletonThreadPool

from tether.core.errors import ErrorCode
from tether.core.task import Grant, Task
from tether.store import codec
from tether.store.db import Database, translate
from tether.store.dialect import UNPINGED
from tether.store.driver import as_dbapi_error, pooled_cursor
from tether.store.schema import grants, tasks

_Processor = Callable[[Any], Any] | None
#: A read on an unpinged connection that the server had closed (see :func:`read_postgres`).
_LOST: Final = object()
#: How soon a lost connection fails a read when it was already lost before the read began.
_AT_ONCE: Final = 0.25
#: Raw rows remembered with their decoded grant and task (frozen values, safe to share).
_MEMO = 1024
#: Threads that keep a connection of their own for the hot read (SqliteReads, PostgresReads).
_OWN_CONNECTIONS = 4
#: A PostgreSQL connection kept for the hot read, with its cursor.
_Kept = tuple[psycopg.Connection[Any], psycopg.Cursor[Any]]

_JOINED = (
    select(
        *(c.label(f"g_{c.name}") for c in grants.c),
        *(c.label(f"t_{c.name}") for c in tasks.c),
    )
    .select_from(grants.outerjoin(tasks, tasks.c.task_id == grants.c.task_id))
    .where(grants.c.grant_id == bindparam("b_id"))
)


class GrantWithTaskQuery:
    """The joined read, compiled for one engine's dialect (qmark or format parameters)."""

    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect
        compiled = _JOINED.compile(dialect=dialect)
        self.sql = str(compiled)
        self._positional = compiled.positiontup is not None
        columns = list(_JOINED.selected_columns)
        self._names = [c.name for c in columns]
        self._decode: list[_Processor] = [
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
        ]

        self._decoded = functools.lru_cache(maxsize=_MEMO)(self._decode_row)
        #: Where the task's observation count is in a row: the one value that moves with
        #: nearly every call (each observation its gateway records), so it is left out of the
        #: memo's key and set on the remembered task instead of decoding the row anew.
        self._observed = self._names.index("t_observed")

    def forget(self) -> None:
        """Drop every remembered row: a task's row holds its provenance secret, which must not
        outlive the task in memory (see :meth:`SqlStore.forget_ended`)."""
        self._decoded.cache_clear()

    def params(self, grant_id: str) -> Sequence[object] | dict[str, object]:
        return (grant_id,) if self._positional else {"b_id": grant_id}

    def decode(self, row: Sequence[Any] | None) -> tuple[Grant | None, Task | None]:
        if row is None:
            return None, None
        at = self._observed
        observed = row[at]
        grant, task = self._decoded((*row[:at], 0, *row[at + 1 :]))
        if task is not None and observed:
            task = replace(task, observed=int(observed))
        return grant, task

    def _decode_row(self, row: tuple[Any, ...]) -> tuple[Grant | None, Task | None]:
        values: dict[str, Any] = {}
        for name, decode, raw in zip(self._names, self._decode, row, strict=True):
            values[name] = decode(raw) if decode is not None and raw is not None else raw
        grant = codec.grant_from_row({k[2:]: v for k, v in values.items() if k[:2] == "g_"})
        if values["t_task_id"] is None:
            return grant, None
        task = codec.task_from_row({k[2:]: v for k, v in values.items() if k[:2] == "t_"})
        return grant, task


def read_postgres(
    db: Database, query: GrantWithTaskQuery, grant_id: str
) -> tuple[Grant | None, Task | None]:
    """The joined read on PostgreSQL: psycopg's cursor on a read connection of ``db``.

    The connection is lent without the pool's ping (a round trip per read): one found lost at
    once (the server restarted since it was last used) is dropped and the read made again, once,
    on a pinged one. One lost after a wait is not retried: the server is there but not
    answering, and the caller has waited out its deadline already."""
    row = _fetch(db, query, grant_id, ping=False)
    if row is _LOST:
        row = _fetch(db, query, grant_id, ping=True)
    return query.decode(row)


def _fetch(db: Database, query: GrantWithTaskQuery, grant_id: str, *, ping: bool) -> Any:
    """The raw row (``None``: no such grant), or :data:`_LOST` when an unpinged connection was
    found lost at once.

    On the pool's driver connection itself, in autocommit for the one statement (a local
    switch, no round trip): SQLAlchemy's ``Connection`` around it, and its switching of the
    isolation level to autocommit and back, cost more CPU than the statement's round trip."""
    action, code = "read the grant", ErrorCode.STORE_UNAVAILABLE
    started = time.monotonic()
    engine = db.live(code)
    with translate(code, action):
        proxied = raw_checkout(engine, ping=ping)
    try:
        raw = proxied.driver_connection
        assert isinstance(raw, psycopg.Connection)
        with translate(code, action), db.guard_driver(proxied.dbapi_connection):
            try:
                raw.autocommit = True
                cursor = pooled_cursor(proxied.info, raw)
                cursor.execute(query.sql, query.params(grant_id))
                return cursor.fetchone()
            except psycopg.Error as error:
                lost = raw.closed or raw.broken
                if lost:
                    proxied.invalidate()  # never lent again
                    if not ping and time.monotonic() - started < _AT_ONCE:
                        return _LOST  # the read may be made again, on a pinged connection
                raise as_dbapi_error(error, engine.dialect, lost) from error
            finally:
                if not (raw.closed or raw.broken):
                    raw.autocommit = False
    finally:
        proxied.close()  # back to the pool


class PostgresReads:
    """The joined read on PostgreSQL on a connection each reading thread keeps, else on one of
    the pool's (:func:`read_postgres`).

    A checkout, the switches to autocommit and back and the check-in cost about as much CPU as
    the statement's own round trip. The first :data:`_OWN_CONNECTIONS` threads to read (the
    decision threads, on the HTTP hot path) each keep a connection, taken out of the pool (so
    the pool keeps its size for everything else), in autocommit for good and used by that
    thread alone; a slot a thread that has ended held is given to the next thread that reads.
    Each read runs under the store's client-side deadline, as on a pooled connection. A kept
    connection found lost is closed (the server restarted, or the deadline severed it): the
    read is made again, once, on a pinged connection of the pool when it was lost at once, as
    :func:`read_postgres` does, and the thread's next read keeps another. :meth:`close` closes
    them all (the store's close)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[int, tuple[threading.Thread, _Kept]] = {}
        self._closed = False

    def read(
        self, db: Database, query: GrantWithTaskQuery, grant_id: str
    ) -> tuple[Grant | None, Task | None]:
        thread = threading.get_ident()
        held = self._kept.get(thread)
        kept = held[1] if held is not None else self._keep(db, thread)
        if kept is None:
            return read_postgres(db, query, grant_id)
        row = self._fetch_kept(db, query, grant_id, thread, kept)
        if row is _LOST:
            row = _fetch(db, query, grant_id, ping=True)
        return query.decode(row)

    def _fetch_kept(
        self, db: Database, query: GrantWithTaskQuery, grant_id: str, thread: int, kept: _Kept
    ) -> Any:
        action, code = "read the grant", ErrorCode.STORE_UNAVAILABLE
        raw, cursor = kept
        started = time.monotonic()
        with translate(code, action), db.guard_driver(raw):
            try:
                cursor.execute(query.sql, query.params(grant_id))
                return cursor.fetchone()
            except psycopg.Error as error:
                lost = raw.closed or raw.broken
                if lost:
                    self._drop(thread, kept)
                    if time.monotonic() - started < _AT_ONCE:
                        return _LOST  # the read may be made again, on a pinged connection
                raise as_dbapi_error(error, db.live(code).dialect, lost) from error

    def _keep(self, db: Database, thread: int) -> _Kept | None:
        with self._lock:
            if self._closed:
                return None
            for ident, (owner, (raw, _)) in list(self._kept.items()):
                if not owner.is_alive():
                    del self._kept[ident]
                    raw.close()
            if len(self._kept) >= _OWN_CONNECTIONS:
                return None
        code = ErrorCode.STORE_UNAVAILABLE
        engine = db.live(code)
        with translate(code, "read the grant"):
            proxied = raw_checkout(engine)  # pinged: it is kept for many reads
        raw = proxied.driver_connection
        assert isinstance(raw, psycopg.Connection)
        proxied.detach()  # out of the pool: closing it is this object's business
        try:
            raw.autocommit = True
            kept: _Kept = (raw, raw.cursor())
        except psycopg.Error:
            raw.close()
            return None
        with self._lock:
            if self._closed or len(self._kept) >= _OWN_CONNECTIONS:
                raw.close()
                return None
            self._kept[thread] = (threading.current_thread(), kept)
        return kept

    def _drop(self, thread: int, kept: _Kept) -> None:
        with self._lock:
            held = self._kept.get(thread)
            if held is not None and held[1] is kept:
                del self._kept[thread]
        kept[0].close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            kept, self._kept = list(self._kept.values()), {}
        for _, (raw, _cursor) in kept:
            raw.close()


def raw_checkout(engine: Engine, *, ping: bool = True) -> Any:
    """A pooled connection, pinged first unless ``ping`` is false (:data:`UNPINGED`: the
    caller makes its statement again on a pinged one if this one is found lost at once); the
    driver's error when the pool cannot connect raised as SQLAlchemy's (``raw_connection``
    does not wrap it as ``connect`` does), so the caller's :func:`~tether.store.db.translate`
    words it like any other."""
    skip = UNPINGED.set(not ping)
    try:
        return engine.raw_connection()
    except psycopg.Error as error:
        raise as_dbapi_error(error, engine.dialect) from error
    finally:
        UNPINGED.reset(skip)


class SqliteReads:
    """The joined read on SQLite: on the write connection while no write of this process holds
    it (its page cache is warm), else on a connection each reading thread keeps.

    A pool checkout and check-in cost about 8 µs per read, a third of the read. The first
    :data:`_OWN_CONNECTIONS` threads to read (the event loop's, on the HTTP hot path) each keep
    a connection, taken out of the pool (so the pool keeps its size for everything else) and
    used by that thread alone; any other thread borrows one from the pool as before. A read
    leaves no transaction open (the statement is reset when its cursor closes), so a kept
    connection holds no snapshot between reads and never blocks a checkpoint. A connection whose
    read failed is closed, and the thread's next read opens another. :meth:`close` closes them
    all (the store's close)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[int, PoolProxiedConnection] = {}
        self._closed = False

    def fetch(
        self, db: Database, engine: Engine, sql: str, params: Sequence[object] | dict[str, object]
    ) -> Any:
        """The row ``sql`` finds, or ``None``; raises what the driver raises. On the write
        connection when no write holds it (:meth:`Database.sqlite_write_driver`)."""
        with db.sqlite_write_driver() as writer:
            if writer is not None:
                return _fetch_one(writer, sql, params)
        thread = threading.get_ident()
        kept = self._kept.get(thread) or self._keep(engine, thread)
        if kept is None:
            borrowed = engine.raw_connection()
            try:
                return _fetch_one(borrowed, sql, params)
            finally:
                borrowed.close()  # back to the pool
        try:
            return _fetch_one(kept, sql, params)
        except BaseException:
            with self._lock:
                if self._kept.get(thread) is kept:
                    del self._kept[thread]
            kept.close()
            raise

    def _keep(self, engine: Engine, thread: int) -> PoolProxiedConnection | None:
        if isinstance(engine.pool, SingletonThreadPool):
            return None  # in memory: the pool's connection per thread is the database itself
        with self._lock:
            if self._closed or len(self._kept) >= _OWN_CONNECTIONS:
                return None
            connection = engine.raw_connection()
            connection.detach()  # out of the pool: closing it closes the driver's connection
            self._kept[thread] = connection
            return connection

    def close(self) -> None:
        with self._lock:
            self._closed = True
            kept, self._kept = list(self._kept.values()), {}
        for connection in kept:
            connection.close()


def _fetch_one(
    connection: sqlite3.Connection | PoolProxiedConnection,
    sql: str,
    params: Sequence[object] | dict[str, object],
) -> Any:
    cursor = connection.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchone()
    finally:
        cursor.close()
