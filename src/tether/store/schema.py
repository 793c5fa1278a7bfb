"""The SQL schema, as SQLAlchemy Core tables that render on SQLite and PostgreSQL alike.

Times are stored as integer microseconds since the Unix epoch, UTC (:class:`UtcMicros`): they sort
and compare in SQL on every backend (``expires_at <= :now``), round-trip a ``datetime`` exactly,
and come back timezone-aware. The audit record's own ``at`` is the ISO-8601 text that was hashed,
kept byte for byte, as is its ``body`` (canonical JSON text): the chain covers exactly what is
stored.

``audit_head`` holds one row (``id = 1``) naming the last sealed record; ``seq = 0`` means the
chain is empty. The row exists from the moment the schema is created so that every writer can lock
it (``SELECT ... FOR UPDATE``) before appending, on backends with row locks.

Bump :data:`SCHEMA_VERSION` with every change to these tables; a store refuses to open a database
written by a newer tether.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects import postgresql

SCHEMA_VERSION: Final = 2
"""The version this code writes, recorded in ``tether_meta`` under ``schema_version``."""

SCHEMA_VERSION_KEY: Final = "schema_version"
HEAD_ROW_ID: Final = 1

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class UtcMicros(TypeDecorator[datetime]):
    """A timezone-aware ``datetime`` stored as integer microseconds since the epoch, UTC."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return to_micros(value)

    def process_result_value(self, value: int | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return from_micros(value)


def to_micros(value: datetime) -> int:
    """Microseconds since the epoch; refuses naive datetimes rather than guess their zone."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("tether stores only timezone-aware datetimes")
    return (value - _EPOCH) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


# SQLite makes a column a rowid alias (no separate index) only when it is exactly INTEGER.
_SEQ = BigInteger().with_variant(Integer(), "sqlite")
# JSONB on PostgreSQL; JSON text elsewhere.
_JSON = JSON().with_variant(postgresql.JSONB(), "postgresql")
_ID = String(64)
_WORD = String(32)

metadata = MetaData()

meta = Table(
    "tether_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

tasks = Table(
    "tasks",
    metadata,
    Column("task_id", _ID, primary_key=True),
    Column("agent", Text, nullable=False),
    Column("intent", _JSON, nullable=False),
    Column("requested", _JSON, nullable=False),
    Column("granted", _JSON, nullable=False),
    Column("state", _WORD, nullable=False),
    Column("opened_at", UtcMicros, nullable=False),
    Column("expires_at", UtcMicros, nullable=False),
    Column("ended_at", UtcMicros, nullable=True),
    Column("parent_task_id", _ID, nullable=True, index=True),
    # The reaper's query: open tasks past their expiry, oldest first.
    Index("ix_tasks_state_expires_at", "state", "expires_at"),
)

grants = Table(
    "grants",
    metadata,
    Column("grant_id", _ID, primary_key=True),
    Column("task_id", _ID, ForeignKey("tasks.task_id"), nullable=False, index=True),
    Column("agent", Text, nullable=False),
    Column("scopes", _JSON, nullable=False),
    Column("issued_at", UtcMicros, nullable=False),
    Column("expires_at", UtcMicros, nullable=False),
    Column("state", _WORD, nullable=False),
    Column("policy_revision", Text, nullable=False),
    Column("delegators", _JSON, nullable=False),
    Column("parent_grant_id", _ID, nullable=True),
)

decisions = Table(
    "decisions",
    metadata,
    Column("decision_id", _ID, primary_key=True),
    # No foreign keys: a decision is recorded even for a grant or task that does not exist.
    Column("task_id", _ID, nullable=True),
    Column("grant_id", _ID, nullable=True),
    Column("agent", Text, nullable=False),
    Column("tool", Text, nullable=False),
    Column("action", _WORD, nullable=False),
    Column("dataset", Text, nullable=True),
    Column("decision", _WORD, nullable=False),
    Column("decided_at", UtcMicros, nullable=False),
)

effects = Table(
    "effects",
    metadata,
    Column("effect_id", _ID, primary_key=True),
    # INVARIANT: at most one effect per decision.
    Column("decision_id", _ID, ForeignKey("decisions.decision_id"), nullable=False, unique=True),
    Column("status", _WORD, nullable=False),
    Column("records", BigInteger, nullable=True),
    Column("bytes", BigInteger, nullable=True),
    Column("recipients", _JSON, nullable=False),
    Column("reported_at", UtcMicros, nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=False),
    Column("record_id", _ID, nullable=False, unique=True),
    Column("at", Text, nullable=False),
    Column("kind", _WORD, nullable=False),
    Column("agent", Text, nullable=True),
    Column("task_id", _ID, nullable=True),
    Column("body", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", _SEQ, nullable=False),
    Column("hash", String(64), nullable=False),
)

__all__ = [
    "HEAD_ROW_ID",
    "SCHEMA_VERSION",
    "SCHEMA_VERSION_KEY",
    "UtcMicros",
    "audit",
    "audit_head",
    "decisions",
    "effects",
    "from_micros",
    "grants",
    "meta",
    "metadata",
    "tasks",
    "to_micros",
]

approvals = Table(
    "approvals",
    metadata,
    Column("approval_id", _ID, primary_key=True),
    Column("task_id", _ID, nullable=False, index=True),
    Column("agent", Text, nullable=False),
    Column("tool", Text, nullable=False),
    Column("action", _WORD, nullable=False),
    Column("dataset", Text, nullable=True),
    Column("args_mac", String(128), nullable=False),
    Column("state", _WORD, nullable=False, index=True),
    Column("created_at", UtcMicros, nullable=False),
    Column("expires_at", UtcMicros, nullable=False),
    # The whole approval (call, summary, votes) as JSON; the columns above are for lookups.
    Column("doc", _JSON, nullable=False),
)
