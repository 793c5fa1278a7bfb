"""Alembic's environment for tether's revisions (see :mod:`tether.store.migrations`).

Runs online only, on the connection the caller put in ``config.attributes["connection"]`` and
inside the transaction the caller already began: the revisions, the stamp in the version table and
whatever else the caller does in that transaction commit together or not at all. The caller holds
that transaction serialized across replicas (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on
PostgreSQL), so one replica migrates while the others wait.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from tether.store.migrate import VERSION_TABLE
from tether.store.schema import metadata


def _run() -> None:
    if context.is_offline_mode():
        raise RuntimeError("tether's migrations run against a database, not as SQL text")
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "tether's migrations need config.attributes['connection']: run them with "
            "`tether db upgrade` (tether.store.migrate)"
        )
    # INVARIANT: the caller's transaction (serialized across replicas) is already open.
    if not connection.in_transaction():
        raise RuntimeError("tether's migrations run inside the caller's serialized transaction")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite alters a table by copying it: drafts made with autogenerate use batch mode.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    # A no-op transaction here: alembic sees the caller's and leaves it to the caller.
    with context.begin_transaction():
        context.run_migrations()


_run()
