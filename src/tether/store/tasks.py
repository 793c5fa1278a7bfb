"""Tasks and their grants in SQL: the statements, and ending a task with everything it holds.

Ending a task (closed, expired, revoked) ends, in the caller's write transaction: its grants,
its leases, its pending approvals and break-glass requests, and every task delegated from it at
any depth, each with its audit record, and wipes its provenance secret (what it observed can
no longer be linked to a value). Revoking an agent (the kill switch) lists it and ends every
open task it holds the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Final

from sqlalchemy import Integer, bindparam, insert, select, update

from tether.core.ids import TaskId
from tether.core.lease import Lease, LeaseState
from tether.core.scope import JSONValue
from tether.core.task import GrantState, Task, TaskState
from tether.service.ports import AuditEntry
from tether.store import agents as agents_sql
from tether.store import approvals as approvals_sql
from tether.store import breakglass_rows, codec
from tether.store import budgets as budgets_sql
from tether.store import leases as leases_sql
from tether.store.db import Writer
from tether.store.schema import UtcMicros, grants, tasks

INSERT_TASK: Final = insert(tasks)
INSERT_GRANT: Final = insert(grants)
SELECT_TASK: Final = select(tasks).where(tasks.c.task_id == bindparam("b_id"))
SELECT_GRANT: Final = select(grants).where(grants.c.grant_id == bindparam("b_id"))
_END_TASK = (
    update(tasks)
    .where(tasks.c.task_id == bindparam("b_id"), tasks.c.state == TaskState.OPEN.value)
    # INVARIANT: a task's provenance secret ends with it: what it observed becomes unlinkable.
    .values(
        state=bindparam("b_state"),
        ended_at=bindparam("b_at", type_=UtcMicros()),
        provenance_secret=None,
    )
    .returning(*tasks.c)
)
_END_GRANTS = (
    update(grants)
    .where(grants.c.task_id == bindparam("b_id"), grants.c.state == GrantState.ACTIVE.value)
    .values(state=bindparam("b_state"))
)
EXPIRED_OPEN: Final = (
    select(tasks)
    .where(
        tasks.c.state == TaskState.OPEN.value,
        tasks.c.expires_at <= bindparam("b_now", type_=UtcMicros()),
    )
    .order_by(tasks.c.expires_at, tasks.c.task_id)
    .limit(bindparam("b_limit", type_=Integer()))
)


def end_in(
    tx: Writer,
    task_id: TaskId,
    state: TaskState,
    at: datetime,
    audit: AuditEntry,
    cascade: Callable[[Task], AuditEntry] | None,
) -> Task | None:
    """End the open task ``task_id`` in ``tx``, with everything it holds and every task delegated
    from it; ``None`` (nothing written) when it was not open."""
    grant_state = GrantState.EXPIRED if state is TaskState.EXPIRED else GrantState.REVOKED
    # The rows it will end, locked first in task id order, as a decision's batch locks the
    # tasks it charges (tether.store.budgets.lock_tasks): the two never deadlock.
    _lock_subtree(tx, [task_id])
    # INVARIANT: only an open task ends, once; ending it ends every grant it holds.
    row = tx.conn.execute(_END_TASK, {"b_id": task_id, "b_state": state.value, "b_at": at}).first()
    if row is None:
        return None  # not open (or unknown): nothing changed, no audit record
    tx.conn.execute(_END_GRANTS, {"b_id": task_id, "b_state": grant_state.value})
    # INVARIANT: a lease lives only while its task is open; the record ending the task
    # names the leases it ended.
    lease_state = LeaseState.EXPIRED if state is TaskState.EXPIRED else LeaseState.REVOKED
    ended_leases = leases_sql.end_active(tx.conn, [task_id], lease_state, at)
    tx.append(_naming(_naming_leases(audit, ended_leases), _end_requests(tx, task_id, at)))
    # INVARIANT: ending a task ends every task delegated from it, at any depth.
    child_state = TaskState.EXPIRED if state is TaskState.EXPIRED else TaskState.REVOKED
    frontier = [task_id]
    while frontier:
        children = tx.conn.execute(
            select(tasks.c.task_id).where(
                tasks.c.parent_task_id.in_(frontier),
                tasks.c.state == TaskState.OPEN.value,
            )
        ).all()
        frontier = []
        for (child_id,) in children:
            ended = tx.conn.execute(
                _END_TASK, {"b_id": child_id, "b_state": child_state.value, "b_at": at}
            ).first()
            if ended is None:
                continue
            tx.conn.execute(_END_GRANTS, {"b_id": child_id, "b_state": grant_state.value})
            child_leases = leases_sql.end_active(tx.conn, [child_id], lease_state, at)
            requests = _end_requests(tx, child_id, at)
            if cascade is not None:
                child = codec.task_from_row(ended._mapping)
                tx.append(_naming(_naming_leases(cascade(child), child_leases), requests))
            frontier.append(child_id)
    return codec.task_from_row(row._mapping)


def revoke(
    tx: Writer,
    agent: str,
    at: datetime,
    reason: str,
    by: str,
    audit: AuditEntry,
    end_audit: Callable[[Task], AuditEntry],
    cascade: Callable[[Task], AuditEntry],
) -> int:
    """List ``agent`` as revoked and end every open task it holds (and their delegates), in
    ``tx``; how many of its own tasks were ended."""
    agents_sql.mark(tx.conn, agent, at, reason, by)
    tx.append(audit)
    ended = 0
    own = agents_sql.open_task_ids(tx.conn, agent)
    _lock_subtree(tx, own)  # all at once, in one order
    for task_id in own:
        current = tx.conn.execute(SELECT_TASK, {"b_id": task_id}).first()
        if current is None:
            continue
        task = codec.task_from_row(current._mapping)
        if end_in(tx, TaskId(task_id), TaskState.REVOKED, at, end_audit(task), cascade):
            ended += 1
    return ended


def _lock_subtree(tx: Writer, roots: Sequence[str]) -> None:
    """Lock ``roots`` and their open delegates (PostgreSQL; SQLite's write lock has them all)."""
    if tx.conn.dialect.name == "postgresql":
        budgets_sql.lock_tasks(tx.conn, open_subtree(tx, roots))


def open_subtree(tx: Writer, roots: Sequence[str]) -> set[str]:
    """``roots`` and every open task delegated from them, at any depth."""
    found, frontier = set(roots), list(roots)
    while frontier:
        children = tx.conn.execute(
            select(tasks.c.task_id).where(
                tasks.c.parent_task_id.in_(frontier), tasks.c.state == TaskState.OPEN.value
            )
        ).all()
        frontier = [str(c) for (c,) in children if str(c) not in found]
        found.update(frontier)
    return found


def _end_requests(tx: Writer, task_id: str, at: datetime) -> dict[str, list[str]]:
    """End the approvals and break-glass requests of a task that just ended.

    # INVARIANT: nothing asked for a task outlives it: a human cannot approve, nor an agent use,
    # an approval or break-glass of an ended task.
    """
    return {
        "approvals_ended": approvals_sql.end_for_tasks(tx.conn, [task_id]),
        "breakglass_ended": breakglass_rows.end_for_tasks(tx.conn, [task_id], at),
    }


def _naming(entry: AuditEntry, ended: dict[str, list[str]]) -> AuditEntry:
    """``entry`` naming what ended with its task, when anything did."""
    named: dict[str, JSONValue] = {}
    for key, ids in ended.items():
        if ids:
            values: list[JSONValue] = list(ids)
            named[key] = values
    if not named:
        return entry
    return replace(entry, body={**entry.body, **named})


def _naming_leases(entry: AuditEntry, ended: Sequence[Lease]) -> AuditEntry:
    """``entry`` with the ids of the leases that ended with its task, when there are any."""
    if not ended:
        return entry
    return replace(entry, body={**entry.body, "leases_revoked": [x.lease_id for x in ended]})
