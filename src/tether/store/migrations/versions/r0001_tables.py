"""tether's tables at schema version 3, before the kill switch.

The first revision: every table tether had when it moved to Alembic (schema version 3, as first
released), with the chain head's row and the schema version. A database that an older tether made
at version 3 without ``revoked_agents`` is stamped here instead of running it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tether.core.audit import GENESIS_HASH
from tether.store.migrations import SCHEMA_VERSION_KEY, forward_only

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# The types as stored, frozen here (see tether.store.schema for what they mean).
# SQLite makes a column a rowid alias only when it is exactly INTEGER.
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_ID = sa.String(64)
_WORD = sa.String(32)
_MICROS = sa.BigInteger  # UtcMicros: microseconds since the epoch, UTC
_JSON = sa.Text  # JsonText: ASCII-escaped JSON text


def upgrade() -> None:
    meta = op.create_table(
        "tether_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "tasks",
        sa.Column("task_id", _ID, primary_key=True),
        sa.Column("agent", sa.Text, nullable=False),
        sa.Column("intent", _JSON, nullable=False),
        sa.Column("requested", _JSON, nullable=False),
        sa.Column("granted", _JSON, nullable=False),
        sa.Column("state", _WORD, nullable=False),
        sa.Column("opened_at", _MICROS, nullable=False),
        sa.Column("expires_at", _MICROS, nullable=False),
        sa.Column("ended_at", _MICROS, nullable=True),
        sa.Column("parent_task_id", _ID, nullable=True),
        sa.Column("budgets", _JSON, nullable=False),
        sa.Column("label", _WORD, nullable=False),
        sa.Column("workflow_step", sa.String(64), nullable=True),
    )
    op.create_index("ix_tasks_parent_task_id", "tasks", ["parent_task_id"])
    op.create_index("ix_tasks_state_expires_at", "tasks", ["state", "expires_at"])
    op.create_table(
        "grants",
        sa.Column("grant_id", _ID, primary_key=True),
        sa.Column("task_id", _ID, sa.ForeignKey("tasks.task_id"), nullable=False),
        sa.Column("agent", sa.Text, nullable=False),
        sa.Column("scopes", _JSON, nullable=False),
        sa.Column("issued_at", _MICROS, nullable=False),
        sa.Column("expires_at", _MICROS, nullable=False),
        sa.Column("state", _WORD, nullable=False),
        sa.Column("policy_revision", sa.Text, nullable=False),
        sa.Column("delegators", _JSON, nullable=False),
        sa.Column("parent_grant_id", _ID, nullable=True),
    )
    op.create_index("ix_grants_task_id", "grants", ["task_id"])
    op.create_table(
        "decisions",
        sa.Column("decision_id", _ID, primary_key=True),
        sa.Column("task_id", _ID, nullable=True),
        sa.Column("grant_id", _ID, nullable=True),
        sa.Column("agent", sa.Text, nullable=False),
        sa.Column("tool", sa.Text, nullable=False),
        sa.Column("action", _WORD, nullable=False),
        sa.Column("dataset", sa.Text, nullable=True),
        sa.Column("decision", _WORD, nullable=False),
        sa.Column("decided_at", _MICROS, nullable=False),
    )
    op.create_table(
        "effects",
        sa.Column("effect_id", _ID, primary_key=True),
        sa.Column(
            "decision_id",
            _ID,
            sa.ForeignKey("decisions.decision_id"),
            nullable=False,
            unique=True,
        ),
        sa.Column("status", _WORD, nullable=False),
        sa.Column("records", sa.BigInteger, nullable=True),
        sa.Column("bytes", sa.BigInteger, nullable=True),
        sa.Column("recipients", _JSON, nullable=False),
        sa.Column("reported_at", _MICROS, nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=False),
        sa.Column("record_id", _ID, nullable=False, unique=True),
        sa.Column("at", sa.Text, nullable=False),
        sa.Column("kind", _WORD, nullable=False),
        sa.Column("agent", sa.Text, nullable=True),
        sa.Column("task_id", _ID, nullable=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", _SEQ, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "approvals",
        sa.Column("approval_id", _ID, primary_key=True),
        sa.Column("task_id", _ID, nullable=False),
        sa.Column("agent", sa.Text, nullable=False),
        sa.Column("tool", sa.Text, nullable=False),
        sa.Column("action", _WORD, nullable=False),
        sa.Column("dataset", sa.Text, nullable=True),
        sa.Column("args_mac", sa.String(128), nullable=False),
        sa.Column("state", _WORD, nullable=False),
        sa.Column("created_at", _MICROS, nullable=False),
        sa.Column("expires_at", _MICROS, nullable=False),
        sa.Column("doc", _JSON, nullable=False),
    )
    op.create_index("ix_approvals_task_id", "approvals", ["task_id"])
    op.create_index("ix_approvals_state", "approvals", ["state"])
    op.create_table(
        "breakglass",
        sa.Column("breakglass_id", _ID, primary_key=True),
        sa.Column("task_id", _ID, nullable=False),
        sa.Column("state", _WORD, nullable=False),
        sa.Column("requested_at", _MICROS, nullable=False),
        sa.Column("doc", sa.Text, nullable=False),
    )
    op.create_index("ix_breakglass_task_id", "breakglass", ["task_id"])
    op.create_table(
        "budget_holds",
        sa.Column("decision_id", _ID, nullable=False),
        sa.Column("task_id", _ID, nullable=False),
        sa.Column("kind", _WORD, nullable=False),
        sa.Column("classification", _WORD, nullable=False),
        sa.Column("amount", sa.Float, nullable=False),
        sa.Column("settled", sa.Float, nullable=True),
        sa.Column("over", sa.Boolean, nullable=False),
    )
    op.create_index("ix_budget_holds_decision_id", "budget_holds", ["decision_id"])
    op.create_index("ix_budget_holds_task", "budget_holds", ["task_id", "kind", "classification"])

    op.bulk_insert(meta, [{"key": SCHEMA_VERSION_KEY, "value": "3"}])
    # The chain head exists from the start, so that every writer can lock it (seq 0: empty).
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS_HASH}])


def downgrade() -> None:
    forward_only()
