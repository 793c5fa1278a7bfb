"""tasks.provenance_secret: each task's fingerprints under a key of its own (schema version 9).

Argument provenance keeps the values a task saw as keyed HMACs. Under one master key for every
task, anyone holding the key file and a copy of the database could test a guessed value against
any task, ever. Now each task's key is derived from the master key and a random secret on the
task's row (:func:`tether.core.provenance.task_key`), and ending the task sets the secret to
NULL (an UPDATE, which the runtime role may do; it has no DELETE): its fingerprints then match
no value anyone can compute again.

Existing rows, decided here:

- An open task keeps the master key until it ends: its secret is ``''`` (empty), which
  :func:`~tether.core.provenance.task_key` reads as "the master key", so what it observed
  before the upgrade still counts. Its rows stay testable with the master key after it ends.
- The rows of tasks that have already ended are deleted. They were made under the master key
  alone, so only deleting them shreds them, no decision reads them again (a call on an ended
  task is refused), and this migration runs as the schema's owner, which may delete.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tether.store.migrations import forward_only, set_schema_version

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

_TASKS = sa.table(
    "tasks",
    sa.column("task_id", sa.String),
    sa.column("state", sa.String),
    sa.column("provenance_secret", sa.String),
)
_OBSERVATIONS = sa.table("observations", sa.column("task_id", sa.String))


def upgrade() -> None:
    op.add_column("tasks", sa.Column("provenance_secret", sa.String(64), nullable=True))
    op.execute(_TASKS.update().where(_TASKS.c.state == "open").values(provenance_secret=""))
    ended = sa.select(_TASKS.c.task_id).where(_TASKS.c.state != "open")
    op.execute(_OBSERVATIONS.delete().where(_OBSERVATIONS.c.task_id.in_(ended)))
    set_schema_version(9)


def downgrade() -> None:
    forward_only()
