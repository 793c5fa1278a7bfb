"""What the decision reads and writes about a task's flow: the workflows and egress rules in
force, a task's delegation chain, the workflow's anomaly signal on reads, and the budget holds
an allowed call reserves (the rules themselves are pure, in :mod:`tether.core.decide`).

A delegation chain (a task and every task it was delegated from, the caller's own first) acts as
one: every task of it pays the budget holds of a delegate's call, and a workflow step's budget
is held on the root, whose step it is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tether.core.anomaly import Volume
from tether.core.budget import ANY, BudgetKind, Budgets, Hold, ReadFloors, holds_for
from tether.core.call import Call
from tether.core.dataflow import EgressRules
from tether.core.decide import SPEND_ARGUMENT, step_budgets
from tether.core.scope import ActionKind, Classification
from tether.core.task import Task
from tether.core.verdict import Reason
from tether.core.workflow import Workflow
from tether.service.anomaly import AnomalySignal
from tether.service.ports import BudgetCharge, TaskStore


@dataclass(frozen=True, slots=True)
class Expect:
    """What a read call declares it may take, for its budget reservation."""

    records: int | None = None
    bytes: int | None = None


@dataclass(frozen=True, slots=True)
class FlowSettings:
    #: The fewest records a read reserves against a records budget, whatever it declares.
    read_floors: ReadFloors = field(default_factory=ReadFloors)
    #: What a read that declares no bytes reserves against a bytes budget.
    default_expected_bytes: int = 1_000_000


class Flows:
    def __init__(
        self,
        *,
        store: TaskStore,
        workflows: Mapping[str, Workflow],
        egress: EgressRules,
        settings: FlowSettings,
        anomaly: AnomalySignal | None = None,
    ) -> None:
        self._store = store
        self.workflows = dict(workflows)
        self.egress = egress
        self._settings = settings
        self._anomaly = anomaly

    # -- anomaly ---------------------------------------------------------------------------

    def anomaly(self, task: Task, call: Call, expect: Expect | None) -> Reason | None:
        """``ANOMALOUS_VOLUME`` when this read takes the task past its workflow's baseline.

        Only reads of a task whose declared workflow has an ``anomaly`` rule are judged; the
        call counts with what it declares (``expect``), nothing when it declares nothing.
        """
        if self._anomaly is None or call.action is not ActionKind.READ:
            return None
        flow = self.workflows.get(task.intent.workflow)
        if flow is None or flow.anomaly is None:
            return None
        declared = (
            Volume(expect.records or 0, expect.bytes or 0) if expect is not None else Volume()
        )
        return self._anomaly.check(task, flow.anomaly, declared)

    # -- budgets ---------------------------------------------------------------------------

    def charge(
        self,
        chain: Sequence[Task],
        call: Call,
        classification: Classification | None,
        expect: Expect | None,
        now: datetime,
        step: str | None = None,
    ) -> BudgetCharge | None:
        """The holds this call reserves: against its task's limits and every ancestor's, and
        against the limits of the workflow ``step`` it takes (held on the chain's root, whose
        step it is)."""
        task, root = chain[0], chain[-1]
        step_budgets = self._step_budgets(root, step)
        if not any(t.budgets.limits for t in chain) and not step_budgets.limits:
            return None
        records = bytes_ = spend = None
        if call.action is ActionKind.READ:
            # INVARIANT: a read reserves at least its floor: what an agent declares can raise
            # its reservation, never lower it below what every read costs until settled.
            floor = self._settings.read_floors.records_for(call.tool, call.dataset)
            declared = expect.records if expect and expect.records is not None else 0
            records = float(max(declared, floor))
            bytes_ = float(
                expect.bytes
                if expect and expect.bytes is not None
                else self._settings.default_expected_bytes
            )
        if call.action is ActionKind.SPEND:
            amount = call.args.get(SPEND_ARGUMENT)
            if isinstance(amount, int | float) and not isinstance(amount, bool):
                # budget_argument() denied anything else before a spend budget is charged.
                spend = float(amount) if math.isfinite(amount) else math.inf

        def holds_of(task_ids: list[str], in_step: str | None = None) -> list[Hold]:
            return holds_for(
                Budgets(),
                task_ids,
                classification=classification,
                records=records,
                bytes_=bytes_,
                spend=spend,
                step=in_step,
            )

        holds = holds_of([t.task_id for t in chain])
        limits: dict[tuple[str, str, str, str], float] = {}
        for t in chain:
            for limit in t.budgets.limits:
                limits[(t.task_id, "", limit.kind.value, limit.classification)] = limit.amount
        if step is not None and step_budgets.limits:
            holds += holds_of([root.task_id], step)
            for limit in step_budgets.limits:
                if limit.kind is not BudgetKind.CALLS_PER_MINUTE:
                    key = (root.task_id, step, limit.kind.value, limit.classification)
                    limits[key] = limit.amount
        # Only holds that meet a limit somewhere need writing.
        kept = [h for h in holds if h.key in limits]
        rate_limit = task.budgets.get(BudgetKind.CALLS_PER_MINUTE, ANY)
        since = now - timedelta(seconds=60)
        rate = (task.task_id, rate_limit.amount, since) if rate_limit is not None else None
        step_rate = None
        step_rate_limit = step_budgets.get(BudgetKind.CALLS_PER_MINUTE, ANY)
        if step is not None and step_rate_limit is not None:
            # The call itself is the count: one calls_per_minute hold of the step per call.
            kept.append(Hold(root.task_id, BudgetKind.CALLS_PER_MINUTE, ANY, 1.0, step))
            step_rate = (root.task_id, step, step_rate_limit.amount, since)
        if not kept and rate is None:
            return None
        return BudgetCharge(holds=tuple(kept), limits=limits, rate=rate, step_rate=step_rate)

    def _step_budgets(self, task: Task, step: str | None) -> Budgets:
        """The limits of ``step`` of the task's declared workflow (empty when none)."""
        return step_budgets(self.workflows.get(task.intent.workflow), step)

    def chain(self, task: Task) -> list[Task]:
        """The task and every task it was delegated from, the root last."""
        chain = [task]
        current = task
        while current.parent_task_id is not None and len(chain) < 16:
            parent = self._store.get_task(current.parent_task_id)
            if parent is None:
                break
            chain.append(parent)
            current = parent
        return chain
