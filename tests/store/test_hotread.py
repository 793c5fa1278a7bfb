"""The hot read (store/hotread.py) returns exactly what the SQLAlchemy path returns."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import event

from tether.core.audit import AuditKind
from tether.core.budget import Budgets
from tether.core.errors import ErrorCode, Unavailable
from tether.core.ids import GrantId
from tether.core.task import GrantState, TaskState
from tether.store import SqlStore

from .conftest import Backend, Make, provisioned, race


def _both(store: SqlStore, grant_id: GrantId) -> tuple[object, object]:
    # Both backends read through the driver; compared with the Core path.
    assert store._hot_read is not None
    hot = store.get_grant_with_task(grant_id)
    saved, store._hot_read = store._hot_read, None  # the SQLAlchemy Core path
    try:
        core = store.get_grant_with_task(grant_id)
    finally:
        store._hot_read = saved
    return hot, core


def test_the_hot_read_decodes_every_column_as_the_core_path_does(
    store: SqlStore, make: Make
) -> None:
    task, grant = make.task()
    task = replace(
        task,
        budgets=Budgets.from_json(
            {"records": 10, "by_classification": {"confidential": {"bytes": 5}}}
        ),
        label="confidential",
        workflow_step="lookup",
    )
    grant = replace(grant, delegators=("spiffe://example.org/agents/root",))
    store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))
    hot, core = _both(store, grant.grant_id)
    assert hot == core == (grant, task)


def test_an_unknown_grant_is_none_on_both_paths(store: SqlStore) -> None:
    hot, core = _both(store, GrantId("grt_" + "0" * 26))
    assert hot == core == (None, None)


def test_a_closed_store_is_unavailable_not_a_crash(store: SqlStore, make: Make) -> None:
    task, grant = make.task()
    store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))
    store.close()
    with pytest.raises(Unavailable):
        store.get_grant_with_task(grant.grant_id)


def test_a_changed_row_is_never_answered_from_the_memo(store: SqlStore, make: Make) -> None:
    from tether.core.task import GrantState, TaskState

    task, grant = make.task()
    store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))
    before = store.get_grant_with_task(grant.grant_id)
    assert before[0] is not None and before[0].state is GrantState.ACTIVE
    assert store.get_grant_with_task(grant.grant_id) == before  # a repeat read: same values
    ended = store.end_task(
        task.task_id, TaskState.CLOSED, task.opened_at, make.entry(AuditKind.TASK_CLOSED)
    )
    assert ended is not None
    after_grant, after_task = store.get_grant_with_task(grant.grant_id)
    assert after_grant is not None and after_grant.state is GrantState.REVOKED
    assert after_task is not None and after_task.state is TaskState.CLOSED


def test_a_task_whose_observation_count_moved_reads_its_count_without_decoding_anew(
    backend: Backend, store: SqlStore, make: Make
) -> None:
    """Every call an MCP gateway records raises its task's count: the rest of the row is the
    remembered one, the count the row's own, as the Core path reads it."""
    task, grant = make.task()
    store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))
    query = store._hot_read
    assert query is not None
    hot, core = _both(store, grant.grant_id)
    assert hot == core and hot[1] is not None and hot[1].observed == 0
    decoded = query._decoded.cache_info().misses
    for count in (3, 4, 0):
        backend.execute(
            "UPDATE tasks SET observed = :n WHERE task_id = :t", n=count, t=task.task_id
        )
        hot, core = _both(store, grant.grant_id)
        assert hot == core and hot[1] is not None and hot[1].observed == count
    assert query._decoded.cache_info().misses == decoded


def test_a_connection_the_server_dropped_is_read_again_on_another(
    pg_backend: Backend, make: Make
) -> None:
    # The hot read skips the pool's ping on PostgreSQL: it must find out by itself.
    store = pg_backend.open()
    task, grant = make.opened(store)
    assert store.get_grant_with_task(grant.grant_id) == (grant, task)  # connections pooled
    with psycopg.connect(pg_backend.dsn(), autocommit=True) as admin:
        pids = [
            row[0]
            for row in admin.execute(
                "SELECT pid FROM pg_stat_activity "
                "WHERE application_name = 'tether' AND datname = current_database()"
            )
        ]
        assert pids
        # Ended for good before the read: pg_terminate_backend only signals, and a connection
        # the retry's ping found alive could otherwise still drop under the read.
        admin.execute("SELECT pg_terminate_backend(pid, 5000) FROM unnest(%s::int[]) pid", [pids])
    assert store.get_grant_with_task(grant.grant_id) == (grant, task)
    assert store.get_grant_with_task(grant.grant_id) == (grant, task)


@pytest.fixture
def sqlite_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    with provisioned("sqlite", request, tmp_path) as db:
        yield db.open()


def _checkouts(store: SqlStore) -> list[object]:
    taken: list[object] = []

    def checked_out(driver_connection: object, *_: object) -> None:
        taken.append(driver_connection)

    event.listen(store.db.live(ErrorCode.STORE_UNAVAILABLE).pool, "checkout", checked_out)
    return taken


@contextmanager
def _writing(store: SqlStore) -> Iterator[None]:
    """As while a write of this process holds the write connection: reads go elsewhere."""
    writers = store.db._writers
    assert writers is not None
    with writers:
        yield


def test_the_sqlite_hot_read_runs_on_the_write_connection_while_no_write_holds_it(
    sqlite_store: SqlStore, make: Make
) -> None:
    # Its page cache stays warm across the process's own commits; another connection's is
    # emptied by each of them.
    task, grant = make.task()
    sqlite_store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))
    taken = _checkouts(sqlite_store)
    assert sqlite_store.get_grant_with_task(grant.grant_id) == (grant, task)
    ended = sqlite_store.end_task(
        task.task_id, TaskState.CLOSED, task.opened_at, make.entry(AuditKind.TASK_CLOSED)
    )
    assert ended is not None
    after_grant, after_task = sqlite_store.get_grant_with_task(grant.grant_id)
    assert after_grant is not None and after_grant.state is GrantState.REVOKED
    assert after_task is not None and after_task.state is TaskState.CLOSED
    assert taken == [] and sqlite_store._sqlite_reads._kept == {}


def test_while_a_write_holds_it_a_thread_reads_on_a_connection_it_keeps(
    sqlite_store: SqlStore, make: Make
) -> None:
    # A pool checkout and check-in per read were a third of the read's cost.
    task, grant = make.task()
    sqlite_store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))
    with _writing(sqlite_store):
        sqlite_store.get_grant_with_task(grant.grant_id)  # this thread's connection, kept
        taken = _checkouts(sqlite_store)
        for _ in range(20):
            assert sqlite_store.get_grant_with_task(grant.grant_id) == (grant, task)
    assert taken == []
    assert list(sqlite_store._sqlite_reads._kept) == [threading.get_ident()]


def test_threads_past_the_kept_few_read_on_pooled_connections(
    sqlite_store: SqlStore, make: Make
) -> None:
    task, grant = make.task()
    sqlite_store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))
    taken = _checkouts(sqlite_store)

    def read(_: int) -> object:
        return [sqlite_store.get_grant_with_task(grant.grant_id) for _ in range(5)]

    with _writing(sqlite_store):
        results = race(8, read)
    assert results == [[(grant, task)] * 5] * 8
    # Four threads took a connection once and kept it; the other four borrowed per read.
    assert len(taken) == 4 + 4 * 5


def test_a_kept_connection_that_failed_is_replaced_and_close_closes_them(
    sqlite_store: SqlStore, make: Make
) -> None:
    task, grant = make.task()
    sqlite_store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))
    with _writing(sqlite_store):
        sqlite_store.get_grant_with_task(grant.grant_id)
        kept = sqlite_store._sqlite_reads._kept[threading.get_ident()]
        assert kept.dbapi_connection is not None
        kept.dbapi_connection.close()  # the driver's connection fails its next statement
        with pytest.raises(Unavailable) as failed:
            sqlite_store.get_grant_with_task(grant.grant_id)
        assert failed.value.code is ErrorCode.STORE_UNAVAILABLE
        assert sqlite_store.get_grant_with_task(grant.grant_id) == (grant, task)  # a new one
        replaced = sqlite_store._sqlite_reads._kept[threading.get_ident()]
    assert replaced is not kept
    driver = replaced.dbapi_connection
    assert driver is not None
    sqlite_store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        driver.execute("SELECT 1")
