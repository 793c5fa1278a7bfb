"""gateway_events: a remote gateway's event recorded once (schema version 11).

A remote MCP gateway (``tether mcp-gateway --pdp-url``) posts its own audit records to
``POST /v1/gateway/events`` through an outbox that retries when it gets no answer. A post whose
answer was lost was recorded all the same, and its retry was recorded again. Each event now
carries an id the gateway chose (``gev_…``), kept with its outbox entry across retries; this
table keys the record it became on ``(gateway, event_id)``, so a second post of the same id
inserts nothing and is refused (``409 event_replayed``), on every replica at once.

Nothing is ever deleted (the runtime role has ``SELECT, INSERT`` here, as on ``audit``): an id
is remembered as long as the record it names, so there is no replay window to bound.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tether.store.migrations import forward_only, set_schema_version

revision = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "gateway_events",
        sa.Column("gateway", sa.Text, nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("gateway", "event_id", name="gateway_events_pkey"),
    )
    set_schema_version(11)


def downgrade() -> None:
    forward_only()
