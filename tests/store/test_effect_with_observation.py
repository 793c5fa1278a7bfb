"""An effect written with its call's observation in one transaction (``SqlStore.record_effect``
with ``observed``), on every backend: committed together or not at all, the observation kept
when the effect is refused for good, and a failed queued write of the same effect over."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from tether.core.audit import AuditKind, AuditRecord, verify_chain
from tether.core.errors import Conflict, ErrorCode, NotFound, Unavailable
from tether.core.ids import DecisionId, TaskId
from tether.core.provenance import Source, Trust, observe
from tether.core.task import Task
from tether.service.ports import ObservedRows
from tether.store import SqlStore
from tether.store.observations import SqlObservationStore

from .conftest import T0, Backend, Make
from .test_queued_effects import _commit_fails, _decided, _effect, _opened, effects_refused

_KEY = bytes(range(32))


def _rows(task: Task, value: str, key: str = "observed 1") -> ObservedRows:
    seen = observe(_KEY, Source("crm.query", None, Trust.UNTRUSTED), value)
    assert seen.fingerprints  # a value to keep
    return ObservedRows(((TaskId(task.task_id), seen),), T0, 100, key)


def _values(rows: ObservedRows) -> int:
    """How many rows ``rows`` adds to a task that had none of its values."""
    return sum(len(seen.fingerprints) for _task, seen in rows.entries)


def _counted(store: SqlStore, task: Task) -> int:
    return SqlObservationStore(store).count_observations([TaskId(task.task_id)])


def _effect_records(store: SqlStore) -> list[AuditRecord]:
    return [r for r in store.audit_records() if r.kind is AuditKind.EFFECT]


def test_an_effect_and_its_observation_are_committed_together(
    backend: Backend, store: SqlStore, make: Make
) -> None:
    task, grant = _opened(store, make)
    decision = _decided(store, make, task, grant)
    effect, entry = _effect(make, decision)
    rows = _rows(task, "eve@evil.test")
    head = store.chain_head()
    # A statement of the effect refused by the database, and then a COMMIT that fails after
    # every statement succeeded: either way neither the effect nor the observation is kept.
    with effects_refused(backend), pytest.raises(Unavailable):
        store.record_effect(effect, entry, rows)
    with _commit_fails(backend), pytest.raises(Unavailable):
        store.record_effect(effect, entry, rows)
    assert store.get_effect(decision.decision_id) is None
    assert _counted(store, task) == 0
    assert store.chain_head() == head

    record = store.record_effect(effect, entry, rows)  # retried: both written
    assert record.kind is AuditKind.EFFECT
    assert store.get_effect(decision.decision_id) == effect
    assert _counted(store, task) == _values(rows)
    assert [settled for _hold, settled in store.decision_holds(decision.decision_id)] == [3.0]
    report = verify_chain(store.audit_records(), store.chain_head())
    assert report.ok and report.records == 3, report  # the task, its decision, its effect


def test_a_refused_effect_keeps_the_observation_that_came_with_it(
    store: SqlStore, make: Make
) -> None:
    task, grant = _opened(store, make)
    decision = _decided(store, make, task, grant)
    effect, entry = _effect(make, decision)
    first = _rows(task, "eve@evil.test")
    store.record_effect(effect, entry, first)
    counted = _counted(store, task)
    assert counted > 0

    # A second report: refused as before, its observation written all the same.
    second = _rows(task, "mallory@other.test", "observed 2")
    with pytest.raises(Conflict) as twice:
        store.record_effect(make.effect(decision), entry, second)
    assert twice.value.code is ErrorCode.EFFECT_ALREADY_REPORTED
    assert _counted(store, task) == counted + _values(second)
    assert store.get_effect(decision.decision_id) == effect

    # An effect of no decision: refused, its observation written.
    third = _rows(task, "https://elsewhere.example/", "observed 3")
    unknown = replace(make.effect(decision), decision_id=DecisionId("dec_" + "0" * 26))
    with pytest.raises(NotFound) as missing:
        store.record_effect(unknown, entry, third)
    assert missing.value.code is ErrorCode.DECISION_NOT_FOUND
    assert _counted(store, task) == counted + _values(second) + _values(third)
    assert len(_effect_records(store)) == 1
    report = verify_chain(store.audit_records(), store.chain_head())
    assert report.ok and report.records == 3, report  # no record for either refusal


def test_writing_an_effect_ends_the_wait_its_failed_queued_write_left(
    backend: Backend, store: SqlStore, make: Make
) -> None:
    """The same effect and observation, queued into a batch that failed to commit, then
    written in a transaction of their own: the task's decisions no longer wait for them."""
    task, grant = _opened(store, make)
    decision = _decided(store, make, task, grant)
    effect, entry = _effect(make, decision)
    rows = _rows(task, "eve@evil.test")

    async def queued() -> AuditRecord:
        return await store.queue_effect(effect, entry, rows)

    with _commit_fails(backend), pytest.raises(Unavailable):
        asyncio.run(queued())
    with pytest.raises(Unavailable):
        store.wait_for_effects([task.task_id])
    store.record_effect(effect, entry, rows)
    store.wait_for_effects([task.task_id])  # nothing outstanding
    assert store.get_effect(decision.decision_id) == effect
    assert _counted(store, task) == _values(rows)
