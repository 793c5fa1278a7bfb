"""audit partitions: one hash chain per writer, checkpoints over every head (schema version 10).

Until now every write of every replica appended to one chain under one locked head row, so
replicas added no decision throughput. From here the log is partitioned
(:mod:`tether.core.audit`): ``audit`` is keyed by ``(partition_id, seq)`` and ``audit_head`` has a
row per partition (keyed by ``partition_id``, created by the partition's first write: the runtime
role now needs ``INSERT`` on it). The existing chain becomes the *legacy partition* ``'0'``: its
records keep their seq, links and hashes (a record of partition ``'0'`` hashes without a
partition member), and the head row ``id = 1`` becomes partition ``'0'``'s.

``audit_checkpoints.partitions`` holds, for a checkpoint of every partition, the signed list of
(partition, size, head, root); it is empty for the checkpoints signed before, which cover the
legacy partition alone and keep verifying as they did.

On PostgreSQL the tables are altered in place (the runtime role's grants stay); SQLite cannot
change a primary key, so there each table is rebuilt and its rows copied.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tether.store.migrations import forward_only, set_schema_version

revision = "0010"
# Follows provcost's 0009 once both are merged; until then it follows 0008.
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_PARTITION = sa.String(64)
_LEGACY = "'0'"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _alter_postgres()
    else:
        _rebuild_sqlite()
    op.add_column(
        "audit_checkpoints",
        sa.Column("partitions", sa.Text, nullable=False, server_default=sa.text("''")),
    )
    set_schema_version(10)


def _alter_postgres() -> None:
    for table, key in (("audit", "partition_id, seq"), ("audit_head", "partition_id")):
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN partition_id VARCHAR(64) NOT NULL DEFAULT {_LEGACY}"
        )
        op.execute(f"ALTER TABLE {table} ALTER COLUMN partition_id DROP DEFAULT")
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey")
        if table == "audit_head":
            op.execute("DELETE FROM audit_head WHERE id <> 1")  # only row 1 was ever used
            op.execute("ALTER TABLE audit_head DROP COLUMN id")
        op.execute(f"ALTER TABLE {table} ADD PRIMARY KEY ({key})")


def _rebuild_sqlite() -> None:
    op.execute("ALTER TABLE audit RENAME TO audit_before_partitions")
    op.create_table(
        "audit",
        sa.Column("seq", _SEQ, nullable=False, autoincrement=False),
        sa.Column("record_id", sa.String(64), nullable=False, unique=True),
        sa.Column("at", sa.Text, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("agent", sa.Text, nullable=True),
        sa.Column("task_id", sa.String(64), nullable=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("partition_id", _PARTITION, nullable=False),
        sa.PrimaryKeyConstraint("partition_id", "seq"),
    )
    op.execute(
        "INSERT INTO audit (seq, record_id, at, kind, agent, task_id, body, prev_hash, hash, "
        "partition_id) SELECT seq, record_id, at, kind, agent, task_id, body, prev_hash, hash, "
        "'0' FROM audit_before_partitions ORDER BY seq"
    )
    op.execute("DROP TABLE audit_before_partitions")
    op.execute("ALTER TABLE audit_head RENAME TO audit_head_before_partitions")
    op.create_table(
        "audit_head",
        sa.Column("seq", _SEQ, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("partition_id", _PARTITION, nullable=False),
        sa.PrimaryKeyConstraint("partition_id"),
    )
    op.execute(
        "INSERT INTO audit_head (seq, hash, partition_id) "
        "SELECT seq, hash, '0' FROM audit_head_before_partitions WHERE id = 1"
    )
    op.execute("DROP TABLE audit_head_before_partitions")


def downgrade() -> None:
    forward_only()
