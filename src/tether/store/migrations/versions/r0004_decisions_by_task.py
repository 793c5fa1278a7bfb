"""decisions indexed by task (still schema version 4).

A task's activity and its volume so far are read on every call. A database that a tether from
before Alembic made at version 4 may have this index already, hence ``if_not_exists``.
"""

from __future__ import annotations

from alembic import op

from tether.store.migrations import forward_only

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_decisions_task_id", "decisions", ["task_id"], if_not_exists=True)


def downgrade() -> None:
    forward_only()
