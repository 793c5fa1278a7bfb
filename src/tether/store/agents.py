"""The kill switch in SQL: revoke an agent, ending every open task it holds (and every task
delegated from them) in the same transaction as the audit record that says so.

Rows are never deleted (the runtime role has no DELETE): restoring an agent clears ``active``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from tether.core.task import TaskState
from tether.store.schema import revoked_agents, tasks


def listed(conn: Connection, agent: str) -> bool:
    row = conn.execute(
        select(revoked_agents.c.active).where(revoked_agents.c.agent == agent)
    ).first()
    return row is not None and bool(row[0])


def mark(conn: Connection, agent: str, at: datetime, reason: str, by: str) -> None:
    """List ``agent`` as revoked, or list it again. One statement (an upsert), so two replicas
    revoking it at once (each appending to its own audit partition) both succeed."""
    values = {"revoked_at": at, "reason": reason, "revoked_by": by, "active": True}
    dialect = pg_dialect if conn.dialect.name == "postgresql" else sqlite_dialect
    upsert = dialect.insert(revoked_agents).values(agent=agent, **values)
    conn.execute(upsert.on_conflict_do_update(index_elements=["agent"], set_=values))


def unmark(conn: Connection, agent: str) -> bool:
    result = conn.execute(
        update(revoked_agents)
        .where(revoked_agents.c.agent == agent, revoked_agents.c.active.is_(True))
        .values(active=False)
    )
    return bool(result.rowcount)


def open_task_ids(conn: Connection, agent: str) -> list[str]:
    rows = conn.execute(
        select(tasks.c.task_id).where(tasks.c.agent == agent, tasks.c.state == TaskState.OPEN.value)
    ).all()
    return [str(r[0]) for r in rows]


def all_listed(conn: Connection) -> list[tuple[str, datetime, str, str]]:
    rows = conn.execute(
        select(revoked_agents)
        .where(revoked_agents.c.active.is_(True))
        .order_by(revoked_agents.c.revoked_at)
    ).all()
    return [(r.agent, r.revoked_at, r.reason, r.revoked_by) for r in rows]
