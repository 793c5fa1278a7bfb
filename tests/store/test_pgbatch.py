"""PostgreSQL's batch of plain decisions (tether.store.pgbatch): two messages to the server and
one commit for the whole batch, the same rows, chain and locks as the general write, a refused
value failing its own decision alone, and a dropped pooled connection replaced; and the pool
keeping the connections it opened under load."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event

from tether.core.audit import AuditKind, AuditRecord, verify_chain
from tether.core.errors import ErrorCode, Unavailable
from tether.core.facts import TaskProgress
from tether.core.ids import TaskId
from tether.service.ports import DecisionWrite
from tether.store import SqlStore
from tether.store.groupcommit import Pending

from .conftest import Backend, Make


def _run(store: SqlStore, writes: Sequence[DecisionWrite]) -> list[Pending[Any, object]]:
    """``writes`` as one batch of the group commit, as its leader runs it."""
    batch: list[Pending[Any, object]] = [Pending(w) for w in writes]
    store._decisions._run_batch(batch)
    return batch


@contextmanager
def frontend_messages(store: SqlStore) -> Iterator[list[str]]:
    """The protocol messages tether's connections send the server while the block runs, read
    from libpq's own trace of each connection the pool lends (``PQtrace``): after the block,
    the list holds each message's type (``Query``, ``Parse``, ``Bind``, ``Sync``...)."""
    engine = store.db.engine
    assert engine is not None
    traces: list[Path] = []
    files: list[Any] = []
    folder = Path(tempfile.mkdtemp(prefix="tether-trace-"))

    def trace(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        path = folder / f"{len(traces)}.trace"
        handle = path.open("w")
        files.append(handle)
        traces.append(path)
        dbapi_connection.pgconn.trace(handle.fileno())

    event.listen(engine, "checkout", trace)
    sent: list[str] = []
    try:
        yield sent
    finally:
        event.remove(engine, "checkout", trace)
        for handle in files:
            handle.flush()
            os.fsync(handle.fileno())
        for path in traces:
            for line in path.read_text().splitlines():
                parts = line.split("\t")
                # PQtrace lines: timestamp, direction (F: from the client), length, type...
                direction = next((p for p in parts if p in ("F", "B")), None)
                if direction == "F":
                    sent.append(parts[parts.index("F") + 2].split(" ")[0])
        for handle in files:
            handle.close()


def _assert_recorded(store: SqlStore, writes: Sequence[DecisionWrite], chained: int) -> None:
    """Each of ``writes`` is recorded, and the chain holds ``chained`` records, unbroken."""
    for write in writes:
        assert store.get_decision(write.decision.decision_id) == write.decision
    report = verify_chain(store.audit_records(), store.chain_head())
    assert report.ok and report.records == chained, report


def _round_trips(messages: list[str]) -> int:
    """Each ``Query`` (simple protocol) or ``Sync`` (extended) waits for the server's answer."""
    return sum(1 for m in messages if m in ("Query", "Sync"))


def test_a_batch_of_plain_decisions_is_two_messages_and_one_commit(
    pg_backend: Backend, make: Make
) -> None:
    store = pg_backend.open()
    task, grant = make.opened(store)
    writes = [DecisionWrite(make.decision(task, grant), make.entry()) for _ in range(3)]
    with frontend_messages(store) as sent:
        batch = _run(store, writes)
    assert [p.error for p in batch] == [None, None, None]
    assert _round_trips(sent) == 2, sent
    records = [p.result for p in batch]
    assert all(isinstance(r, AuditRecord) for r in records)
    assert [r.seq for r in records if isinstance(r, AuditRecord)] == [2, 3, 4]
    _assert_recorded(store, writes, chained=4)


def test_a_value_the_server_refuses_fails_its_decision_alone_in_the_batch(
    pg_backend: Backend, make: Make
) -> None:
    store = pg_backend.open()
    task, grant = make.opened(store)
    writes = [
        DecisionWrite(make.decision(task, grant), make.entry()),
        DecisionWrite(make.decision(task, grant), make.entry(agent="spiffe://x/a\x00b")),
        DecisionWrite(make.decision(task, grant), make.entry()),
    ]
    first, refused, third = _run(store, writes)
    assert isinstance(refused.error, Unavailable) and "NUL" in refused.error.message
    assert first.error is None and third.error is None
    assert store.get_decision(writes[1].decision.decision_id) is None
    _assert_recorded(store, [writes[0], writes[2]], chained=3)


def test_a_head_moved_back_behind_its_records_writes_nothing(
    pg_backend: Backend, make: Make
) -> None:
    store = pg_backend.open()
    task, grant = make.opened(store)
    store.record_decision(DecisionWrite(make.decision(task, grant), make.entry()))
    # Edited outside tether: the head names the first record, though a second one exists.
    first = next(iter(store.audit_records()))
    pg_backend.execute(
        "UPDATE audit_head SET seq = :seq, hash = :hash", seq=first.seq, hash=first.hash
    )
    writes = [DecisionWrite(make.decision(task, grant), make.entry()) for _ in range(2)]
    batch = _run(store, writes)
    for pending in batch:
        assert isinstance(pending.error, Unavailable), pending.error
        assert pending.error.code is ErrorCode.INTERNAL
    for write in writes:
        assert store.get_decision(write.decision.decision_id) is None
    assert len(list(store.audit_records())) == 2


def test_the_progress_of_a_plain_decision_moves_its_task_in_the_same_commit(
    pg_backend: Backend, make: Make
) -> None:
    store = pg_backend.open()
    task, grant = make.opened(store)
    moved = TaskProgress(TaskId(task.task_id), "confidential", "review")
    write = DecisionWrite(make.decision(task, grant), make.entry(), progress=(moved,))
    with frontend_messages(store) as sent:
        (pending,) = _run(store, [write])
    assert pending.error is None
    assert _round_trips(sent) == 2, sent
    found = store.get_task(task.task_id)
    assert found is not None
    assert (found.label, found.workflow_step) == ("confidential", "review")


def test_pooled_connections_the_server_dropped_are_replaced_and_the_batch_written(
    pg_backend: Backend, make: Make
) -> None:
    store = pg_backend.open()
    task, grant = make.opened(store)
    store.record_decision(DecisionWrite(make.decision(task, grant), make.entry()))
    with psycopg.connect(pg_backend.dsn(), autocommit=True) as admin:
        # Ended for good (waited for) before the write, not only signalled.
        ended = admin.execute(
            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
            "WHERE application_name = 'tether' AND datname = current_database()"
        ).fetchone()
    assert ended is not None and ended[0] >= 1  # the pool's idle connections are gone
    write = DecisionWrite(make.decision(task, grant), make.entry(AuditKind.DECISION))
    record = store.record_decision(write)
    assert record.seq == 3
    report = verify_chain(store.audit_records(), store.chain_head())
    assert report.ok and report.records == 3, report


def test_connections_opened_under_load_are_kept_for_the_next_burst(pg_backend: Backend) -> None:
    store = pg_backend.open()  # the default pool size, 5: up to 10 connections
    engine = store.db.engine
    assert engine is not None
    burst = [engine.connect() for _ in range(10)]  # ten callers at once, as under load
    pids = [c.connection.driver_connection.info.backend_pid for c in burst]  # type: ignore[union-attr]
    for conn in burst:
        conn.close()  # back to the pool
    with psycopg.connect(pg_backend.dsn(), autocommit=True) as admin:
        alive = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
        ).fetchone()
    # None closed: the next burst reuses them instead of forking and authenticating anew.
    assert alive is not None and alive[0] == 10


def test_a_partitions_first_write_being_a_decision_opens_its_head(
    pg_backend: Backend, make: Make
) -> None:
    opener = pg_backend.open(partition="a")
    task, grant = make.opened(opener)
    fresh = pg_backend.open(partition="b")  # no head row yet: its first write makes it
    write = DecisionWrite(make.decision(task, grant), make.entry())
    record = fresh.record_decision(write)
    assert (record.partition, record.seq) == ("b", 1)
    assert fresh.chain_heads()["b"] is not None
    second = fresh.record_decision(DecisionWrite(make.decision(task, grant), make.entry()))
    assert (second.partition, second.seq) == ("b", 2)
