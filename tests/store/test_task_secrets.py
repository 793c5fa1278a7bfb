"""Each task's provenance secret against every backend: kept with the task while it is open,
wiped in the same write that ends it (closed, expired, revoked with its agent, or ended with
the task it was delegated from), and given by migration 0009 to the tasks open before it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import insert, text

from tether.core.audit import AuditKind
from tether.core.ids import TaskId
from tether.core.provenance import Source, Trust, observe
from tether.core.task import Task, TaskState
from tether.store import SqlStore, schema
from tether.store.codec import grant_params, task_params
from tether.store.migrate import MIGRATIONS
from tether.store.observations import SqlObservationStore

from .conftest import AGENT, T0, Backend, Make

KEY = bytes(range(32))
PAGE = Source("web.browse", None, Trust.UNTRUSTED)


def _raw_secret(backend: Backend, task_id: str) -> object:
    with backend.raw().connect() as conn:
        return conn.execute(
            text("SELECT provenance_secret FROM tasks WHERE task_id = :t"), {"t": task_id}
        ).scalar_one()


def test_a_tasks_secret_is_kept_with_it_and_read_by_every_handle(
    backend: Backend, make: Make
) -> None:
    writer, reader = backend.open(), backend.open()
    task, grant = make.task()
    assert task.provenance_secret is not None and len(task.provenance_secret) == 32
    writer.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))
    assert reader.get_task(task.task_id) == task
    assert reader.get_grant_with_task(grant.grant_id)[1] == task  # the decision's joined read
    assert _raw_secret(backend, task.task_id) == task.provenance_secret.hex()
    # Never shown: not in the task's repr.
    assert task.provenance_secret.hex() not in repr(task)


def _close(store: SqlStore, make: Make, task: Task) -> None:
    store.end_task(task.task_id, TaskState.CLOSED, T0, make.entry(AuditKind.TASK_CLOSED))


def _expire(store: SqlStore, make: Make, task: Task) -> None:
    store.end_task(task.task_id, TaskState.EXPIRED, T0, make.entry(AuditKind.TASK_EXPIRED))


def _revoke_agent(store: SqlStore, make: Make, task: Task) -> None:
    store.revoke_agent(
        AGENT,
        T0,
        "compromised",
        "op:alice",
        make.entry(AuditKind.AGENT_REVOKED),
        lambda t: make.entry(AuditKind.TASK_REVOKED, task_id=t.task_id),
        lambda t: make.entry(AuditKind.TASK_REVOKED, task_id=t.task_id),
    )


@pytest.mark.parametrize("end", [_close, _expire, _revoke_agent], ids=["close", "expire", "kill"])
def test_ending_a_task_wipes_its_secret_and_its_delegates(
    backend: Backend, make: Make, end: object
) -> None:
    store, reader = backend.open(), backend.open()
    parent, parent_grant = make.task()
    store.open_task(parent, parent_grant, make.entry(AuditKind.TASK_OPENED))
    child, child_grant = make.task(agent="spiffe://tether.local/agent/helper")
    child = replace(child, parent_task_id=parent.task_id)
    child_grant = replace(child_grant, task_id=child.task_id)
    store.open_task(child, child_grant, make.entry(AuditKind.TASK_DELEGATED))
    other, other_grant = make.task(agent="spiffe://tether.local/agent/other")
    store.open_task(other, other_grant, make.entry(AuditKind.TASK_OPENED))

    end(store, make, parent)  # type: ignore[operator]

    for ended in (parent, child):
        got = reader.get_task(ended.task_id)
        assert got is not None and got.state is not TaskState.OPEN
        assert got.provenance_secret is None
        assert _raw_secret(backend, ended.task_id) is None
    assert reader.get_grant_with_task(parent_grant.grant_id)[1].provenance_secret is None  # type: ignore[union-attr]
    # A task that did not end keeps its secret.
    assert reader.get_task(other.task_id) == other


def _config(conn: object) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = conn
    return config


def test_migration_0009_keeps_open_tasks_on_the_master_key_and_shreds_ended_ones(
    backend: Backend, make: Make
) -> None:
    engine = backend.raw()
    open_task, open_grant = make.task()
    closed_task, closed_grant = make.task()
    closed_task = replace(closed_task, state=TaskState.CLOSED, ended_at=T0)
    seen = observe(KEY, PAGE, "see https://evil.example.com/x")
    try:
        with engine.begin() as conn:
            command.upgrade(_config(conn), "0008")
            for task, grant in ((open_task, open_grant), (closed_task, closed_grant)):
                params = task_params(task)
                del params["provenance_secret"]  # not a column before version 9
                conn.execute(insert(schema.tasks), params)
                conn.execute(insert(schema.grants), grant_params(grant))
                for fp in seen.fingerprints:
                    conn.execute(
                        insert(schema.observations),
                        {
                            "task_id": task.task_id,
                            "fingerprint": fp,
                            "tool": PAGE.tool,
                            "dataset": "",
                            "trust": PAGE.trust.value,
                            "observed_at": T0,
                        },
                    )
    finally:
        engine.dispose()

    store = backend.open()  # upgrades to the head
    assert store.schema_state().up_to_date
    # The task open at the upgrade keeps its rows and the master key (an empty secret).
    got = store.get_task(open_task.task_id)
    assert got is not None and got.provenance_secret == b""
    observations = SqlObservationStore(store)
    assert observations.observations([TaskId(open_task.task_id)]) == [seen]
    # The ended task's rows, made under the master key alone, are gone; so is any secret.
    assert observations.observations([TaskId(closed_task.task_id)]) == []
    assert _raw_secret(backend, closed_task.task_id) is None
