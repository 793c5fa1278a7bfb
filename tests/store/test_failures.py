"""Failing closed: a store that cannot write says ``Unavailable`` and writes nothing at all."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from tether.core.audit import AuditKind, verify_chain
from tether.core.errors import ConfigurationError, ErrorCode, TetherError, Unavailable
from tether.core.task import TaskState
from tether.service.ports import DecisionWrite
from tether.store import SCHEMA_VERSION, SqlStore, migrate
from tether.store.schema import VERSION_TABLE

from .conftest import T0, Backend, Make

_SQL_WORDS = ("SELECT", "INSERT", "UPDATE", "BEGIN", "[SQL", "sqlalchemy")


def _assert_opaque(error: TetherError, *secrets: str) -> None:
    """Says what failed and why, but no SQL, no file paths, URLs, addresses or passwords."""
    for secret in secrets:
        assert secret not in error.message
        assert secret not in repr(error)
    for word in _SQL_WORDS:
        assert word not in error.message


def _assert_path_opaque(error: TetherError, path: Path) -> None:
    _assert_opaque(error, str(path), str(path.parent))


class TestAtomicity:
    def test_a_failed_audit_append_takes_the_mutation_with_it(
        self, store: SqlStore, make: Make
    ) -> None:
        used = make.entry()
        store.append_audit(used)
        task, grant = make.task()
        decision = make.decision(None, None)
        # A read first: a write on the connection it used must still be one transaction.
        assert store.get_task(task.task_id) is None

        with pytest.raises(Unavailable):
            store.open_task(task, grant, used)  # the task row goes in, then the audit fails
        with pytest.raises(Unavailable):
            store.record_decision(DecisionWrite(decision, used))

        assert store.get_task(task.task_id) is None
        assert store.get_grant(grant.grant_id) is None
        assert store.get_decision(decision.decision_id) is None
        report = verify_chain(store.audit_records(), store.chain_head())
        assert report.ok and report.records == 1

    def test_a_failed_end_task_leaves_the_task_open(self, store: SqlStore, make: Make) -> None:
        used = make.entry()
        task, grant = make.task()
        store.open_task(task, grant, used)
        with pytest.raises(Unavailable):
            store.end_task(task.task_id, TaskState.CLOSED, T0, used)
        assert store.get_task(task.task_id) == task
        assert store.get_grant(grant.grant_id) == grant


class TestUnavailable:
    def test_a_database_locked_by_another_writer(self, backend: Backend, make: Make) -> None:
        store = backend.open(busy_timeout=timedelta(milliseconds=50))
        task, grant = make.task()
        store.open_task(task, grant, make.entry())
        decision = make.decision(task, grant)
        head = store.chain_head()

        with backend.write_locked():
            attempts: list[tuple[Callable[[], object], ErrorCode]] = [
                (lambda: store.append_audit(make.entry()), ErrorCode.AUDIT_UNAVAILABLE),
                (
                    lambda: store.record_decision(DecisionWrite(decision, make.entry())),
                    ErrorCode.STORE_UNAVAILABLE,
                ),
                (
                    lambda: store.end_task(task.task_id, TaskState.CLOSED, T0, make.entry()),
                    ErrorCode.STORE_UNAVAILABLE,
                ),
                (store.ping, ErrorCode.STORE_UNAVAILABLE),
            ]
            for attempt, code in attempts:
                with pytest.raises(Unavailable) as caught:
                    attempt()
                assert caught.value.code is code
                assert "locked" in caught.value.message
                _assert_opaque(caught.value, *backend.secrets())
            # Readers are not blocked by a writer.
            assert store.get_task(task.task_id) == task

        assert store.chain_head() == head
        assert store.get_decision(decision.decision_id) is None
        store.ping()
        store.append_audit(make.entry())
        report = verify_chain(store.audit_records(), store.chain_head())
        assert report.ok and report.records == 2

    def test_a_directory_where_the_database_should_be(self, tmp_path: Path) -> None:
        path = tmp_path / "tether.db"
        path.mkdir()
        with pytest.raises(Unavailable) as caught:
            SqlStore.sqlite(path)
        assert caught.value.code is ErrorCode.STORE_UNAVAILABLE
        _assert_path_opaque(caught.value, path)

    def test_the_database_replaced_by_a_directory_across_a_restart(
        self, tmp_path: Path, make: Make
    ) -> None:
        path = tmp_path / "tether.db"
        store = SqlStore.sqlite(path)
        store.append_audit(make.entry())
        store.close()
        for leftover in tmp_path.iterdir():
            leftover.unlink()
        path.mkdir()
        with pytest.raises(Unavailable):
            SqlStore.sqlite(path)

    def test_a_missing_directory(self, tmp_path: Path) -> None:
        path = tmp_path / "absent" / "tether.db"
        with pytest.raises(Unavailable) as caught:
            SqlStore.sqlite(path)
        _assert_path_opaque(caught.value, path)

    def test_a_file_that_is_not_a_database(self, tmp_path: Path) -> None:
        path = tmp_path / "tether.db"
        path.write_bytes(b"this is not a database\n" * 200)
        with pytest.raises(Unavailable) as caught:
            SqlStore.sqlite(path)
        _assert_path_opaque(caught.value, path)

    def test_a_closed_store(self, store: SqlStore, make: Make) -> None:
        task, grant = make.task()
        store.open_task(task, grant, make.entry())
        store.close()
        store.close()  # closing twice is harmless
        calls = [
            lambda: store.get_task(task.task_id),
            lambda: store.get_grant(grant.grant_id),
            lambda: store.append_audit(make.entry()),
            lambda: store.end_task(task.task_id, TaskState.CLOSED, T0, make.entry()),
            lambda: list(store.audit_records()),
            store.chain_head,
            store.ping,
        ]
        for call in calls:
            with pytest.raises(Unavailable):
                call()


class TestConfiguration:
    def test_a_newer_schema_is_refused(self, backend: Backend, make: Make) -> None:
        backend.open().append_audit(make.entry(AuditKind.POLICY_LOADED))
        # A newer tether's revision, which this one's migrations do not know.
        backend.execute(f"UPDATE {VERSION_TABLE} SET version_num = 'f00dcafe0001'")
        with pytest.raises(ConfigurationError) as caught:
            backend.open()
        assert "newer tether" in caught.value.message

    @pytest.mark.parametrize(
        "damage",
        [f"DELETE FROM {VERSION_TABLE}", f"INSERT INTO {VERSION_TABLE} VALUES ('0001')"],
        ids=["no-revision", "two-revisions"],
    )
    def test_an_unreadable_schema_revision_is_refused(self, backend: Backend, damage: str) -> None:
        backend.open()
        backend.execute(damage)
        with pytest.raises(ConfigurationError):
            backend.open()

    def test_opening_again_keeps_one_version_row(self, backend: Backend) -> None:
        backend.open()
        backend.open()
        engine = backend.raw()
        try:
            with engine.connect() as conn:
                rows = conn.exec_driver_sql("SELECT key, value FROM tether_meta").all()
                revisions = conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").all()
        finally:
            engine.dispose()
        assert sorted(tuple(r) for r in rows) == [
            ("audit_chain_format", "2"),
            ("schema_version", str(SCHEMA_VERSION)),
        ]
        assert [tuple(r) for r in revisions] == [(migrate.head(),)]

    @pytest.mark.parametrize(
        "url",
        [
            "not a url",
            "postgresql+nosuchdriver://h/db",
            "nosuch://",
            "mysql://u:hunter2@127.0.0.1/db",
        ],
    )
    def test_an_unusable_url(self, url: str) -> None:
        with pytest.raises(ConfigurationError) as caught:
            SqlStore(url)
        assert url not in caught.value.message


class TestSqliteSettings:
    def test_wal_normal_foreign_keys_and_busy_timeout(self, tmp_path: Path) -> None:
        path = tmp_path / "tether.db"
        store = SqlStore.sqlite(path, busy_timeout=timedelta(seconds=2))
        try:
            with sqlite3.connect(path) as raw:
                assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            engine = store.db.engine  # the pragmas below are per connection
            assert engine is not None
            with engine.connect() as conn:
                pragma = conn.exec_driver_sql
                assert pragma("PRAGMA synchronous").scalar() == 1  # NORMAL
                assert pragma("PRAGMA foreign_keys").scalar() == 1
                assert pragma("PRAGMA busy_timeout").scalar() == 2000
        finally:
            store.close()
