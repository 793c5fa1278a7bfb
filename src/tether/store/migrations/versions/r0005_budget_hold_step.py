"""budget holds per workflow step (schema version 5).

A declared workflow's step may carry budgets; a call in that step writes holds that count
against the step's limits as well as the task's. ``step`` names the step; NULL for the holds
against the task's own limits, which every existing row is.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tether.store.migrations import forward_only, set_schema_version

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("budget_holds") as batch:
        batch.add_column(sa.Column("step", sa.String(64), nullable=True))
    set_schema_version(5)


def downgrade() -> None:
    forward_only()
