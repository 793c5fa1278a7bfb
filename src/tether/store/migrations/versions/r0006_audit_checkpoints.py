"""audit checkpoints and the chain format (schema version 6).

``audit_checkpoints`` holds the signed checkpoints of the audit log (:mod:`tether.core.checkpoint`).
``tether_meta.audit_chain_format`` records how the chain hashes its records, fixed for the
chain's life: ``1`` (sorted-key JSON) for a database that already holds records, so their hashes
stay as they are; ``2`` (RFC 8785) for a chain that has not begun.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tether.store.migrations import forward_only, set_schema_version

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

CHAIN_FORMAT_KEY = "audit_chain_format"

_META = sa.table("tether_meta", sa.column("key", sa.String), sa.column("value", sa.Text))
_AUDIT = sa.table("audit", sa.column("seq", sa.BigInteger))


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column(
            "size",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("format", sa.Integer, nullable=False),
        sa.Column("root", sa.String(64), nullable=False),
        sa.Column("head", sa.String(64), nullable=False),
        sa.Column("at", sa.Text, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.Text, nullable=False),
        sa.Column("frontier", sa.Text, nullable=False),
    )
    begun = op.get_bind().execute(sa.select(_AUDIT.c.seq).limit(1)).first() is not None
    op.execute(_META.insert().values(key=CHAIN_FORMAT_KEY, value="1" if begun else "2"))
    set_schema_version(6)


def downgrade() -> None:
    forward_only()
