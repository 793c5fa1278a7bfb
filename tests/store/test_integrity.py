"""A write the database refuses for a constraint says which rule it broke, on SQLite and on a
real PostgreSQL: a row already there (unique) is not a row missing (foreign key), whether the
database checks at the statement or when the transaction commits (a deferred foreign key)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert

from tether.core.errors import ErrorCode, Unavailable
from tether.service.ports import DecisionWrite
from tether.store import SqlStore
from tether.store.db import STORE
from tether.store.schema import effects

from .conftest import Backend, Make

ORPHAN = {
    "effect_id": "eff_0000000000000000000000000a",
    "decision_id": "dec_0000000000000000000000000a",  # never written
    "status": "ok",
    "records": 1,
    "bytes": 1,
    "recipients": [],
    "reported_at": datetime(2026, 12, 7, tzinfo=UTC),
}


def _refused(store: SqlStore, *, defer: bool = False) -> tuple[Unavailable, bool]:
    """The error writing an effect for a decision never written; and whether the insert
    itself went through (the error then came at COMMIT)."""
    inserted = False
    with pytest.raises(Unavailable) as caught, store.db.write(STORE, "record the effect") as tx:
        if defer and store.backend == "sqlite":
            tx.conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")  # checked at COMMIT
        tx.conn.execute(insert(effects).values(**ORPHAN))
        inserted = True
    return caught.value, inserted


def test_a_row_already_there_is_reported_as_such(store: SqlStore, make: Make) -> None:
    entry = make.entry()
    store.append_audit(entry)
    with pytest.raises(Unavailable) as caught:
        store.append_audit(entry)
    error = caught.value
    assert error.code is ErrorCode.INTERNAL
    assert "a row it adds is already there" in error.message
    where = "audit.record_id" if store.backend == "sqlite" else "audit_record_id_key"
    assert f"({where})" in error.message
    assert "does not hold" not in error.message


def test_a_missing_row_a_foreign_key_names_is_not_called_an_id_in_use(store: SqlStore) -> None:
    error, inserted = _refused(store)
    assert not inserted  # refused at the statement
    assert error.code is ErrorCode.INTERNAL
    assert "names a row another table does not hold" in error.message
    assert "already" not in error.message
    if store.backend == "postgresql":
        assert "(effects_decision_id_fkey)" in error.message
    assert ORPHAN["decision_id"] not in error.message  # values never reach the message


def test_a_foreign_key_checked_at_commit_is_reported_as_a_foreign_key(
    backend: Backend, store: SqlStore
) -> None:
    if backend.name == "postgresql":
        backend.execute(
            "ALTER TABLE effects ALTER CONSTRAINT effects_decision_id_fkey "
            "DEFERRABLE INITIALLY DEFERRED"
        )
    error, inserted = _refused(store, defer=True)
    assert inserted  # the statement went through: refused at COMMIT
    assert error.code is ErrorCode.INTERNAL
    assert "names a row another table does not hold" in error.message
    assert "already" not in error.message
    assert store.get_effect(ORPHAN["decision_id"]) is None  # type: ignore[arg-type]


def test_a_decision_id_reused_on_the_hot_path_is_a_row_already_there(
    store: SqlStore, make: Make
) -> None:
    task, grant = make.task()
    store.open_task(task, grant, make.entry())
    decision = make.decision(task, grant)
    store.record_decision(DecisionWrite(decision, make.entry()))  # SQLite: on the driver
    head = store.chain_head()
    with pytest.raises(Unavailable) as caught:
        store.record_decision(DecisionWrite(decision, make.entry()))
    assert "a row it adds is already there" in caught.value.message
    assert "does not hold" not in caught.value.message
    assert store.chain_head() == head
