"""The SQL schema, as SQLAlchemy Core tables that render on SQLite and PostgreSQL alike.

Times are stored as integer microseconds since the Unix epoch, UTC (:class:`UtcMicros`): they sort
and compare in SQL on every backend (``expires_at <= :now``), round-trip a ``datetime`` exactly,
and come back timezone-aware. The audit record's own ``at`` is the ISO-8601 text that was hashed,
kept byte for byte, as is its ``body`` (canonical JSON text): the chain covers exactly what is
stored.

Structured values (intents, scopes, approvals) are JSON *text* (:class:`JsonText`), ASCII-escaped,
on every backend, not PostgreSQL ``jsonb``: tether never queries inside them and needs them back
exactly. ``jsonb`` would refuse ``\\u0000`` in an agent's call arguments (making an approval
impossible to record), turn ``1e300`` into an integer and ``-0.0`` into ``0``; ``json`` would
refuse ``NaN``, which Python's parser accepts. ASCII escaping also keeps NUL and lone surrogates
out of the server's text type. The bytes are what SQLAlchemy's ``JSON`` wrote on SQLite before,
so existing SQLite files read unchanged.

The audit log is partitioned (:mod:`tether.core.audit`): ``audit`` is keyed by
``(partition_id, seq)``, and ``audit_head`` holds one row per partition naming its last sealed
record (``seq = 0``: the partition is empty). A writer locks its own partition's row
(``SELECT ... FOR UPDATE``) before appending, so writers of different partitions (replicas) never
wait on each other; the row is created by the partition's first write. The legacy partition
(``'0'``) is the chain of a store begun before partitions (schema 10).

Every table tether uses is declared here, so the schema a store creates does not depend on which
modules were imported first.

These declarations are what the code queries with; the database gets them from the Alembic
revisions in :mod:`tether.store.migrations`. Every change here is a new revision there, named in
:data:`SCHEMA_REVISION` (and, for tables and columns, a bump of :data:`SCHEMA_VERSION`); a test
checks that the revisions produce exactly these tables.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)

SCHEMA_VERSION: Final = 11
"""The version this code writes, recorded in ``tether_meta`` under ``schema_version`` by the
migrations. Tethers from before Alembic read only this number, and refuse a higher one."""

SCHEMA_REVISION: Final = "0011"
"""The Alembic revision these declarations match: the last in :mod:`tether.store.migrations`
(a test keeps the two equal)."""

VERSION_TABLE: Final = "tether_alembic_version"
"""Alembic's version table (:mod:`tether.store.migrate`): the revision the database is at."""

SCHEMA_VERSION_KEY: Final = "schema_version"
CHAIN_FORMAT_KEY: Final = "audit_chain_format"
"""``tether_meta``'s record of the audit chain's format (:class:`tether.core.audit.ChainFormat`),
fixed when the schema reaches revision 0006: 1 for a chain begun before, 2 otherwise."""
LEGACY_PARTITION_ID: Final = "0"
"""The partition of every record written before schema 10
(:data:`tether.core.audit.LEGACY_PARTITION`)."""

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


class JsonText(TypeDecorator[Any]):
    """A JSON value stored as ASCII text (see the module docstring for why not ``jsonb``)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        # json.dumps' defaults are what SQLAlchemy's JSON type used: files written before read
        # back byte for byte, and ensure_ascii keeps NUL and lone surrogates escaped.
        return None if value is None else json.dumps(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


# SQLite makes a column a rowid alias (no separate index) only when it is exactly INTEGER.
_SEQ = BigInteger().with_variant(Integer(), "sqlite")
_JSON = JsonText()
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
    Column("budgets", _JSON, nullable=False),
    Column("label", _WORD, nullable=False),
    Column("workflow_step", String(64), nullable=True),
    # How many observations were recorded for the task (argument provenance's version of it).
    Column("observed", BigInteger, nullable=False, server_default=text("0")),
    # The task's provenance secret in hex (tether.core.provenance.task_key): its fingerprints'
    # key is derived from it and the master key. Wiped (NULL) when the task ends, which makes
    # what the task observed unlinkable; "" for a task opened before tasks had secrets.
    Column("provenance_secret", String(64), nullable=True),
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
    # Indexed (schema version 4): a task's activity and its volume so far are read per call.
    Column("task_id", _ID, nullable=True, index=True),
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

_PARTITION = String(64)

audit = Table(
    "audit",
    metadata,
    Column("seq", _SEQ, nullable=False, autoincrement=False),
    Column("record_id", _ID, nullable=False, unique=True),
    Column("at", Text, nullable=False),
    Column("kind", _WORD, nullable=False),
    Column("agent", Text, nullable=True),
    Column("task_id", _ID, nullable=True),
    Column("body", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    # Last: where ALTER TABLE ADD COLUMN put it on PostgreSQL (schema 10).
    Column("partition_id", _PARTITION, nullable=False),
    PrimaryKeyConstraint("partition_id", "seq"),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("seq", _SEQ, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("partition_id", _PARTITION, nullable=False),
    PrimaryKeyConstraint("partition_id"),
)

audit_checkpoints = Table(
    # Signed checkpoints of the audit log (tether.core.checkpoint), one per size (schema 6).
    "audit_checkpoints",
    metadata,
    Column("size", _SEQ, primary_key=True, autoincrement=False),
    Column("format", Integer, nullable=False),
    Column("root", String(64), nullable=False),
    Column("head", String(64), nullable=False),
    Column("at", Text, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", Text, nullable=False),
    # The Merkle frontier at this size (JSON list of hex), so the next checkpoint extends the
    # tree without reading the log from the start. Not signed: it is used only once it hashes
    # to the signed root. For a checkpoint of every partition (schema 10), a JSON object of
    # partition -> its frontier.
    Column("frontier", Text, nullable=False),
    # A checkpoint of every partition (schema 10): the signed (partition, size, head, root) of
    # each, as JSON; empty for a checkpoint of the legacy partition alone, signed before.
    Column("partitions", Text, nullable=False, server_default=text("''")),
)

gateway_events = Table(
    # The event id a remote MCP gateway chose for one of its own records (POST
    # /v1/gateway/events), with the audit record it became (schema 11).
    # INVARIANT: one record per (gateway, event id): a replayed or retried post inserts nothing.
    # Kept as long as the audit record (nothing is ever deleted), so no replay window to bound.
    "gateway_events",
    metadata,
    Column("gateway", Text, nullable=False),
    Column("event_id", _ID, nullable=False),
    Column("record_id", _ID, nullable=False),
    PrimaryKeyConstraint("gateway", "event_id", name="gateway_events_pkey"),
)


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

breakglass = Table(
    "breakglass",
    metadata,
    Column("breakglass_id", _ID, primary_key=True),
    Column("task_id", _ID, nullable=False, index=True),
    Column("state", _WORD, nullable=False),
    Column("requested_at", UtcMicros, nullable=False),
    # The whole request as JSON text, written by tether.store.breakglass.
    Column("doc", Text, nullable=False),
)

RUNTIME_PRIVILEGES: Final[dict[str, tuple[str, ...]]] = {
    "tether_meta": ("SELECT",),
    # UPDATE also for SELECT ... FOR UPDATE; INSERT for a partition's first write (schema 10).
    "audit_head": ("SELECT", "INSERT", "UPDATE"),
    "audit": ("SELECT", "INSERT"),
    "audit_checkpoints": ("SELECT", "INSERT"),
    "tasks": ("SELECT", "INSERT", "UPDATE"),
    "grants": ("SELECT", "INSERT", "UPDATE"),
    "decisions": ("SELECT", "INSERT"),
    "effects": ("SELECT", "INSERT"),
    "approvals": ("SELECT", "INSERT", "UPDATE"),
    "breakglass": ("SELECT", "INSERT", "UPDATE"),
    "budget_holds": ("SELECT", "INSERT", "UPDATE"),
    "revoked_agents": ("SELECT", "INSERT", "UPDATE"),
    "leases": ("SELECT", "INSERT", "UPDATE"),
    "observations": ("SELECT", "INSERT"),
    "gateway_events": ("SELECT", "INSERT"),
    VERSION_TABLE: ("SELECT",),  # read on start to check the schema is current
}
"""What a running tether needs on each table once the schema exists, and no more.

Nothing is ever deleted, and an audit record is never changed after it is written: a role with
only these privileges cannot rewrite or remove history, whatever a compromised replica sends.
"""

__all__ = [
    "CHAIN_FORMAT_KEY",
    "LEGACY_PARTITION_ID",
    "RUNTIME_PRIVILEGES",
    "SCHEMA_REVISION",
    "SCHEMA_VERSION",
    "SCHEMA_VERSION_KEY",
    "VERSION_TABLE",
    "JsonText",
    "UtcMicros",
    "approvals",
    "audit",
    "audit_checkpoints",
    "audit_head",
    "breakglass",
    "budget_holds",
    "decisions",
    "effects",
    "from_micros",
    "gateway_events",
    "grants",
    "leases",
    "meta",
    "metadata",
    "observations",
    "tasks",
    "to_micros",
]


budget_holds = Table(
    "budget_holds",
    metadata,
    # One reservation a decision made against one limit of one task (its own or an ancestor's).
    Column("decision_id", _ID, nullable=False, index=True),
    Column("task_id", _ID, nullable=False),
    Column("kind", _WORD, nullable=False),
    Column("classification", _WORD, nullable=False),
    Column("amount", Float, nullable=False),
    # NULL until the effect settles it; then the real amount.
    Column("settled", Float, nullable=True),
    Column("over", Boolean, nullable=False),
    # The declared-workflow step whose limit the hold counts against; NULL for the task's own
    # limits (schema version 5).
    Column("step", String(64), nullable=True),
    Index("ix_budget_holds_task", "task_id", "kind", "classification"),
)


revoked_agents = Table(
    "revoked_agents",
    metadata,
    # The kill switch (OWASP ASI10): an agent listed here can open no task.
    Column("agent", String(2048), primary_key=True),
    Column("revoked_at", UtcMicros, nullable=False),
    Column("reason", Text, nullable=False),
    Column("revoked_by", Text, nullable=False),
    # Restoring clears this; rows are never deleted (the runtime role has no DELETE).
    Column("active", Boolean, nullable=False),
)


leases = Table(
    "leases",
    metadata,
    # One just-in-time downstream credential (tether.core.lease); never the secret itself.
    Column("lease_id", _ID, primary_key=True),
    Column("task_id", _ID, nullable=False, index=True),
    Column("grant_id", _ID, nullable=False),
    Column("decision_id", _ID, nullable=False),
    Column("agent", Text, nullable=False),
    # The configured issuer's name and its kind (scoped_jwt, postgres_role, ...).
    Column("issuer_name", String(64), nullable=False),
    Column("issuer", _WORD, nullable=False),
    Column("scope", _JSON, nullable=False),
    Column("issued_at", UtcMicros, nullable=False),
    Column("expires_at", UtcMicros, nullable=False),
    Column("max_expires_at", UtcMicros, nullable=False),
    Column("renewable", Boolean, nullable=False),
    Column("state", _WORD, nullable=False),
    Column("ended_at", UtcMicros, nullable=True),
    # False until the downstream credential is gone (the PostgreSQL role dropped): the reaper
    # retries every ended lease still False, across restarts, until it is.
    Column("released", Boolean, nullable=False),
    # The reaper's queries: active leases past expiry; ended leases not yet released.
    Index("ix_leases_state_expires_at", "state", "expires_at"),
    Index("ix_leases_released", "released", "state"),
)


observations = Table(
    "observations",
    metadata,
    # Argument provenance (tether.core.provenance): the keyed HMAC of one value a task's agent
    # saw in a tool result, with its source. Never the value itself. A delegate's observations
    # are written under every task of its chain (they roll up, so none is laundered).
    Column("task_id", _ID, primary_key=True),
    # "" marks a source part of whose result went unscanned (too large, or past the task's cap).
    Column("fingerprint", String(64), primary_key=True),
    Column("tool", String(256), primary_key=True),
    Column("dataset", String(256), primary_key=True),  # "" when none
    Column("trust", _WORD, primary_key=True),
    Column("observed_at", UtcMicros, nullable=False),
)
