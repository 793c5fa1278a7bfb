"""The audit chain as stored: tampering at the SQL level is caught, writers never fork it."""

from __future__ import annotations

import tempfile
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.core.audit import AuditKind, AuditRecord, ChainHead, canonical_json, seal, verify_chain
from tether.core.errors import ErrorCode, Unavailable
from tether.core.scope import JSONValue
from tether.core.task import TaskState
from tether.service.ports import AuditEntry, DecisionWrite
from tether.store import SqlStore

from .conftest import T0, Backend, Make, provisioned

RECORDS = 8


@pytest.fixture
def chain(store: SqlStore, make: Make) -> list[AuditRecord]:
    """A store holding eight records written by every kind of mutation."""
    task, grant = make.task()
    decision = make.decision(task, grant)
    store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED, task_id=task.task_id))
    store.record_decision(
        DecisionWrite(decision, make.entry(AuditKind.DECISION, body={"amount": 42.5}))
    )
    store.record_effect(make.effect(decision), make.entry(AuditKind.EFFECT))
    for n in range(4):
        store.append_audit(make.entry(AuditKind.POLICY_LOADED, agent=None, body={"n": n}))
    store.end_task(task.task_id, TaskState.CLOSED, T0, make.entry(AuditKind.TASK_CLOSED))
    records = list(store.audit_records())
    assert len(records) == RECORDS
    return records


def _verify(store: SqlStore) -> tuple[bool, int | None, str | None]:
    report = verify_chain(store.audit_records(), store.chain_head())
    return report.ok, report.first_bad_seq, report.problem


def _row(record: AuditRecord) -> dict[str, object]:
    return {
        "seq": record.seq,
        "record_id": record.record_id,
        "at": record.at,
        "kind": record.kind.value,
        "agent": record.agent,
        "task_id": record.task_id,
        "body": canonical_json(record.body).decode(),
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }


_INSERT = (
    "INSERT INTO audit (seq, record_id, at, kind, agent, task_id, body, prev_hash, hash, "
    "partition_id) VALUES (:seq, :record_id, :at, :kind, :agent, :task_id, :body, :prev_hash, "
    ":hash, '0')"
)


class TestTampering:
    def test_an_untouched_chain_verifies(self, store: SqlStore, chain: list[AuditRecord]) -> None:
        assert _verify(store) == (True, None, None)

    def test_edited_body(self, backend: Backend, store: SqlStore, chain: list[AuditRecord]) -> None:
        backend.execute("UPDATE audit SET body = :b WHERE seq = 4", b='{"n":99}')
        ok, bad, problem = _verify(store)
        assert (ok, bad) == (False, 4)
        assert problem is not None and "changed" in problem

    def test_edited_and_resealed_record_breaks_the_next_link(
        self, backend: Backend, store: SqlStore, chain: list[AuditRecord]
    ) -> None:
        before = chain[2]
        forged = seal(
            ChainHead(before.seq, before.hash),
            record_id=chain[3].record_id,
            at=chain[3].at,
            kind=chain[3].kind,
            agent=chain[3].agent,
            task_id=chain[3].task_id,
            body={"n": 99},
        )
        backend.execute("DELETE FROM audit WHERE seq = 4")
        backend.execute(_INSERT, **_row(forged))
        assert _verify(store)[:2] == (False, 5)

    def test_deleted_middle_record(
        self, backend: Backend, store: SqlStore, chain: list[AuditRecord]
    ) -> None:
        backend.execute("DELETE FROM audit WHERE seq = 4")
        ok, bad, problem = _verify(store)
        assert (ok, bad) == (False, 5)
        assert problem is not None and "deleted" in problem

    def test_deleted_last_record_is_caught_by_the_head(
        self, backend: Backend, store: SqlStore, chain: list[AuditRecord]
    ) -> None:
        backend.execute("DELETE FROM audit WHERE seq = :s", s=RECORDS)
        assert verify_chain(store.audit_records()).ok  # the records alone cannot tell
        ok, bad, problem = _verify(store)
        assert (ok, bad) == (False, RECORDS)
        assert problem is not None and "removed from the end" in problem

    def test_swapped_records(
        self, backend: Backend, store: SqlStore, chain: list[AuditRecord]
    ) -> None:
        third, sixth = _row(chain[2]), _row(chain[5])
        columns = "record_id = :record_id, at = :at, kind = :kind, agent = :agent, "
        columns += "task_id = :task_id, body = :body, prev_hash = :prev_hash, hash = :hash"
        backend.execute("UPDATE audit SET record_id = 'moving' WHERE seq = 6")
        backend.execute(f"UPDATE audit SET {columns} WHERE seq = 3", **{**sixth, "seq": 3})
        backend.execute(f"UPDATE audit SET {columns} WHERE seq = 6", **{**third, "seq": 6})
        assert _verify(store)[:2] == (False, 3)

    def test_inserted_record(
        self, backend: Backend, store: SqlStore, chain: list[AuditRecord]
    ) -> None:
        # The strongest forger: makes room after record 4 and seals a valid-looking record there.
        for seq in range(RECORDS, 4, -1):
            backend.execute("UPDATE audit SET seq = :new WHERE seq = :old", new=seq + 1, old=seq)
        anchor = chain[3]
        forged = seal(
            ChainHead(anchor.seq, anchor.hash),
            record_id="aud_forged",
            at=anchor.at,
            kind=AuditKind.DECISION,
            agent=anchor.agent,
            task_id=None,
            body={"forged": True},
        )
        backend.execute(_INSERT, **_row(forged))
        # Record 5 is a perfect forgery; the record after it no longer links to its predecessor.
        assert _verify(store)[:2] == (False, 6)

    def test_appended_record_is_caught_by_the_head(
        self, backend: Backend, store: SqlStore, chain: list[AuditRecord]
    ) -> None:
        last = chain[-1]
        forged = seal(
            ChainHead(last.seq, last.hash),
            record_id="aud_forged",
            at=last.at,
            kind=AuditKind.DECISION,
            agent=None,
            task_id=None,
            body={},
        )
        backend.execute(_INSERT, **_row(forged))
        ok, _, problem = _verify(store)
        assert not ok
        assert problem is not None and "head" in problem

    def test_unreadable_records_stop_the_reader(
        self, backend: Backend, store: SqlStore, chain: list[AuditRecord]
    ) -> None:
        backend.execute("UPDATE audit SET kind = 'mystery' WHERE seq = 2")
        with pytest.raises(Unavailable) as caught:
            list(store.audit_records())
        assert caught.value.code is ErrorCode.AUDIT_UNAVAILABLE
        assert "record 2" in caught.value.message
        backend.execute("UPDATE audit SET kind = 'decision', body = '{not json' WHERE seq = 2")
        with pytest.raises(Unavailable):
            list(store.audit_records())

    def test_missing_head_fails_closed(
        self, backend: Backend, store: SqlStore, make: Make, chain: list[AuditRecord]
    ) -> None:
        backend.execute("DELETE FROM audit_head")
        with pytest.raises(Unavailable) as caught:
            store.chain_head()
        assert caught.value.code is ErrorCode.AUDIT_UNAVAILABLE
        with pytest.raises(Unavailable):
            store.append_audit(make.entry())
        assert list(store.audit_records()) == chain


class TestConcurrentWriters:
    @pytest.mark.parametrize(("threads", "appends"), [(2, 200)])
    def test_two_handles_appending_from_threads_make_one_chain(
        self, backend: Backend, make: Make, threads: int, appends: int
    ) -> None:
        handles = [backend.open() for _ in range(threads)]
        start = threading.Barrier(threads)
        written: list[list[AuditRecord]] = [[] for _ in range(threads)]
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                start.wait()
                for i in range(appends):
                    body: dict[str, JSONValue] = {"writer": n, "i": i}
                    written[n].append(handles[n].append_audit(make.entry(body=body)))
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

        assert errors == []
        stored = list(handles[0].audit_records())
        assert [r.seq for r in stored] == list(range(1, threads * appends + 1))
        assert sorted(r.seq for mine in written for r in mine) == [r.seq for r in stored]
        assert {r.record_id for mine in written for r in mine} == {r.record_id for r in stored}
        # Each writer's own records come back in the order it wrote them.
        for mine in written:
            assert [r.seq for r in mine] == sorted(r.seq for r in mine)
        report = verify_chain(stored, handles[1].chain_head())
        assert report.ok and report.records == threads * appends

    def test_racing_effect_reports_record_exactly_one(self, backend: Backend, make: Make) -> None:
        first, second = backend.open(), backend.open()
        decision = make.decision(None, None)
        first.record_decision(DecisionWrite(decision, make.entry()))
        start = threading.Barrier(8)
        outcomes: list[str] = []

        def report(store: SqlStore) -> None:
            start.wait()
            try:
                store.record_effect(make.effect(decision), make.entry(AuditKind.EFFECT))
                outcomes.append("recorded")
            except Exception as exc:
                outcomes.append(getattr(exc, "code", type(exc).__name__))

        workers = [
            threading.Thread(target=report, args=(first if n % 2 else second,)) for n in range(8)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert sorted(outcomes) == sorted(["recorded"] + [ErrorCode.EFFECT_ALREADY_REPORTED] * 7)
        report_ = verify_chain(first.audit_records(), second.chain_head())
        assert report_.ok and report_.records == 2


_json: st.SearchStrategy[JSONValue] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)


def _entries(text: st.SearchStrategy[str]) -> st.SearchStrategy[AuditEntry]:
    return st.builds(
        AuditEntry,
        record_id=st.uuids().map(lambda u: f"aud_{u.hex}"),
        at=st.datetimes(
            min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=_zones
        ),
        kind=st.sampled_from(AuditKind),
        agent=st.none() | text,
        task_id=st.none() | text,
        body=st.dictionaries(st.text(max_size=8), _json, max_size=4),
    )


# PostgreSQL's text type cannot hold NUL (test_postgres checks that it fails closed); agent ids
# never carry one (SPIFFE and OIDC subjects are checked printable ASCII). Bodies are JSON text, in
# which NUL is escaped, so they keep it.
_TEXT = {
    "sqlite": st.text(max_size=20),
    "postgresql": st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20),
}


# Each example gets a fresh, empty database: a file on SQLite, a schema (tens of milliseconds) on
# PostgreSQL, hence fewer examples there. ``request`` only provisions it.
_FIXTURE_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


@settings(max_examples=40, deadline=None, suppress_health_check=_FIXTURE_OK)
@given(page_size=st.integers(min_value=1, max_value=4), data=st.data())
def test_any_sequence_of_appends_makes_a_valid_chain_sqlite(
    request: pytest.FixtureRequest, page_size: int, data: st.DataObject
) -> None:
    _appends_make_a_valid_chain("sqlite", request, page_size, data)


@settings(max_examples=15, deadline=None, suppress_health_check=_FIXTURE_OK)
@given(page_size=st.integers(min_value=1, max_value=4), data=st.data())
def test_any_sequence_of_appends_makes_a_valid_chain_postgresql(
    request: pytest.FixtureRequest, page_size: int, data: st.DataObject
) -> None:
    _appends_make_a_valid_chain("postgresql", request, page_size, data)


def _appends_make_a_valid_chain(
    backend_name: str, request: pytest.FixtureRequest, page_size: int, data: st.DataObject
) -> None:
    entries = data.draw(
        st.lists(_entries(_TEXT[backend_name]), max_size=12, unique_by=lambda e: e.record_id),
        label="entries",
    )
    with (
        tempfile.TemporaryDirectory() as root,
        provisioned(backend_name, request, Path(root)) as backend,
    ):
        store = backend.open(page_size=page_size)
        try:
            written = [store.append_audit(e) for e in entries]
            stored = list(store.audit_records())
            assert stored == written
            assert [r.body for r in stored] == [e.body for e in entries]
            head = store.chain_head()
            assert head == (None if not written else ChainHead(written[-1].seq, written[-1].hash))
            report = verify_chain(stored, head)
            assert report.ok and report.records == len(entries)
            after = data.draw(st.integers(min_value=0, max_value=len(entries)), label="after")
            assert list(store.audit_records(after_seq=after)) == written[after:]
        finally:
            store.close()
