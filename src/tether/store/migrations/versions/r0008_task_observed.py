"""tasks.observed: how many observations were recorded for each task (schema version 8).

Argument provenance keeps each delegation chain's observations in memory between decisions and
reuses them while the chain's tasks say nothing new was observed. The counter is raised in the
same transaction as the observation's rows, and read with the task (the read every decision
already makes), so a decision needs no extra read to know whether its copy is current.
Existing tasks start at 0: a process reads their observations once, then follows the counter.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tether.store.migrations import forward_only, set_schema_version

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # ALTER TABLE ADD COLUMN on both backends (SQLite accepts NOT NULL with a default).
    op.add_column(
        "tasks", sa.Column("observed", sa.BigInteger, nullable=False, server_default=sa.text("0"))
    )
    set_schema_version(8)


def downgrade() -> None:
    forward_only()
