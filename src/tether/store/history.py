"""What tasks have read, in SQL: the history the anomaly signal draws its baseline from.

A task's volume is the sum of the records and bytes its reported effects say it read (an effect
that reports neither counts 0). The history of a workflow is the volume of each of its most
recently ended tasks: ``closed`` by their agent or ``expired``; ``revoked`` tasks (the kill
switch, a cascade from their parent) are left out, since they are not how the workflow normally
runs. The workflow is read from the task's intent (JSON text) with the backend's own JSON
function, as one query: the newest ``limit`` tasks, then their effects.

These are read-only queries; :class:`tether.store.sql.SqlStore` runs them on a pooled connection.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import JSON, ColumnElement, Connection, cast, func, select, type_coerce

from tether.core.anomaly import Volume
from tether.core.task import TaskState
from tether.store.schema import decisions, effects, tasks

ENDED: Final = (TaskState.CLOSED.value, TaskState.EXPIRED.value)


def _workflow(dialect: str) -> ColumnElement[str]:
    """``intent.workflow`` of a task row, extracted in SQL."""
    document: ColumnElement[object] = (
        type_coerce(tasks.c.intent, JSON)  # SQLite's json_extract reads the text as it is
        if dialect == "sqlite"
        else cast(tasks.c.intent, JSON)  # PostgreSQL: the text becomes json first
    )
    workflow: ColumnElement[str] = document["workflow"].as_string()
    return workflow


def ended_task_volumes(conn: Connection, workflow: str, limit: int) -> list[Volume]:
    """One :class:`Volume` per task, for the ``limit`` most recently ended tasks of
    ``workflow``, newest first.

    One statement, so one snapshot: the tasks, left-joined to the sums of their effects. The
    sums read only decisions whose task is among them (``IN``), so the decisions are read once,
    where joining them from each task would read them once per task (no index on their task).
    """
    recent = (
        select(tasks.c.task_id, tasks.c.ended_at)
        .where(tasks.c.state.in_(ENDED), _workflow(conn.dialect.name) == workflow)
        .order_by(tasks.c.ended_at.desc(), tasks.c.task_id)
        .limit(limit)
    )
    chosen = recent.subquery()
    sums = (
        select(
            decisions.c.task_id,
            func.sum(effects.c.records).label("records"),
            func.sum(effects.c.bytes).label("bytes"),
        )
        .select_from(decisions.join(effects, effects.c.decision_id == decisions.c.decision_id))
        .where(decisions.c.task_id.in_(select(recent.subquery().c.task_id)))
        .group_by(decisions.c.task_id)
        .subquery()
    )
    rows = conn.execute(
        select(
            func.coalesce(sums.c.records, 0),
            func.coalesce(sums.c.bytes, 0),
        )
        .select_from(chosen.outerjoin(sums, sums.c.task_id == chosen.c.task_id))
        .order_by(chosen.c.ended_at.desc(), chosen.c.task_id)
    ).all()
    return [Volume(int(r[0]), int(r[1])) for r in rows]


def task_volume(conn: Connection, task_id: str) -> Volume:
    """What one task has read so far, by its reported effects."""
    row = conn.execute(
        select(
            func.coalesce(func.sum(effects.c.records), 0),
            func.coalesce(func.sum(effects.c.bytes), 0),
        )
        .select_from(decisions.join(effects, effects.c.decision_id == decisions.c.decision_id))
        .where(decisions.c.task_id == task_id)
    ).one()
    return Volume(int(row[0]), int(row[1]))
