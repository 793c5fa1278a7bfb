"""Budget holds and task progress in SQL, run inside the store's write transaction.

"Check the sum, then insert the hold" runs with the rows of the tasks it charges locked
(:func:`lock_tasks`, taken by the caller before the first check of its transaction), so it
cannot race another reservation: concurrent calls on one task (on any replica, whatever audit
partition each appends to) can never overspend. On SQLite the database's one write lock does it.

A limit's consumption is the sum over its holds of the settled amount, or the reserved amount
while unsettled. A hold whose effect came back above its reservation closes that budget.

A hold with a ``step`` counts against that declared-workflow step's limit of its task, never
against the task's own limit (whose holds have no step): the same call writes both. A step's
``calls_per_minute`` is counted from its holds of that kind, dated by their decisions.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, Connection, and_, case, func, insert, select, update

from tether.core.budget import BudgetKind, Hold, Limit, Usage, budget_name
from tether.core.effect import Effect
from tether.core.errors import BudgetExceeded
from tether.core.verdict import Decision
from tether.service.ports import BudgetCharge, TaskProgress
from tether.store.schema import budget_holds, decisions, tasks


def charged_tasks(charge: BudgetCharge | None, progress: Sequence[TaskProgress]) -> set[str]:
    """The tasks whose rows a decision's reservation and progress must hold locked."""
    ids: set[str] = {p.task_id for p in progress}
    if charge is not None:
        ids |= {h.task_id for h in charge.holds}
        if charge.rate is not None:
            ids.add(charge.rate[0])
        if charge.step_rate is not None:
            ids.add(charge.step_rate[0])
    return ids


def lock_tasks(conn: Connection, task_ids: set[str]) -> None:
    """Lock these tasks' rows until the commit, in task id order (every writer takes them in
    the same order, so two never deadlock on them). PostgreSQL only: SQLite's write
    transaction already holds the whole database."""
    if not task_ids or conn.dialect.name != "postgresql":
        return
    conn.execute(
        select(tasks.c.task_id)
        .where(tasks.c.task_id.in_(sorted(task_ids)))
        .order_by(tasks.c.task_id)
        .with_for_update()
    ).all()


def _usage(conn: Connection, hold: Hold, limit: float) -> Usage:
    consumed = case(
        (budget_holds.c.settled.is_(None), budget_holds.c.amount),
        else_=budget_holds.c.settled,
    )
    row = conn.execute(
        select(
            func.coalesce(func.sum(consumed), 0.0),
            func.max(case((budget_holds.c.over, 1), else_=0)),
        ).where(
            budget_holds.c.task_id == hold.task_id,
            budget_holds.c.kind == hold.kind.value,
            budget_holds.c.classification == hold.classification,
            _of_step(hold.step),
        )
    ).one()
    return Usage(
        Limit(hold.kind, hold.classification, limit),
        used=float(row[0] or 0.0),
        reserved=0.0,
        closed=bool(row[1]),
        step=hold.step,
    )


def _of_step(step: str | None) -> ColumnElement[bool]:
    if step is None:
        return budget_holds.c.step.is_(None)
    return budget_holds.c.step == step


def reserve(conn: Connection, decision_id: str, charge: BudgetCharge) -> None:
    """Check every hold against its limit and insert them all, or raise and insert none.
    The caller holds :func:`lock_tasks` of :func:`charged_tasks` (see the module docstring)."""
    if charge.rate is not None:
        task_id, rate_limit, since = charge.rate
        count = conn.execute(
            select(func.count())
            .select_from(decisions)
            .where(
                decisions.c.task_id == task_id,
                decisions.c.decision == Decision.ALLOW.value,
                decisions.c.decided_at >= since,
            )
        ).scalar_one()
        if count >= rate_limit:
            raise BudgetExceeded(
                f"the calls_per_minute budget would be exceeded: {count} calls allowed in the "
                f"last minute, limit {int(rate_limit)}"
            )
    if charge.step_rate is not None:
        task_id, step, rate_limit, since = charge.step_rate
        count = conn.execute(
            select(func.count())
            .select_from(
                budget_holds.join(decisions, decisions.c.decision_id == budget_holds.c.decision_id)
            )
            .where(
                budget_holds.c.task_id == task_id,
                budget_holds.c.step == step,
                budget_holds.c.kind == BudgetKind.CALLS_PER_MINUTE.value,
                decisions.c.decided_at >= since,
            )
        ).scalar_one()
        if count >= rate_limit:
            raise BudgetExceeded(
                f"the {budget_name(BudgetKind.CALLS_PER_MINUTE.value, step)} would be "
                f"exceeded: {count} calls allowed in the last minute, limit {int(rate_limit)}"
            )
    for hold in charge.holds:
        limit = charge.limits.get(hold.key)
        if limit is None:
            continue
        problem = _usage(conn, hold, limit).refusal(hold.amount)
        if problem is not None:
            owner = "" if hold.task_id == charge.holds[0].task_id else f" (task {hold.task_id})"
            raise BudgetExceeded(problem + owner)
    if charge.holds:
        conn.execute(
            insert(budget_holds),
            [
                {
                    "decision_id": decision_id,
                    "task_id": h.task_id,
                    "kind": h.kind.value,
                    "classification": h.classification,
                    "amount": h.amount,
                    "settled": None,
                    "over": False,
                    "step": h.step,
                }
                for h in charge.holds
            ],
        )


def settle(conn: Connection, effect: Effect) -> None:
    """Replace each of the decision's holds by what the effect reports it really took."""
    for kind, actual in (
        (BudgetKind.RECORDS, effect.records),
        (BudgetKind.BYTES, effect.bytes),
    ):
        condition = and_(
            budget_holds.c.decision_id == effect.decision_id,
            budget_holds.c.kind == kind.value,
        )
        if actual is None:
            # Nothing reported: the whole reservation counts as taken (fail closed).
            conn.execute(
                update(budget_holds).where(condition).values(settled=budget_holds.c.amount)
            )
            continue
        conn.execute(
            update(budget_holds)
            .where(condition)
            .values(settled=float(actual), over=budget_holds.c.amount < float(actual))
        )
    conn.execute(
        update(budget_holds)
        .where(
            budget_holds.c.decision_id == effect.decision_id,
            budget_holds.c.kind == BudgetKind.SPEND.value,
        )
        .values(settled=budget_holds.c.amount)
    )


def holds_of(conn: Connection, decision_id: str) -> Sequence[tuple[Hold, float | None]]:
    rows = conn.execute(select(budget_holds).where(budget_holds.c.decision_id == decision_id)).all()
    return [
        (
            Hold(r.task_id, BudgetKind(r.kind), r.classification, float(r.amount), r.step),
            None if r.settled is None else float(r.settled),
        )
        for r in rows
    ]


def apply_progress(conn: Connection, progress: TaskProgress) -> None:
    values: dict[str, str | None] = {"label": progress.label}
    if progress.moves_step:
        values["workflow_step"] = progress.workflow_step
    conn.execute(update(tasks).where(tasks.c.task_id == progress.task_id).values(**values))
