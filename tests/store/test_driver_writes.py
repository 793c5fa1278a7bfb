"""The statements every write repeats run on SQLite's driver (store/driver.py): the same rows,
the same chain, and the driver's errors in tether's error tree."""

from __future__ import annotations

import pytest

from tether.core.audit import AuditKind, verify_chain
from tether.core.errors import ErrorCode, Unavailable
from tether.service.ports import DecisionWrite
from tether.store import SqlStore

from .conftest import Make


def test_sqlite_writes_through_the_driver_and_postgresql_through_core(store: SqlStore) -> None:
    assert (store.db._driver is not None) is (store.backend == "sqlite")


def test_a_reused_decision_id_is_refused_and_writes_nothing(store: SqlStore, make: Make) -> None:
    task, grant = make.task()
    store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))
    decision = make.decision(task, grant)
    store.record_decision(DecisionWrite(decision, make.entry()))
    head = store.chain_head()
    with pytest.raises(Unavailable) as caught:
        store.record_decision(DecisionWrite(decision, make.entry()))
    assert caught.value.code is ErrorCode.INTERNAL
    assert store.chain_head() == head
    report = verify_chain(store.audit_records(), store.chain_head())
    assert report.ok and report.records == 2


def test_decisions_read_back_as_written(store: SqlStore, make: Make) -> None:
    task, grant = make.task()
    store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))
    decision = make.decision(task, grant)
    record = store.record_decision(DecisionWrite(decision, make.entry(body={"n": 1, "ratio": 0.5})))
    assert store.get_decision(decision.decision_id) == decision
    assert list(store.audit_records())[-1] == record
