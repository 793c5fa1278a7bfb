"""tether's schema migrations: Alembic revisions, applied by :mod:`tether.store.migrate`.

``versions/`` holds one revision per schema change, oldest first, each written by hand in
SQLAlchemy Core and ``alembic.op`` terms that run on SQLite and PostgreSQL alike. ``env.py`` runs
them on the connection :mod:`tether.store.migrate` passes in ``config.attributes["connection"]``,
inside the transaction that serializes replicas starting at once; nothing here opens its own.

Adding a change to the schema:

1. Change the tables in :mod:`tether.store.schema` (the declaration the code queries with) and
   set :data:`~tether.store.schema.SCHEMA_REVISION` to the new revision.
2. Add ``versions/rNNNN_what.py`` with ``revision = "NNNN"`` (the next number) and
   ``down_revision`` the previous one. Its ``upgrade()`` makes the change. When the change is
   to tables or columns, it also bumps :data:`~tether.store.schema.SCHEMA_VERSION` by one and
   calls :func:`set_schema_version` with it: tethers from before Alembic read only that number,
   and must refuse the database. An index alone leaves the number as it is.
3. Spell types out as they are stored (``BigInteger`` for ``UtcMicros``, ``Text`` for
   ``JsonText``) instead of importing them: a revision is frozen, the live schema moves on.
   Name every index and constraint.
4. Alter an existing table inside ``with op.batch_alter_table(name) as batch:``. SQLite cannot
   alter most of a table in place; batch mode copies it there and is a plain ``ALTER`` on
   PostgreSQL.
5. ``tests/store/test_migrations.py`` then checks, on both backends, that the revisions produce
   exactly the declared schema.

Revisions go forward only: ``downgrade()`` refuses. Going back would drop audit history; restore
a backup instead.
"""

from __future__ import annotations

from typing import NoReturn

import sqlalchemy as sa
from alembic import op

SCHEMA_VERSION_KEY = "schema_version"

_META = sa.table("tether_meta", sa.column("key", sa.String), sa.column("value", sa.Text))


def set_schema_version(version: int) -> None:
    """Record ``version`` in ``tether_meta``, where tethers from before Alembic look for it."""
    op.execute(_META.update().where(_META.c.key == SCHEMA_VERSION_KEY).values(value=str(version)))


def forward_only() -> NoReturn:
    raise NotImplementedError(
        "tether's schema migrations go forward only (going back would drop audit history); "
        "restore a backup taken before the upgrade instead"
    )


__all__ = ["SCHEMA_VERSION_KEY", "forward_only", "set_schema_version"]
