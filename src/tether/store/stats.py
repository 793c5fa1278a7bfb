"""Counts an operator's dashboard reads from the store: open tasks, pending approvals, budget use.

Read at scrape time (``GET /metrics``), so they are the store's truth at that moment, the same on
every replica and every worker that shares the database. Each count is one indexed query in one
read; none of them touches the audit chain or takes a write lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from sqlalchemy import bindparam, case, func, select

from tether.core.approval import ApprovalState
from tether.core.errors import ErrorCode
from tether.core.task import TaskState
from tether.store.schema import UtcMicros, approvals, budget_holds, tasks
from tether.store.sql import SqlStore

_NOW = bindparam("b_now", type_=UtcMicros())

_OPEN_TASKS = (
    select(tasks.c.task_id)
    .where(tasks.c.state == TaskState.OPEN.value, tasks.c.expires_at > _NOW)
    .scalar_subquery()
)

_COUNT_OPEN_TASKS = (
    select(func.count())
    .select_from(tasks)
    .where(tasks.c.state == TaskState.OPEN.value, tasks.c.expires_at > _NOW)
)

_COUNT_PENDING_APPROVALS = (
    select(func.count())
    .select_from(approvals)
    .where(approvals.c.state == ApprovalState.PENDING.value, approvals.c.expires_at > _NOW)
)

# A hold counts its settled amount once the effect came back, its reservation until then: the
# same rule the budget check itself applies (tether.store.budgets).
_BUDGET_USED = (
    select(
        budget_holds.c.kind,
        budget_holds.c.classification,
        func.coalesce(
            func.sum(
                case(
                    (budget_holds.c.settled.is_(None), budget_holds.c.amount),
                    else_=budget_holds.c.settled,
                )
            ),
            0.0,
        ),
    )
    # A workflow step's holds repeat the task's for the step's own limits: not counted twice.
    .where(budget_holds.c.task_id.in_(_OPEN_TASKS), budget_holds.c.step.is_(None))
    .group_by(budget_holds.c.kind, budget_holds.c.classification)
)


@dataclass(frozen=True, slots=True)
class StoreStats:
    #: Tasks open and not yet past their expiry (the reaper has not necessarily swept the rest).
    tasks_open: int
    #: Approvals waiting for a human, not yet expired.
    approvals_pending: int
    #: Budget consumed by the open tasks that have a limit on it, by budget kind (``records``,
    #: ``bytes``, ``spend``) and classification (``""`` for a limit on every classification).
    #: Only limited budgets are tracked, so a task without limits adds nothing.
    budget_used: Mapping[tuple[str, str], float]


def read_stats(store: SqlStore, now: datetime) -> StoreStats:
    """The counts at ``now``, in one read. Raises ``Unavailable`` like every store read."""
    with store.db.read(ErrorCode.STORE_UNAVAILABLE, "count open tasks and approvals") as conn:
        params = {"b_now": now}
        tasks_open = int(conn.execute(_COUNT_OPEN_TASKS, params).scalar_one())
        approvals_pending = int(conn.execute(_COUNT_PENDING_APPROVALS, params).scalar_one())
        used = {
            (str(kind), str(classification)): float(total)
            for kind, classification, total in conn.execute(_BUDGET_USED, params)
        }
    return StoreStats(tasks_open, approvals_pending, MappingProxyType(used))
