"""Effects queued into the decisions' group commit (``SqlStore.queue_effect``), on every backend:
written in the next batch with no transaction of their own, waited for by the decisions of their
task (and only theirs), refusing their task while a batch that held one failed to commit, with
nothing of that batch written, and written before the store closes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event

from tether.core.audit import AuditKind, AuditRecord, ChainHead, verify_chain
from tether.core.budget import BudgetKind, Hold
from tether.core.effect import Effect
from tether.core.errors import Conflict, ErrorCode, Unavailable
from tether.core.ids import TaskId
from tether.core.provenance import Source, Trust, observe
from tether.core.task import Grant, Task
from tether.service.ports import (
    AuditEntry,
    BudgetCharge,
    DecisionRecord,
    DecisionWrite,
    ObservedRows,
)
from tether.store import SqlStore
from tether.store.observations import SqlObservationStore

from .conftest import T0, Backend, Make


def _opened(store: SqlStore, make: Make) -> tuple[Task, Grant]:
    task, grant = make.task()
    store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED, task_id=task.task_id))
    return task, grant


def _decided(store: SqlStore, make: Make, task: Task, grant: Grant) -> DecisionRecord:
    """An allow on ``task`` holding 10 records of its budget (settled by its effect)."""
    decision = make.decision(task, grant)
    hold = Hold(task.task_id, BudgetKind.RECORDS, "internal", 10.0)
    charge = BudgetCharge((hold,), {hold.key: 100.0})
    store.record_decision(DecisionWrite(decision, make.entry(task_id=task.task_id), budget=charge))
    return decision


def _effect(make: Make, decision: DecisionRecord) -> tuple[Effect, AuditEntry]:
    return make.effect(decision), make.entry(AuditKind.EFFECT, task_id=decision.task_id)


@contextmanager
def _commit_fails(backend: Backend) -> Iterator[None]:
    """Every batch that writes an effect fails at its COMMIT, after each statement succeeded:
    the effect's insert adds a row whose deferred foreign key is checked only at commit."""
    backend.execute(
        "CREATE TABLE commit_guard (ref TEXT REFERENCES audit(record_id) "
        "DEFERRABLE INITIALLY DEFERRED)"
    )
    if backend.name == "sqlite":
        backend.execute(
            "CREATE TRIGGER fail_commit AFTER INSERT ON effects "
            "BEGIN INSERT INTO commit_guard VALUES ('no such record'); END"
        )
    else:
        backend.execute(
            "CREATE FUNCTION fail_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO commit_guard VALUES ('no such record'); RETURN NEW; END $$"
        )
        backend.execute(
            "CREATE TRIGGER fail_commit AFTER INSERT ON effects "
            "FOR EACH ROW EXECUTE FUNCTION fail_commit()"
        )
    try:
        yield
    finally:
        on = "" if backend.name == "sqlite" else " ON effects"
        backend.execute(f"DROP TRIGGER fail_commit{on}")


@contextmanager
def effects_refused(backend: Backend) -> Iterator[None]:
    """The database refuses every insert into ``effects`` (a trigger) while the block runs:
    a statement of the effect fails, a store failure and not a refusal of the effect."""
    if backend.name == "sqlite":
        backend.execute(
            "CREATE TRIGGER refuse_effect BEFORE INSERT ON effects "
            "BEGIN SELECT RAISE(ABORT, 'effects refused'); END"
        )
    else:
        backend.execute(
            "CREATE FUNCTION refuse_effect() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'effects refused'; END $$"
        )
        backend.execute(
            "CREATE TRIGGER refuse_effect BEFORE INSERT ON effects "
            "FOR EACH ROW EXECUTE FUNCTION refuse_effect()"
        )
    try:
        yield
    finally:
        on = "" if backend.name == "sqlite" else " ON effects"
        backend.execute(f"DROP TRIGGER refuse_effect{on}")


def test_a_queued_effect_is_committed_before_its_task_is_decided_again(
    backend: Backend, store: SqlStore, make: Make
) -> None:
    task, grant = _opened(store, make)
    other, _ = _opened(store, make)
    decision = _decided(store, make, task, grant)
    effect, entry = _effect(make, decision)
    seen: list[object] = []

    def next_decision_on_the_task() -> None:
        store.wait_for_effects([task.task_id])
        # What a decision reads right after its wait: the effect and its settled hold.
        seen.append(
            (store.get_effect(decision.decision_id), store.decision_holds(effect.decision_id))
        )

    waiter = threading.Thread(target=next_decision_on_the_task)

    async def main() -> AuditRecord:
        with backend.write_locked():  # another process holds the write lock: no commit yet
            written = asyncio.ensure_future(store.queue_effect(effect, entry))
            await asyncio.sleep(0)
            waiter.start()
            # Another task's decision does not wait for this task's effect.
            store.wait_for_effects([other.task_id])
            await asyncio.sleep(0.05)
            assert waiter.is_alive() and not written.done()
        return await written

    record = asyncio.run(main())
    waiter.join(10)
    assert not waiter.is_alive()
    assert record.kind is AuditKind.EFFECT
    ((found, holds),) = seen
    assert found == effect
    assert [settled for _hold, settled in holds] == [3.0]  # the effect's records, settled
    report = verify_chain(store.audit_records(), store.chain_head())
    assert report.ok and report.records == 4, report  # 2 tasks, 1 decision, 1 effect


def test_a_batch_that_fails_to_commit_writes_nothing_and_refuses_the_effects_task(
    backend: Backend, store: SqlStore, make: Make
) -> None:
    task, grant = _opened(store, make)
    other, other_grant = _opened(store, make)
    decision = _decided(store, make, task, grant)
    effect, entry = _effect(make, decision)
    blocker = DecisionWrite(make.decision(other, other_grant), make.entry(task_id=other.task_id))
    bystander = DecisionWrite(make.decision(other, other_grant), make.entry(task_id=other.task_id))

    async def queued_with_a_decision() -> list[AuditRecord | BaseException]:
        commits = store._decisions._commits
        with backend.write_locked():
            # The writer takes a first batch and waits for the lock; the effect and another
            # task's decision queue behind it, so they share the next batch: its commit fails,
            # and neither is written.
            first = store.record_decision_async(blocker)
            while commits._queued:
                await asyncio.sleep(0.001)
            writes = [store.queue_effect(effect, entry), store.record_decision_async(bystander)]
        return await asyncio.gather(first, *writes, return_exceptions=True)

    with _commit_fails(backend):
        blocked, failed, other_failed = asyncio.run(queued_with_a_decision())
    assert isinstance(blocked, AuditRecord)
    assert isinstance(failed, Unavailable) and isinstance(other_failed, Unavailable)
    # Nothing of the batch is written: no effect, no settled hold, no decision, no record.
    assert store.get_effect(decision.decision_id) is None
    assert [settled for _h, settled in store.decision_holds(decision.decision_id)] == [None]
    assert store.get_decision(bystander.decision.decision_id) is None
    assert store.chain_head() == ChainHead(blocked.seq, blocked.hash)
    # The task's next decision is refused, with the code the effect's write failed with, until
    # the effect is written; another task's is not.
    with pytest.raises(Unavailable) as refused:
        store.wait_for_effects([task.task_id])
    assert refused.value.code is failed.code
    store.wait_for_effects([other.task_id])

    async def retried() -> AuditRecord:
        return await store.queue_effect(effect, entry)

    assert asyncio.run(retried()).kind is AuditKind.EFFECT
    store.wait_for_effects([task.task_id])  # written: the task is decided again
    assert store.get_effect(decision.decision_id) == effect
    report = verify_chain(store.audit_records(), store.chain_head())
    assert report.ok and report.records == 5, report  # 2 tasks, 2 decisions, 1 effect


def test_closing_the_store_writes_every_queued_effect_first(
    backend: Backend, store: SqlStore, make: Make
) -> None:
    task, grant = _opened(store, make)
    decisions = [_decided(store, make, task, grant) for _ in range(3)]
    effects = [_effect(make, d) for d in decisions]
    closed = threading.Thread(target=store.close)

    async def main() -> None:
        with backend.write_locked():  # queued, and not yet written, when the store closes
            # Not awaited: an enforcement point that answered and moved on.
            queued = [store.queue_effect(effect, entry) for effect, entry in effects]
            await asyncio.sleep(0)
            closed.start()
            await asyncio.sleep(0.05)
            assert closed.is_alive() and not any(q.done() for q in queued)  # type: ignore[attr-defined]

    asyncio.run(main())
    closed.join(10)
    assert not closed.is_alive()
    reopened = backend.open()
    assert [reopened.get_effect(d.decision_id) for d in decisions] == [e for e, _ in effects]
    report = verify_chain(reopened.audit_records(), reopened.chain_head())
    assert report.ok and report.records == 7, report


def test_queued_observations_are_committed_before_their_chains_tasks_are_decided_again(
    backend: Backend, store: SqlStore, make: Make
) -> None:
    parent, _ = _opened(store, make)
    child, _ = _opened(store, make)
    other, _ = _opened(store, make)
    observations = SqlObservationStore(store)
    seen = observe(bytes(range(32)), Source("web.browse", None, Trust.UNTRUSTED), "eve@evil.test")
    entries = [(TaskId(child.task_id), seen), (TaskId(parent.task_id), seen)]
    found: list[tuple[int, int]] = []

    def next_decision_on(task: Task) -> None:
        store.wait_for_effects([task.task_id])
        read = store.get_task(task.task_id)
        assert read is not None
        found.append((read.observed, observations.count_observations([TaskId(task.task_id)])))

    waiters = [threading.Thread(target=next_decision_on, args=(t,)) for t in (child, parent)]

    async def main() -> object:
        with backend.write_locked():
            written = asyncio.ensure_future(
                observations.queue_observations(entries, T0, 100, "observed 1")
            )
            await asyncio.sleep(0)
            for waiter in waiters:
                waiter.start()
            store.wait_for_effects([other.task_id])  # another task does not wait
            await asyncio.sleep(0.05)
            assert all(w.is_alive() for w in waiters) and not written.done()
        return await written

    asyncio.run(main())
    for waiter in waiters:
        waiter.join(10)
    # Each task of the chain, once its wait is over, reads its rows and its count together.
    rows = len(seen.fingerprints)
    assert found == [(rows, rows), (rows, rows)]


def test_an_effect_queued_with_its_calls_observation_is_one_write(
    backend: Backend, store: SqlStore, make: Make
) -> None:
    task, grant = _opened(store, make)
    decision = _decided(store, make, task, grant)
    effect, entry = _effect(make, decision)
    observations = SqlObservationStore(store)
    seen = observe(bytes(range(32)), Source("crm.query", None, Trust.UNTRUSTED), "eve@evil.test")
    rows = ObservedRows(((TaskId(task.task_id), seen),), T0, 100, "observed 1")
    counted = [TaskId(task.task_id)]

    async def queued() -> AuditRecord:
        return await store.queue_effect(effect, entry, rows)

    with _commit_fails(backend):
        with pytest.raises(Unavailable):
            asyncio.run(queued())
        # Neither is written, and the task waits for both.
        assert store.get_effect(decision.decision_id) is None
        assert observations.count_observations(counted) == 0
        with pytest.raises(Unavailable):
            store.wait_for_effects([task.task_id])
    assert asyncio.run(queued()).kind is AuditKind.EFFECT
    store.wait_for_effects([task.task_id])
    assert store.get_effect(decision.decision_id) == effect
    assert observations.count_observations(counted) == len(seen.fingerprints)

    # An effect refused for good (reported already) is refused; the observation that came
    # with it is written all the same.
    again = ObservedRows(
        (
            (
                TaskId(task.task_id),
                observe(
                    bytes(range(32)),
                    Source("crm.query", None, Trust.UNTRUSTED),
                    "mallory@other.test",
                ),
            ),
        ),
        T0,
        100,
        "observed 2",
    )

    async def twice() -> AuditRecord:
        return await store.queue_effect(make.effect(decision), entry, again)

    with pytest.raises(Conflict) as refused:
        asyncio.run(twice())
    assert refused.value.code is ErrorCode.EFFECT_ALREADY_REPORTED
    store.wait_for_effects([task.task_id])  # refused for good: the task is not held
    assert observations.count_observations(counted) == 2 * len(seen.fingerprints)
    report = verify_chain(store.audit_records(), store.chain_head())
    assert report.ok and report.records == 3, report  # the task, its decision, one effect


def test_a_queued_effect_and_its_observation_are_written_on_the_driver(
    store: SqlStore, make: Make
) -> None:
    """Their statements run on the driver's cursor (store/driver.py), as the decision's do,
    not through SQLAlchemy's execution of each; what they write reads back the same."""
    task, grant = _opened(store, make)
    decision = make.decision(task, grant)  # no budget: nothing to settle
    store.record_decision(DecisionWrite(decision, make.entry(task_id=task.task_id)))
    effect, entry = _effect(make, decision)
    seen = observe(bytes(range(32)), Source("crm.query", None, Trust.UNTRUSTED), "eve@evil.test")
    rows = ObservedRows(((TaskId(task.task_id), seen),), T0, 100, "observed 1")
    engine = store.db.engine
    assert engine is not None
    executed: list[str] = []

    def executes(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        executed.append(statement)

    async def queued() -> AuditRecord:
        return await store.queue_effect(effect, entry, rows)

    event.listen(engine, "before_cursor_execute", executes)
    try:
        record = asyncio.run(queued())
        written = len(executed)
        found = store.get_effect(decision.decision_id)  # a read through SQLAlchemy: heard
    finally:
        event.remove(engine, "before_cursor_execute", executes)
    assert record.kind is AuditKind.EFFECT and found == effect
    assert any("effects" in statement for statement in executed[written:])
    through_core = [s for s in executed[:written] if "effects" in s or "observations" in s]
    assert through_core == []
    counted = SqlObservationStore(store).count_observations([TaskId(task.task_id)])
    assert counted == len(seen.fingerprints)
    report = verify_chain(store.audit_records(), store.chain_head())
    assert report.ok and report.records == 3, report  # the task, its decision, its effect


def test_an_effect_the_database_refuses_takes_its_observation_with_it(
    backend: Backend, store: SqlStore, make: Make
) -> None:
    """A statement of the effect failing in the database (here a trigger) is a store failure,
    not a refusal of the effect: nothing of the write is kept, and the task waits for it."""
    task, grant = _opened(store, make)
    decision = _decided(store, make, task, grant)
    effect, entry = _effect(make, decision)
    seen = observe(bytes(range(32)), Source("crm.query", None, Trust.UNTRUSTED), "eve@evil.test")
    rows = ObservedRows(((TaskId(task.task_id), seen),), T0, 100, "observed 1")
    counted = [TaskId(task.task_id)]

    async def queued() -> AuditRecord:
        return await store.queue_effect(effect, entry, rows)

    with effects_refused(backend):
        with pytest.raises(Unavailable):
            asyncio.run(queued())
        assert store.get_effect(decision.decision_id) is None
        assert SqlObservationStore(store).count_observations(counted) == 0
        with pytest.raises(Unavailable):
            store.wait_for_effects([task.task_id])
    assert asyncio.run(queued()).kind is AuditKind.EFFECT  # retried: both written
    assert store.get_effect(decision.decision_id) == effect
    assert SqlObservationStore(store).count_observations(counted) == len(seen.fingerprints)
