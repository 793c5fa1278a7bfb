"""Fixtures for the store contract suite: real databases, one set of tests per backend.

Add a backend by adding a name to ``BACKENDS`` and a branch to :class:`Backend`; every test that
uses ``backend``, ``store`` or ``open_store`` then runs against it too.

- ``sqlite``: a fresh file in the test's temporary directory.
- ``postgresql``: a fresh, empty schema in one database on the session's real server from
  :mod:`pg_server`, chosen with ``search_path`` in the URL (``?options=-csearch_path=...``, as an
  operator would put tether in its own schema) and dropped after the test. Every test thus also
  runs tether's first start on PostgreSQL. A schema costs a few milliseconds where a database
  costs a checkpoint; tests that need a database of their own (its settings, its roles) make one
  with :meth:`PgPlaces.database`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine, create_engine, text

from pg_server import PostgresServer, postgres_server
from tether.core.approval import Approval, ApprovalState
from tether.core.audit import AuditKind
from tether.core.effect import Effect, EffectStatus
from tether.core.ids import IdFactory
from tether.core.scope import ActionKind, ArgConstraint, JSONValue, Scope
from tether.core.task import Grant, GrantState, Intent, Task, TaskState
from tether.core.verdict import Decision
from tether.service.ports import AuditEntry, DecisionRecord
from tether.store import SqlStore
from tether.store.sql import DEFAULT_BUSY_TIMEOUT, DEFAULT_PAGE_SIZE

__all__ = ["postgres_server"]

BACKENDS = ["sqlite", "postgresql"]

R = TypeVar("R")
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
AGENT = "spiffe://example.org/agents/billing"


STORE_DB = "tether_store"


class PgPlaces:
    """Fresh, empty places for tether's tables on one server: schemas in :data:`STORE_DB`, or
    whole databases. Keeps its two admin connections open (each login is a SCRAM exchange)."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self._admin = psycopg.connect(server.dsn(), autocommit=True)
        self._admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(STORE_DB)))
        self._store_db = psycopg.connect(server.dsn(STORE_DB), autocommit=True)

    def schema(self) -> str:
        name = f"s_{os.urandom(5).hex()}"
        self._store_db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        return name

    def drop_schema(self, name: str) -> None:
        self._store_db.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
        )

    @contextmanager
    def database(self) -> Iterator[str]:
        """A fresh database, dropped (whoever is still connected) when the block ends."""
        name = f"d_{os.urandom(5).hex()}"
        ident = sql.Identifier(name)
        self._admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(ident))
        try:
            yield name
        finally:
            self._admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))

    def close(self) -> None:
        self._store_db.close()
        self._admin.close()


@pytest.fixture(scope="session")
def pg_places(postgres_server: PostgresServer) -> Iterator[PgPlaces]:
    places = PgPlaces(postgres_server)
    yield places
    places.close()


@dataclass
class Backend:
    """One database that several ``SqlStore`` handles (as several processes or replicas
    would) open."""

    name: str
    root: Path
    server: PostgresServer | None = None
    database: str = ""
    #: The schema tether's tables live in (PostgreSQL); empty for the database's default.
    schema: str = ""
    handles: list[SqlStore] = field(default_factory=list)

    @property
    def path(self) -> Path:
        """The SQLite file (SQLite only)."""
        return self.root / "tether.db"

    @property
    def pg(self) -> PostgresServer:
        assert self.server is not None, "a PostgreSQL-only helper used on SQLite"
        return self.server

    @property
    def url(self) -> str:
        if self.name == "sqlite":
            return f"sqlite:///{self.path}"
        url = self.pg.url(self.database)
        return f"{url}?options=-csearch_path%3D{self.schema}" if self.schema else url

    def dsn(self) -> str:
        """A libpq connection string for psycopg (PostgreSQL only)."""
        if not self.schema:
            return self.pg.dsn(self.database)
        return self.pg.dsn(self.database, options=f"-c search_path={self.schema}")

    def secrets(self) -> list[str]:
        """What no error message may show: file paths, the URL, the password, the address."""
        if self.name == "sqlite":
            return [str(self.path), str(self.path.parent)]
        return [self.url, self.pg.password, f"{self.pg.host}:{self.pg.port}", str(self.pg.port)]

    def open(
        self,
        *,
        busy_timeout: timedelta = DEFAULT_BUSY_TIMEOUT,
        page_size: int = DEFAULT_PAGE_SIZE,
        partition: str = "0",
    ) -> SqlStore:
        """A handle appending to audit ``partition`` (a replica's id)."""
        if self.name == "sqlite":
            store = SqlStore.sqlite(
                self.path, busy_timeout=busy_timeout, page_size=page_size, partition=partition
            )
        else:
            store = SqlStore.postgres(
                self.url, lock_timeout=busy_timeout, page_size=page_size, partition=partition
            )
        self.handles.append(store)
        return store

    def raw(self) -> Engine:
        """An engine outside tether, to play the attacker editing tables directly."""
        return create_engine(self.url)

    def execute(self, sql: str, **params: object) -> None:
        engine = self.raw()
        try:
            with engine.begin() as conn:
                conn.execute(text(sql), params)
        finally:
            engine.dispose()

    @contextmanager
    def write_locked(self) -> Iterator[None]:
        """Another process holding the write lock (the chain head, on PostgreSQL) until the
        block ends."""
        if self.name == "postgresql":
            with psycopg.connect(self.dsn()) as pg:
                pg.execute("SELECT seq FROM audit_head WHERE partition_id = '0' FOR UPDATE")
                yield
                pg.rollback()
            return
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    def close_all(self) -> None:
        for store in self.handles:
            store.close()


@contextmanager
def provisioned(name: str, request: pytest.FixtureRequest, root: Path) -> Iterator[Backend]:
    """A fresh, empty database of backend ``name``; its handles closed and it dropped after."""
    if name == "sqlite":
        db = Backend(name, root)
        try:
            yield db
        finally:
            db.close_all()
        return
    places: PgPlaces = request.getfixturevalue("pg_places")
    db = Backend(name, root, server=places.server, database=STORE_DB, schema=places.schema())
    try:
        yield db
    finally:
        db.close_all()
        places.drop_schema(db.schema)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with provisioned(request.param, request, tmp_path) as db:
        yield db


@pytest.fixture
def pg_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh PostgreSQL database alone: for what only a server can do (drop a connection,
    refuse a value SQLite holds)."""
    with provisioned("postgresql", request, tmp_path) as db:
        yield db


@pytest.fixture
def store(backend: Backend) -> SqlStore:
    return backend.open()


@pytest.fixture
def open_store(backend: Backend) -> Callable[[], SqlStore]:
    return backend.open


class Make:
    """Builds domain values with fresh ids."""

    def __init__(self) -> None:
        self.ids = IdFactory(os.urandom)

    def scopes(self) -> tuple[Scope, ...]:
        return (
            Scope.of(
                "payments.transfer",
                [ActionKind.SPEND],
                ["ledger"],
                {
                    "amount": ArgConstraint.of(max=100, min=0.5),
                    "currency": ArgConstraint.of(one_of=["EUR", "USD", 7, True]),
                },
            ),
            Scope.of(
                "email.send",
                [ActionKind.SEND, ActionKind.READ],
                constraints={"to": ArgConstraint.of(ends_with=["@example.com"], max_length=5)},
            ),
        )

    def task(
        self, *, opened_at: datetime = T0, ttl: float = 300, agent: str = AGENT
    ) -> tuple[Task, Grant]:
        scopes = self.scopes()
        expires = opened_at + timedelta(seconds=ttl)
        task = Task(
            task_id=self.ids.task(),
            agent=agent,
            intent=Intent("refund", "refund order 42", "user:alice"),
            requested=scopes,
            granted=scopes[:1],
            state=TaskState.OPEN,
            opened_at=opened_at,
            expires_at=expires,
            provenance_secret=os.urandom(32),
        )
        grant = Grant(
            grant_id=self.ids.grant(),
            task_id=task.task_id,
            agent=agent,
            scopes=scopes[:1],
            issued_at=opened_at,
            expires_at=expires,
            state=GrantState.ACTIVE,
            policy_revision="rev-1",
        )
        return task, grant

    def opened(self, store: SqlStore) -> tuple[Task, Grant]:
        """A new task and its grant, opened in ``store``."""
        task, grant = self.task()
        store.open_task(task, grant, self.entry(AuditKind.TASK_OPENED))
        return task, grant

    def entry(
        self,
        kind: AuditKind = AuditKind.DECISION,
        *,
        at: datetime = T0,
        agent: str | None = AGENT,
        task_id: str | None = None,
        body: dict[str, JSONValue] | None = None,
    ) -> AuditEntry:
        return AuditEntry(
            record_id=self.ids.audit(),
            at=at,
            kind=kind,
            agent=agent,
            task_id=task_id,
            body={"note": "test"} if body is None else body,
        )

    def decision(self, task: Task | None, grant: Grant | None) -> DecisionRecord:
        return DecisionRecord(
            decision_id=self.ids.decision(),
            task_id=None if task is None else task.task_id,
            grant_id=None if grant is None else grant.grant_id,
            agent=AGENT,
            tool="payments.transfer",
            action=ActionKind.SPEND,
            dataset="ledger" if task is not None else None,
            decision=Decision.ALLOW if task is not None else Decision.DENY,
            decided_at=T0 + timedelta(seconds=1, microseconds=123456),
        )

    def approval(
        self,
        task: Task,
        grant: Grant,
        decision: DecisionRecord,
        *,
        required: int = 1,
        args: dict[str, JSONValue] | None = None,
        dataset: str | None = "ledger",
        ttl: float = 600,
    ) -> Approval:
        """A pending approval for ``decision``'s call."""
        return Approval(
            approval_id=self.ids.approval(),
            decision_id=decision.decision_id,
            task_id=task.task_id,
            grant_id=grant.grant_id,
            agent=task.agent,
            tool="payments.transfer",
            action=ActionKind.SPEND,
            dataset=dataset,
            args={"amount": 500, "to": "c-1042"} if args is None else args,
            args_mac="mac-" + os.urandom(8).hex(),
            policy_ids=("needs-approval",),
            why="amount over 100",
            required=required,
            summary=("refund order 42", "payments.transfer spend 500"),
            created_at=decision.decided_at,
            expires_at=decision.decided_at + timedelta(seconds=ttl),
            state=ApprovalState.PENDING,
        )

    def effect(self, decision: DecisionRecord) -> Effect:
        return Effect(
            effect_id=self.ids.effect(),
            decision_id=decision.decision_id,
            status=EffectStatus.OK,
            records=3,
            bytes=2**40,
            recipients=("a@example.com", "b@example.com"),
            reported_at=T0 + timedelta(seconds=2),
        )


@pytest.fixture
def make() -> Make:
    return Make()


def race(threads: int, call: Callable[[int], R]) -> list[R | BaseException]:
    """Run ``call(n)`` for n in 0..threads-1 at once; each result or the exception it raised."""
    start = threading.Barrier(threads)
    outcomes: list[R | BaseException] = [RuntimeError("did not run")] * threads

    def run(n: int) -> None:
        start.wait()
        try:
            outcomes[n] = call(n)
        except BaseException as exc:
            outcomes[n] = exc

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
        assert not w.is_alive(), "a racing call hung"
    return outcomes
