"""What only PostgreSQL has: URLs, session settings, least privilege, and losing the server.

The contract suite runs against PostgreSQL through the ``backend`` fixture; these tests cover what
an operator configures and what happens when the server goes away, on real servers on 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import sql

from pg_server import PostgresServer, running_postgres
from tether.core.approval import ApprovalState
from tether.core.audit import AuditKind, verify_chain
from tether.core.errors import ConfigurationError, ErrorCode, TetherError, Unavailable
from tether.core.task import TaskState
from tether.core.verdict import Decision
from tether.identity.audit_key import CheckpointKey
from tether.service.checkpoints import Checkpointer
from tether.service.clock import ManualClock
from tether.service.ports import DecisionWrite
from tether.store import SqlStore
from tether.store.checkpoints import SqlCheckpointStore
from tether.store.dialect import serialize_bootstrap
from tether.store.schema import RUNTIME_PRIVILEGES, VERSION_TABLE, metadata

from .conftest import T0, Backend, Make, PgPlaces, provisioned, race

# Refused connections fail at once; this is the ceiling for anything that must not hang.
BOUND = 10.0


@pytest.fixture
def pg(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with provisioned("postgresql", request, tmp_path) as db:
        yield db


@pytest.fixture
def database(pg_places: PgPlaces) -> Iterator[str]:
    with pg_places.database() as name:
        yield name


def _assert_opaque(error: TetherError, password: str, *secrets: str) -> None:
    """No password, URL or address in the message or repr; no password even in the traceback
    an operator's log would show (the driver's own words there may name host and port)."""
    for secret in (password, *secrets):
        assert secret not in error.message, secret
        assert secret not in repr(error), secret
    assert password not in "".join(traceback.format_exception(error))
    for word in ("SELECT", "INSERT", "UPDATE", "[SQL", "sqlalchemy"):
        assert word not in error.message


def _show(store: SqlStore, setting: str) -> str:
    engine = store.db.engine  # session settings are per connection
    assert engine is not None
    with engine.connect() as conn:
        return str(conn.exec_driver_sql(f"SHOW {setting}").scalar())


class TestUrls:
    def test_every_form_of_dsn_opens_the_same_store(
        self, postgres_server: PostgresServer, database: str, make: Make
    ) -> None:
        s = postgres_server
        first = SqlStore.postgres(s.url(database))
        record = first.append_audit(make.entry())
        first.close()
        forms = [
            f"postgresql://{s.superuser}:{s.password}@{s.host}:{s.port}/{database}",
            f"postgres://{s.superuser}:{s.password}@{s.host}:{s.port}/{database}",
            f"host={s.host} port={s.port} dbname={database} user={s.superuser} "
            f"password={s.password} sslmode=disable",
        ]
        for dsn in forms:
            store = SqlStore.postgres(dsn)
            try:
                assert [r.hash for r in store.audit_records()] == [record.hash]
            finally:
                store.close()
        generic = SqlStore(forms[0])
        try:
            assert generic.backend == "postgresql"
            assert generic.chain_head() is not None
        finally:
            generic.close()

    @pytest.mark.parametrize(
        "dsn",
        [
            "mysql://u:hunter2@127.0.0.1/db",
            "postgresql+psycopg2://u:hunter2@127.0.0.1/db",
            "postgresql://u:hunter2@127.0.0.1:notaport/db",
            "host=127.0.0.1 port=notaport password=hunter2",
            "host='127.0.0.1 password=hunter2",
            "sqlite:///tmp/hunter2.db",
        ],
    )
    def test_an_unusable_dsn_is_a_configuration_error(self, dsn: str) -> None:
        with pytest.raises(ConfigurationError) as caught:
            SqlStore.postgres(dsn)
        _assert_opaque(caught.value, "hunter2", dsn)

    def test_repr_shows_the_backend_only(self, pg: Backend) -> None:
        store = pg.open()
        for shown in (repr(store), str(store)):
            assert shown == "SqlStore(postgresql, open)"
        store.close()
        assert repr(store) == "SqlStore(postgresql, closed)"


class TestSessionSettings:
    @pytest.fixture
    def short_lock_store(
        self, postgres_server: PostgresServer, pg_places: PgPlaces
    ) -> Iterator[SqlStore]:
        """A store whose lock waits are 50 ms, in a database of its own."""
        with pg_places.database() as name:
            store = SqlStore.postgres(
                postgres_server.url(name), lock_timeout=timedelta(milliseconds=50)
            )
            try:
                yield store
            finally:
                store.close()

    def test_a_short_busy_timeout_still_lets_a_session_pause_between_its_statements(
        self, short_lock_store: SqlStore
    ) -> None:
        # A 50 ms lock wait must not become a 50 ms idle-in-transaction limit: a process
        # descheduled between two statements of its own transaction is not a stalled replica.
        assert _show(short_lock_store, "lock_timeout") == "50ms"
        assert _show(short_lock_store, "idle_in_transaction_session_timeout") == "1s"

    def test_the_schema_migration_may_pause_longer_than_a_decisions_transaction(
        self, short_lock_store: SqlStore
    ) -> None:
        # Alembic runs Python between its statements; on a busy host a pause outlasted the
        # 1 s bound meant for a stalled replica's write, and the server ended the migration.
        engine = short_lock_store.db.engine
        assert engine is not None
        with engine.connect() as conn:
            with conn.begin():
                serialize_bootstrap(conn)
                bound = conn.exec_driver_sql("SHOW idle_in_transaction_session_timeout")
                assert bound.scalar() == "1min"
            # Its own transaction's only: the session's bound is back after it.
            after = conn.exec_driver_sql("SHOW idle_in_transaction_session_timeout")
            assert after.scalar() == "1s"

    def test_timeouts_pool_and_isolation(
        self, postgres_server: PostgresServer, pg_places: PgPlaces, make: Make
    ) -> None:
        # A database whose default isolation would break the store's read-check-write steps.
        with pg_places.database() as name:
            with psycopg.connect(postgres_server.dsn(), autocommit=True) as admin:
                admin.execute(
                    sql.SQL(
                        "ALTER DATABASE {} SET default_transaction_isolation = 'serializable'"
                    ).format(sql.Identifier(name))
                )
            store = SqlStore.postgres(
                postgres_server.url(name),
                lock_timeout=timedelta(milliseconds=1500),
                statement_timeout=timedelta(seconds=7),
                pool_size=3,
            )
            try:
                store.chain_head()  # reads run in autocommit; the connection must come back
                assert _show(store, "lock_timeout") == "1500ms"
                assert _show(store, "statement_timeout") == "7s"
                # No longer than others wait for a lock it holds (a stalled replica's session).
                assert _show(store, "idle_in_transaction_session_timeout") == "1500ms"
                assert _show(store, "transaction_isolation") == "read committed"
                assert _show(store, "application_name") == "tether"
                engine = store.db.engine
                assert engine is not None
                # Up to twice pool_size connections, every one kept once opened (no overflow).
                assert engine.pool.size() == 6  # type: ignore[attr-defined]
                assert engine.pool._max_overflow == 0  # type: ignore[attr-defined]
                with engine.connect() as conn:
                    assert conn.connection.dbapi_connection is not None
                    assert conn.connection.dbapi_connection.autocommit is False
                # Racing writers get no serialization failures from the database's default.
                other = SqlStore.postgres(postgres_server.url(name))
                try:
                    replicas = [store, other]
                    outcomes = race(
                        4,
                        lambda n: [replicas[n % 2].append_audit(make.entry()) for _ in range(25)],
                    )
                    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
                    report = verify_chain(other.audit_records(), store.chain_head())
                    assert report.ok and report.records == 100
                finally:
                    other.close()
            finally:
                store.close()

    def test_a_pooled_connection_the_server_dropped_is_replaced(
        self, pg: Backend, make: Make
    ) -> None:
        store = pg.open()
        store.append_audit(make.entry())
        with psycopg.connect(pg.pg.dsn(pg.database), autocommit=True) as admin:
            ended = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'tether' AND datname = %s",
                (pg.database,),
            ).fetchone()
        assert ended is not None and ended[0] >= 1
        # The pool pings before lending: no call fails for the connection it lost.
        assert store.chain_head() is not None
        store.append_audit(make.entry())
        assert verify_chain(store.audit_records(), store.chain_head()).records == 2

    def test_options_in_the_url_come_after_ours(self, pg: Backend) -> None:
        store = SqlStore.postgres(pg.url + quote(" -c statement_timeout=3s", safe="="))
        try:
            assert _show(store, "statement_timeout") == "3s"
            assert _show(store, "lock_timeout") == "5s"
            assert _show(store, "search_path") == pg.schema
        finally:
            store.close()

    def test_tables_go_in_the_schema_the_url_names(self, pg: Backend) -> None:
        pg.open()
        with psycopg.connect(pg.pg.dsn(pg.database)) as conn:
            rows = conn.execute(
                "SELECT table_schema FROM information_schema.tables WHERE table_name = 'audit'"
            ).fetchall()
        assert pg.schema in [r[0] for r in rows]
        assert "public" not in [r[0] for r in rows]


class TestLeastPrivilege:
    @contextmanager
    def _role(self, server: PostgresServer) -> Iterator[tuple[str, str]]:
        name, password = f"tether_rt_{os.urandom(4).hex()}", os.urandom(12).hex()
        with psycopg.connect(server.dsn(), autocommit=True) as admin:
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(password)
                )
            )
        try:
            yield name, password
        finally:
            with psycopg.connect(server.dsn(), autocommit=True) as admin:
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))

    def test_every_table_has_runtime_privileges(self) -> None:
        # Alembic's version table too: a replica reads it on start to check the schema is current.
        assert set(RUNTIME_PRIVILEGES) == {*metadata.tables, VERSION_TABLE}
        assert RUNTIME_PRIVILEGES[VERSION_TABLE] == ("SELECT",)
        assert all("DELETE" not in p and "TRUNCATE" not in p for p in RUNTIME_PRIVILEGES.values())

    def test_a_runtime_role_runs_tether_but_cannot_rewrite_history(
        self, postgres_server: PostgresServer, pg_places: PgPlaces, make: Make
    ) -> None:
        server = postgres_server
        with self._role(server) as (role, password), pg_places.database() as name:
            SqlStore.postgres(server.url(name)).close()  # the owner's first start
            with psycopg.connect(server.dsn(name), autocommit=True) as owner:
                owner.execute(
                    sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(role))
                )
                for table, privileges in RUNTIME_PRIVILEGES.items():
                    owner.execute(
                        sql.SQL("GRANT {} ON {} TO {}").format(
                            sql.SQL(", ").join(sql.SQL(p) for p in privileges),
                            sql.Identifier(table),
                            sql.Identifier(role),
                        )
                    )
            url = f"postgresql://{role}:{password}@{server.host}:{server.port}/{name}"
            store = SqlStore.postgres(url)
            try:
                store.ping()
                task, grant = make.task()
                store.open_task(task, grant, make.entry())
                decision = replace(make.decision(task, grant), decision=Decision.APPROVAL_REQUIRED)
                approval = make.approval(task, grant, decision)
                store.record_decision(
                    DecisionWrite(decision, make.entry(), new_approval=(approval, make.entry()))
                )
                voted = store.vote_approval(
                    approval.approval_id,
                    lambda a: replace(a, state=ApprovalState.APPROVED),
                    lambda _: make.entry(),
                )
                assert voted.state is ApprovalState.APPROVED
                store.record_effect(make.effect(decision), make.entry())
                store.end_task(task.task_id, TaskState.CLOSED, T0, make.entry())
                report = verify_chain(store.audit_records(), store.chain_head())
                assert report.ok and report.records == 6
                # ... and signs checkpoints of it.
                key = CheckpointKey(Ed25519PrivateKey.generate())
                made = Checkpointer(
                    log=store,
                    checkpoints=SqlCheckpointStore(store),
                    signer=key.signer(),
                    verify=key.public().verifies,
                    clock=ManualClock(),
                ).tick()
                assert made is not None and made.size == 6
            finally:
                store.close()
            with psycopg.connect(
                server.dsn(name, user=role, password=password), autocommit=True
            ) as rogue:
                for attack in (
                    "UPDATE audit SET body = '{}' WHERE seq = 1",
                    "DELETE FROM audit WHERE seq = 6",
                    "TRUNCATE audit",
                    "DELETE FROM audit_head",
                    "DROP TABLE audit",
                    "DELETE FROM audit_checkpoints",
                    "UPDATE audit_checkpoints SET size = 1",
                ):
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        rogue.execute(attack)

            # The same role cannot do the first start itself: it fails closed, creating nothing.
            with pg_places.database() as empty:
                url = f"postgresql://{role}:{password}@{server.host}:{server.port}/{empty}"
                with pytest.raises(Unavailable) as caught:
                    SqlStore.postgres(url)
                assert "permission denied" in caught.value.message
                assert "42501" in caught.value.message
                assert "tether db upgrade" in caught.value.message
                _assert_opaque(caught.value, password, url)


class TestText:
    def test_text_postgresql_cannot_hold_fails_closed(self, pg: Backend, make: Make) -> None:
        store = pg.open()
        with pytest.raises(Unavailable) as caught:
            store.append_audit(make.entry(agent="spiffe://example.org/a\x00b"))
        assert caught.value.code is ErrorCode.AUDIT_UNAVAILABLE
        assert "NUL" in caught.value.message
        assert store.chain_head() is None
        store.append_audit(make.entry())
        assert verify_chain(store.audit_records(), store.chain_head()).ok


# -- losing the server ---------------------------------------------------------------------------


def _closed_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _timed(call: Callable[[], object]) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    try:
        call()
    except BaseException as exc:
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


def _server_processes(server: PostgresServer) -> list[int]:
    """The postmaster and every process it started (backends, checkpointer, ...)."""
    postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        if int(fields[1]) == postmaster:
            children.append(int(stat.parent.name))
    return [postmaster, *children]


@contextmanager
def _frozen(server: PostgresServer) -> Iterator[None]:
    """The server's processes stopped (SIGSTOP): its sockets stay open, nothing answers."""
    processes = _server_processes(server)
    try:
        for pid in processes:
            os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in processes:
            os.kill(pid, signal.SIGCONT)


@pytest.fixture(scope="module")
def own_server() -> Iterator[PostgresServer]:
    """A server of this module's own, so stopping it disturbs no other test."""
    with running_postgres() as server:
        yield server


class TestServerLost:
    def test_a_stopped_server_fails_every_call_then_recovers(
        self, own_server: PostgresServer, make: Make
    ) -> None:
        server = own_server
        name = f"d_{os.urandom(4).hex()}"
        with psycopg.connect(server.dsn(), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        url = server.url(name)
        store = SqlStore.postgres(url, connect_timeout=timedelta(seconds=2))
        task, grant = make.task()
        store.open_task(task, grant, make.entry())
        decision = replace(make.decision(task, grant), decision=Decision.APPROVAL_REQUIRED)
        approval = make.approval(task, grant, decision)
        store.record_decision(
            DecisionWrite(decision, make.entry(), new_approval=(approval, make.entry()))
        )
        before = list(store.audit_records())
        later = make.decision(task, grant)

        store_calls: dict[str, Callable[[], object]] = {
            "open_task": lambda: store.open_task(*make.task(), make.entry()),
            "get_task": lambda: store.get_task(task.task_id),
            "get_grant": lambda: store.get_grant(grant.grant_id),
            # The hot read, on the pool's driver connection: the pool's own error when it
            # cannot connect must come out as Unavailable too.
            "get_grant_with_task": lambda: store.get_grant_with_task(grant.grant_id),
            "end_task": lambda: store.end_task(task.task_id, TaskState.CLOSED, T0, make.entry()),
            "open_tasks_of": lambda: store.open_tasks_of(task.task_id),
            "expired_open_tasks": lambda: store.expired_open_tasks(T0, 10),
            "record_decision": lambda: store.record_decision(DecisionWrite(later, make.entry())),
            "use_approval": lambda: store.record_decision(
                DecisionWrite(later, make.entry(), use_approval=approval.approval_id)
            ),
            "get_decision": lambda: store.get_decision(decision.decision_id),
            "record_effect": lambda: store.record_effect(make.effect(decision), make.entry()),
            "get_effect": lambda: store.get_effect(decision.decision_id),
            "get_approval": lambda: store.get_approval(approval.approval_id),
            "list_approvals": lambda: store.list_approvals(),
            "find_pending_approval": lambda: store.find_pending_approval(
                agent=approval.agent,
                task_id=task.task_id,
                tool=approval.tool,
                action=approval.action,
                dataset=approval.dataset,
                args_mac=approval.args_mac,
                now=T0,
            ),
            "vote_approval": lambda: store.vote_approval(
                approval.approval_id, lambda a: a, lambda _: make.entry()
            ),
            "task_activity": lambda: store.task_activity(task.task_id),
            "ping": store.ping,
        }
        audit_calls: dict[str, Callable[[], object]] = {
            "append_audit": lambda: store.append_audit(make.entry()),
            "audit_records": lambda: list(store.audit_records()),
            "chain_head": store.chain_head,
        }

        server.stop()
        try:
            for calls, code in (
                (store_calls, ErrorCode.STORE_UNAVAILABLE),
                (audit_calls, ErrorCode.AUDIT_UNAVAILABLE),
            ):
                for method, call in calls.items():
                    error, elapsed = _timed(call)
                    assert isinstance(error, Unavailable), (method, error)
                    assert error.code is code, method
                    assert elapsed < BOUND, (method, elapsed)
                    _assert_opaque(error, server.password, url, str(server.port))
            error, elapsed = _timed(lambda: SqlStore.postgres(url))
            assert isinstance(error, Unavailable) and elapsed < BOUND
        finally:
            server.start()

        # Back by itself: the pool drops dead connections and connects again.
        store.ping()
        assert list(store.audit_records()) == before  # nothing was half-written meanwhile
        store.append_audit(make.entry(AuditKind.POLICY_LOADED))
        report = verify_chain(store.audit_records(), store.chain_head())
        assert report.ok and report.records == len(before) + 1
        store.close()

    def test_the_server_restarting_under_a_writer(
        self, own_server: PostgresServer, make: Make
    ) -> None:
        # Appends racing a restart: each one is written whole or refused, never half, and the
        # chain they leave verifies.
        server = own_server
        store = SqlStore.postgres(server.url(), connect_timeout=timedelta(seconds=2))
        written: list[int] = []
        refused: list[ErrorCode] = []
        stop = threading.Event()

        def writer() -> None:
            while not stop.is_set():
                try:
                    written.append(store.append_audit(make.entry()).seq)
                except Unavailable as exc:
                    refused.append(exc.code)
                    time.sleep(0.01)

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            time.sleep(0.2)
            server.stop()
            time.sleep(0.3)
            server.start()
            time.sleep(0.3)
        finally:
            stop.set()
            thread.join(timeout=BOUND)
        assert not thread.is_alive()
        assert refused and set(refused) == {ErrorCode.AUDIT_UNAVAILABLE}
        stored = [r.seq for r in store.audit_records()]
        assert set(written) <= set(stored)
        report = verify_chain(store.audit_records(), store.chain_head())
        assert report.ok
        store.close()

    def test_a_server_that_stops_answering(self, own_server: PostgresServer, make: Make) -> None:
        # Alive at the TCP level, so neither keepalives nor a refused connection end the wait:
        # the store's own deadline (lock + statement timeout, then the connect timeout for the
        # pool's ping) must.
        second = timedelta(seconds=1)
        store = SqlStore.postgres(
            own_server.url(),
            lock_timeout=second,
            statement_timeout=second,
            connect_timeout=2 * second,
        )
        task, grant = make.task()
        store.open_task(task, grant, make.entry())
        for _ in range(3):  # several pooled connections, some idle, some lent when it freezes
            store.chain_head()
        head = store.chain_head()
        calls: list[Callable[[], object]] = [
            store.ping,
            store.chain_head,
            lambda: store.append_audit(make.entry()),
            lambda: store.get_task(task.task_id),
        ]
        outcomes: list[tuple[BaseException | None, float]] = [(None, 0.0)] * len(calls)

        def run(n: int) -> None:
            outcomes[n] = _timed(calls[n])

        with _frozen(own_server):
            workers = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
            for w in workers:
                w.start()
            for w in workers:
                w.join(timeout=3 * BOUND)
            assert not any(w.is_alive() for w in workers), "a call hung on a frozen server"

        for error, elapsed in outcomes:
            assert isinstance(error, Unavailable), error
            assert elapsed < BOUND
        store.ping()  # back by itself once the server answers again
        assert store.chain_head() == head
        assert store.get_task(task.task_id) == task
        store.close()


class TestUnreachable:
    def test_a_closed_port(self) -> None:
        url = f"postgresql://tether:hunter2@127.0.0.1:{_closed_port()}/tether"
        error, elapsed = _timed(lambda: SqlStore.postgres(url))
        assert isinstance(error, Unavailable), error
        assert error.code is ErrorCode.STORE_UNAVAILABLE
        assert "cannot connect" in error.message
        assert elapsed < BOUND
        _assert_opaque(error, "hunter2", url, "tether:")

    def test_a_server_that_never_answers(self) -> None:
        # The kernel completes the handshake (backlog) but nothing ever speaks: only
        # connect_timeout ends the wait.
        with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            port = silent.getsockname()[1]
            url = f"postgresql://tether:hunter2@127.0.0.1:{port}/tether?sslmode=disable"
            error, elapsed = _timed(
                lambda: SqlStore.postgres(url, connect_timeout=timedelta(seconds=2))
            )
        assert isinstance(error, Unavailable), error
        assert 1.5 < elapsed < BOUND
        _assert_opaque(error, "hunter2", url)

    def test_wrong_password_and_missing_database(self, postgres_server: PostgresServer) -> None:
        s = postgres_server
        wrong = f"postgresql://{s.superuser}:not-{s.password}@{s.host}:{s.port}/postgres"
        with pytest.raises(Unavailable) as caught:
            SqlStore.postgres(wrong)
        assert "credentials" in caught.value.message
        _assert_opaque(caught.value, s.password, wrong, s.superuser + ":")
        missing = s.url("no_such_database")
        with pytest.raises(Unavailable) as caught:
            SqlStore.postgres(missing)
        assert "does not exist" in caught.value.message
        _assert_opaque(caught.value, s.password, missing)
