"""observations: argument provenance, the keyed HMACs of values a task saw (schema version 7)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tether.store.migrations import forward_only, set_schema_version

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "observations",
        sa.Column("task_id", sa.String(64), primary_key=True),
        # "" marks a source part of whose result went unscanned.
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("tool", sa.String(256), primary_key=True),
        sa.Column("dataset", sa.String(256), primary_key=True),  # "" when none
        sa.Column("trust", sa.String(32), primary_key=True),
        sa.Column("observed_at", sa.BigInteger, nullable=False),  # UtcMicros
    )
    set_schema_version(7)


def downgrade() -> None:
    forward_only()
