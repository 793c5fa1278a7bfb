"""SQLite's lean write (the decisions' group commit): begun and committed on the driver, with
SQLAlchemy Core statements inside joining the same transaction, committed or rolled back with
the driver's statements as one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from tether.store.db import STORE
from tether.store.schema import meta
from tether.store.sql import SqlStore


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    # In memory, each thread's connection is a database of its own: no write connection is kept.
    url = f"sqlite:///{tmp_path / 'tether.db'}" if request.param == "file" else "sqlite://"
    opened = SqlStore(url)
    yield opened
    opened.close()


def keys(store: SqlStore) -> set[str]:
    with store.db.read(STORE, "read") as conn:
        return {str(k) for k in conn.execute(select(meta.c.key)).scalars()}


def test_a_core_statement_inside_joins_the_driver_transaction_and_commits_with_it(
    store: SqlStore,
) -> None:
    before = keys(store)
    with store.db.write(STORE, "write", lean=True) as tx:
        raw = tx.conn.connection.driver_connection
        assert raw is not None and raw.in_transaction  # begun on the driver
        tx.conn.execute(insert(meta), {"key": "lean-core", "value": "1"})
        raw.execute("INSERT INTO tether_meta (key, value) VALUES ('lean-driver', '1')")
    assert keys(store) - before == {"lean-core", "lean-driver"}


def test_a_failure_inside_rolls_back_both_and_the_next_write_works(store: SqlStore) -> None:
    before = keys(store)
    with pytest.raises(RuntimeError), store.db.write(STORE, "write", lean=True) as tx:
        tx.conn.execute(insert(meta), {"key": "lost-core", "value": "1"})
        driver = tx.conn.connection.driver_connection
        assert driver is not None
        driver.execute("INSERT INTO tether_meta (key, value) VALUES ('lost-driver', '1')")
        raise RuntimeError("refused")
    assert keys(store) == before
    with store.db.write(STORE, "write", lean=True) as tx:
        tx.conn.execute(insert(meta), {"key": "after", "value": "1"})
    with store.db.write(STORE, "write") as tx:  # and a plain write after a lean one
        tx.conn.execute(insert(meta), {"key": "plain", "value": "1"})
    assert keys(store) - before == {"after", "plain"}
