"""The statements every write repeats run on the driver (store/driver.py), sqlite3's or psycopg's:
the same rows, the same chain, and the driver's errors in tether's error tree."""

from __future__ import annotations

import psycopg
import pytest

from tether.core.audit import AuditKind, verify_chain
from tether.core.errors import ErrorCode, Unavailable
from tether.service.ports import DecisionWrite
from tether.store import SqlStore
from tether.store.db import STORE
from tether.store.groupcommit import Pending

from .conftest import Backend, Make


def test_every_backend_writes_through_the_driver(store: SqlStore) -> None:
    assert store.db._driver is not None


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


def test_a_value_postgresql_cannot_hold_fails_the_decision_and_writes_nothing(
    pg_backend: Backend, make: Make
) -> None:
    store = pg_backend.open()
    task, grant = make.opened(store)
    head = store.chain_head()
    decision = make.decision(task, grant)
    with pytest.raises(Unavailable) as caught:
        store.record_decision(DecisionWrite(decision, make.entry(agent="spiffe://x/a\x00b")))
    assert caught.value.code is ErrorCode.STORE_UNAVAILABLE
    assert "NUL" in caught.value.message
    for secret in pg_backend.secrets():
        assert secret not in caught.value.message
    assert store.chain_head() == head
    assert store.get_decision(decision.decision_id) is None
    store.record_decision(DecisionWrite(make.decision(task, grant), make.entry()))
    assert verify_chain(store.audit_records(), store.chain_head()).records == 2


def test_a_connection_lost_in_a_write_fails_it_and_the_next_write_goes_on(
    pg_backend: Backend, make: Make
) -> None:
    store = pg_backend.open()
    store.append_audit(make.entry())
    with pytest.raises(Unavailable) as caught, store.db.write(STORE, "write") as tx:
        pid = tx.conn.connection.driver_connection.info.backend_pid  # type: ignore[union-attr]
        with psycopg.connect(pg_backend.dsn(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        tx.append(make.entry())  # on the driver's cursor of the connection just lost
    assert caught.value.code is ErrorCode.STORE_UNAVAILABLE
    assert "SQLSTATE 57P01" in caught.value.message  # the server ended the session
    # The lost connection is not lent again: the next writes and reads go on.
    store.append_audit(make.entry())
    store.record_decision(DecisionWrite(make.decision(None, None), make.entry()))
    report = verify_chain(store.audit_records(), store.chain_head())
    assert report.ok and report.records == 3


def test_a_write_the_database_refuses_mid_batch_rolls_back_alone(
    store: SqlStore, make: Make
) -> None:
    task, grant = make.task()
    store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))
    first = make.decision(task, grant)
    writes = [
        DecisionWrite(first, make.entry()),
        DecisionWrite(first, make.entry()),  # the same decision id: the insert is refused
        DecisionWrite(make.decision(task, grant), make.entry()),
        DecisionWrite(make.decision(task, grant), make.entry()),
    ]
    batch: list[Pending[DecisionWrite, object]] = [Pending(w) for w in writes]
    store._decisions._run_batch(batch)  # type: ignore[arg-type]
    assert isinstance(batch[1].error, Unavailable) and batch[1].result is None
    assert [p.error for p in (batch[0], batch[2], batch[3])] == [None, None, None]
    for write in (writes[0], writes[2], writes[3]):
        assert store.get_decision(write.decision.decision_id) == write.decision
    report = verify_chain(store.audit_records(), store.chain_head())
    assert report.ok and report.records == 4, report  # task opened + three decisions, no gap
