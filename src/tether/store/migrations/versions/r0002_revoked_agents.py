"""revoked_agents: the kill switch's table (still schema version 3).

It came without a version bump: tether then created missing tables on every start. A database an
older tether made at version 3 is stamped here when it has this table, at ``0001`` when not.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tether.store.migrations import forward_only

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "revoked_agents",
        sa.Column("agent", sa.String(2048), primary_key=True),
        sa.Column("revoked_at", sa.BigInteger, nullable=False),  # UtcMicros
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("revoked_by", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
    )


def downgrade() -> None:
    forward_only()
