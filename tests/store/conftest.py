"""Fixtures for the store contract suite: real databases, one set of tests per backend.

Add a backend by adding a name to ``BACKENDS`` and a branch to :class:`Backend`; every test that
uses ``backend``, ``store`` or ``open_store`` then runs against it too.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from tether.core.audit import AuditKind
from tether.core.effect import Effect, EffectStatus
from tether.core.ids import IdFactory
from tether.core.scope import ActionKind, ArgConstraint, JSONValue, Scope
from tether.core.task import Grant, GrantState, Intent, Task, TaskState
from tether.core.verdict import Decision
from tether.service.ports import AuditEntry, DecisionRecord
from tether.store import SqlStore
from tether.store.sql import DEFAULT_BUSY_TIMEOUT, DEFAULT_PAGE_SIZE

BACKENDS = ["sqlite"]

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
AGENT = "spiffe://example.org/agents/billing"


@dataclass
class Backend:
    """One database that several ``SqlStore`` handles (as several processes would) open."""

    name: str
    root: Path
    handles: list[SqlStore] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.root / "tether.db"

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def open(
        self, *, busy_timeout: timedelta = DEFAULT_BUSY_TIMEOUT, page_size: int = DEFAULT_PAGE_SIZE
    ) -> SqlStore:
        store = SqlStore.sqlite(self.path, busy_timeout=busy_timeout, page_size=page_size)
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
        """Another process holding the database's write lock until the block ends."""
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


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    db = Backend(request.param, tmp_path)
    yield db
    db.close_all()


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
