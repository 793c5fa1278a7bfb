"""leases: just-in-time downstream credentials (schema version 4)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tether.store.migrations import forward_only, set_schema_version

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_ID = sa.String(64)
_WORD = sa.String(32)
_MICROS = sa.BigInteger  # UtcMicros


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("lease_id", _ID, primary_key=True),
        sa.Column("task_id", _ID, nullable=False),
        sa.Column("grant_id", _ID, nullable=False),
        sa.Column("decision_id", _ID, nullable=False),
        sa.Column("agent", sa.Text, nullable=False),
        sa.Column("issuer_name", sa.String(64), nullable=False),
        sa.Column("issuer", _WORD, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),  # JsonText
        sa.Column("issued_at", _MICROS, nullable=False),
        sa.Column("expires_at", _MICROS, nullable=False),
        sa.Column("max_expires_at", _MICROS, nullable=False),
        sa.Column("renewable", sa.Boolean, nullable=False),
        sa.Column("state", _WORD, nullable=False),
        sa.Column("ended_at", _MICROS, nullable=True),
        sa.Column("released", sa.Boolean, nullable=False),
    )
    op.create_index("ix_leases_task_id", "leases", ["task_id"])
    op.create_index("ix_leases_state_expires_at", "leases", ["state", "expires_at"])
    op.create_index("ix_leases_released", "leases", ["released", "state"])
    set_schema_version(4)


def downgrade() -> None:
    forward_only()
