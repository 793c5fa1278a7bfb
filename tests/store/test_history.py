"""The anomaly signal's history queries (``tether.store.history``), on every backend."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from tether.core.anomaly import Volume
from tether.core.audit import AuditKind
from tether.core.ids import TaskId
from tether.core.task import Intent, TaskState
from tether.service.ports import DecisionWrite
from tether.store import SqlStore

from .conftest import T0, Make


def _task_that_read(
    store: SqlStore,
    make: Make,
    reads: list[tuple[int | None, int | None]],
    *,
    workflow: str = "refund",
    end: TaskState | None = TaskState.CLOSED,
    ended_after: float = 10,
) -> TaskId:
    task, grant = make.task()
    task = replace(task, intent=Intent(workflow, "p", "user:alice"))
    store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))
    for records, bytes_ in reads:
        decision = make.decision(task, grant)
        store.record_decision(DecisionWrite(decision, make.entry()))
        effect = replace(make.effect(decision), records=records, bytes=bytes_)
        store.record_effect(effect, make.entry(AuditKind.EFFECT))
    if end is not None:
        at = T0 + timedelta(seconds=ended_after)
        store.end_task(task.task_id, end, at, make.entry(AuditKind.TASK_CLOSED))
    return TaskId(task.task_id)


def test_volumes_of_ended_tasks_of_one_workflow_newest_first(store: SqlStore, make: Make) -> None:
    _task_that_read(store, make, [(3, 100), (4, None)], ended_after=10)
    _task_that_read(store, make, [(None, None)], ended_after=20)  # reported nothing: 0
    _task_that_read(store, make, [], end=TaskState.EXPIRED, ended_after=30)
    _task_that_read(store, make, [(1000, 1)], end=TaskState.REVOKED, ended_after=40)
    _task_that_read(store, make, [(500, 1)], end=None)  # still open
    _task_that_read(store, make, [(9, 9)], workflow="refunds-v2", ended_after=50)
    assert store.ended_task_volumes("refund", 100) == [
        Volume(0, 0),  # expired at +30
        Volume(0, 0),  # closed at +20
        Volume(7, 100),  # closed at +10
    ]
    assert store.ended_task_volumes("refund", 1) == [Volume(0, 0)]
    assert store.ended_task_volumes("refunds-v2", 100) == [Volume(9, 9)]
    assert store.ended_task_volumes("Refund", 100) == []  # names are compared exactly
    assert store.ended_task_volumes("%", 100) == []  # and never as patterns


def test_a_tasks_volume_so_far(store: SqlStore, make: Make) -> None:
    task_id = _task_that_read(store, make, [(3, 100), (4, None), (None, 5)], end=None)
    assert store.task_volume(task_id) == Volume(7, 105)
    assert store.task_volume(TaskId("tsk_" + "0" * 26)) == Volume(0, 0)
