"""The hot path's PostgreSQL connections kept out of the pool: each reading thread's for the
grant read (store/hotread.py ``PostgresReads``) and the group commit's for a batch of plain
decisions (store/pgbatch.py). Lost ones are replaced without failing a call, and closing the
store closes them. Real PostgreSQL."""

from __future__ import annotations

import threading

import psycopg

from tether.core.audit import verify_chain
from tether.service.ports import DecisionWrite
from tether.store import SqlStore

from .conftest import Backend, Make


def _sessions(pg: Backend, count: str = "count(*)") -> int:
    """tether's sessions on the test's database (``count``: what is counted of them, as SQL)."""
    with psycopg.connect(pg.pg.dsn(pg.database), autocommit=True) as admin:
        row = admin.execute(
            f"SELECT {count} FROM pg_stat_activity "
            "WHERE application_name = 'tether' AND datname = %s",
            (pg.database,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _read_and_decide(store: SqlStore, make: Make) -> None:
    task, grant = make.opened(store)
    assert store.get_grant_with_task(grant.grant_id) == (grant, task)
    store.record_decision(DecisionWrite(make.decision(task, grant), make.entry()))


def test_kept_connections_the_server_dropped_are_replaced_without_a_failed_call(
    pg_backend: Backend, make: Make
) -> None:
    store = pg_backend.open()
    task, grant = make.opened(store)
    # Keep both: this thread's read connection and the group commit's batch connection.
    assert store.get_grant_with_task(grant.grant_id) == (grant, task)
    store.record_decision(DecisionWrite(make.decision(task, grant), make.entry()))
    assert _sessions(pg_backend, "count(pg_terminate_backend(pid))") >= 2

    # The first statement on each finds its connection closed at once: made again on another.
    assert store.get_grant_with_task(grant.grant_id) == (grant, task)
    decision = make.decision(task, grant)
    store.record_decision(DecisionWrite(decision, make.entry()))
    assert store.get_decision(decision.decision_id) == decision
    report = verify_chain(store.audit_records(), store.chain_head())
    assert report.ok and report.records == 3  # task opened, two decisions


def test_closing_the_store_closes_every_connection_it_kept(pg_backend: Backend, make: Make) -> None:
    store = pg_backend.open()
    readers = [threading.Thread(target=_read_and_decide, args=(store, make)) for _ in range(3)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    _read_and_decide(store, make)
    assert _sessions(pg_backend) >= 2

    store.close()
    assert _sessions(pg_backend) == 0
