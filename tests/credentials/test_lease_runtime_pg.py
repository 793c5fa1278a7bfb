"""PostgreSQL leases through tether's whole decision path, against a real server: an allowed read
gets a login that can read exactly its dataset, closing the task drops it, PostgreSQL down at
mint time denies, and PostgreSQL down at revoke time is retried by the reaper after a restart."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import errors as pg_errors

from support import INTENT, copy_policies
from tether.core.call import Call
from tether.core.identity import Workload
from tether.core.scope import ActionKind, Scope
from tether.core.task import Intent
from tether.core.verdict import Decision, ReasonCode, Verdict
from tether.credentials.downstream import CREDENTIALS_FILE
from tether.runtime import Runtime, RuntimeConfig, dev_issuer, open_runtime
from tether.service.clock import ManualClock

from .conftest import Database

ENV = "TETHER_TEST_WAREHOUSE_DSN"
READ = Scope.of("crm.query", ["read"], ["crm"])
QUERY = Call("crm.query", ActionKind.READ, "crm", {})


def _credentials(db: Database) -> str:
    return f"""\
issuers:
  - name: warehouse
    kind: postgres_role
    tools: [crm.query]
    admin_dsn_env: {ENV}
    role_prefix: {db.role_prefix}
    ttl_seconds: 300
    datasets:
      crm: [crm.customers]
"""


@pytest.fixture
def clock() -> ManualClock:
    # PostgreSQL checks VALID UNTIL against its own (real) clock: start from now.
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def policies(tmp_path: Path, pg_db: Database) -> Path:
    target = copy_policies(tmp_path / "policies")
    (target / CREDENTIALS_FILE).write_text(_credentials(pg_db))
    return target


def _runtime(tmp_path: Path, policies: Path, clock: ManualClock, dsn: str) -> Runtime:
    config = RuntimeConfig(data_dir=tmp_path / "data", policy_dir=policies, environ={ENV: dsn})
    return open_runtime(config, clock=clock)


@pytest.fixture
def runtime(
    tmp_path: Path, policies: Path, clock: ManualClock, pg_db: Database
) -> Iterator[Runtime]:
    rt = _runtime(tmp_path, policies, clock, pg_db.admin_dsn)
    yield rt
    rt.close()


def _analyst(runtime: Runtime, clock: ManualClock) -> Workload:
    svid = dev_issuer(runtime.config).mint_svid("analyst", audience="tether", now=clock.now())
    return runtime.verifier.verify(svid, clock.now())


def _open(runtime: Runtime, agent: Workload) -> tuple[str, str]:
    opened = runtime.tasks.open_task(agent, Intent(**INTENT), [READ])
    return opened.task.task_id, opened.token


def _login(verdict: Verdict) -> psycopg.Connection[tuple[object, ...]]:
    assert verdict.credential is not None
    return psycopg.connect(verdict.credential.value, autocommit=True, connect_timeout=5)


def _role_exists(db: Database, role: str) -> bool:
    with db.admin() as admin:
        found = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    return found is not None


def test_an_allowed_read_gets_a_login_for_exactly_its_dataset_until_the_task_closes(
    runtime: Runtime, clock: ManualClock, pg_db: Database
) -> None:
    agent = _analyst(runtime, clock)
    task_id, grant = _open(runtime, agent)

    verdict = runtime.authorizer.authorize(agent, grant, QUERY, credentials=True)

    assert verdict.decision is Decision.ALLOW and verdict.credential is not None
    assert verdict.credential.kind == "postgres_role"
    role = pg_db.role_prefix + verdict.credential.lease_id
    with _login(verdict) as conn:
        assert conn.execute("SELECT count(*) FROM crm.customers").fetchone() == (2,)
        with pytest.raises(pg_errors.InsufficientPrivilege):
            conn.execute("INSERT INTO crm.customers VALUES (3, 'eve')")
        with pytest.raises(pg_errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM crm.notes")
    # The connection string carries a password; the audit log never does.
    password = psycopg.conninfo.conninfo_to_dict(verdict.credential.value)["password"]
    assert isinstance(password, str) and len(password) >= 32
    assert all(password not in str(r.body) for r in runtime.store.audit_records())

    runtime.tasks.close_task(agent, task_id)  # type: ignore[arg-type]

    assert not _role_exists(pg_db, role)
    with pytest.raises(psycopg.OperationalError):
        _login(verdict).close()
    kinds = [r.kind.value for r in runtime.store.audit_records()]
    assert kinds[-2:] == ["task_closed", "lease_released"]


def test_postgres_down_at_mint_time_denies_and_leaves_nothing(
    tmp_path: Path, policies: Path, clock: ManualClock, pg_db: Database
) -> None:
    dead = pg_db.server.dsn(pg_db.name, port="1", connect_timeout="2")
    runtime = _runtime(tmp_path, policies, clock, dead)
    try:
        agent = _analyst(runtime, clock)
        _, grant = _open(runtime, agent)

        verdict = runtime.authorizer.authorize(agent, grant, QUERY, credentials=True)

        assert verdict.decision is Decision.DENY and verdict.credential is None
        assert verdict.reasons[0].code is ReasonCode.CREDENTIAL_UNAVAILABLE
        assert pg_db.server.password not in verdict.reasons[0].message
        assert runtime.leases.recent() == []
        decision = [r for r in runtime.store.audit_records() if r.kind.value == "decision"]
        assert decision[-1].body["verdict"]["decision"] == "deny"  # type: ignore[index]
    finally:
        runtime.close()


def test_postgres_down_at_revoke_time_is_retried_by_the_reaper_after_a_restart(
    tmp_path: Path, policies: Path, clock: ManualClock, pg_db: Database
) -> None:
    first = _runtime(tmp_path, policies, clock, pg_db.admin_dsn)
    agent = _analyst(first, clock)
    task_id, grant = _open(first, agent)
    verdict = first.authorizer.authorize(agent, grant, QUERY, credentials=True)
    assert verdict.credential is not None
    role = pg_db.role_prefix + verdict.credential.lease_id
    first.close()

    # A replica that cannot reach PostgreSQL closes the task: tether refuses the lease at once,
    # the role is still there, and the lease is remembered as not yet released.
    dead = pg_db.server.dsn(pg_db.name, port="1", connect_timeout="2")
    cut_off = _runtime(tmp_path, policies, clock, dead)
    cut_off.tasks.close_task(agent, task_id)  # type: ignore[arg-type]
    assert not cut_off.leases.is_active(verdict.credential.lease_id)
    assert _role_exists(pg_db, role)
    assert cut_off.leases.reap() == (0, 0)
    cut_off.close()

    # After a restart with PostgreSQL reachable, the first sweep drops the role.
    clock.advance(2)
    again = _runtime(tmp_path, policies, clock, pg_db.admin_dsn)
    try:
        assert again.leases.reap() == (0, 1)
        assert not _role_exists(pg_db, role)
        assert again.leases.reap() == (0, 0)
        released = [r for r in again.store.audit_records() if r.kind.value == "lease_released"]
        assert [r.body["lease_id"] for r in released] == [verdict.credential.lease_id]
    finally:
        again.close()


def test_an_expired_lease_is_swept_and_its_role_dropped(
    runtime: Runtime, clock: ManualClock, pg_db: Database
) -> None:
    agent = _analyst(runtime, clock)
    _, grant = _open(runtime, agent)
    verdict = runtime.authorizer.authorize(agent, grant, QUERY, credentials=True)
    assert verdict.credential is not None
    role = pg_db.role_prefix + verdict.credential.lease_id

    clock.advance(300)

    assert runtime.leases.reap() == (1, 1)
    assert not _role_exists(pg_db, role)


def test_every_role_tether_made_is_gone_after_the_tasks_end(
    runtime: Runtime, clock: ManualClock, pg_db: Database
) -> None:
    agent = _analyst(runtime, clock)
    tasks = [_open(runtime, agent) for _ in range(3)]
    for _, grant in tasks:
        for _ in range(2):
            assert runtime.authorizer.authorize(agent, grant, QUERY, credentials=True).allowed
    runtime.agents.revoke(agent.id, "incident drill", "operator:test")
    with pg_db.admin() as admin:
        left = admin.execute(
            "SELECT count(*) FROM pg_roles WHERE starts_with(rolname, %s)", (pg_db.role_prefix,)
        ).fetchone()
    assert left == (0,)
    assert os.environ.get(ENV) is None  # the admin DSN came from the runtime's environ only
