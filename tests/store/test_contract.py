"""The Store contract, run against every backend in ``BACKENDS``: what the service relies on."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tether.core.audit import AuditKind, verify_chain
from tether.core.errors import Conflict, ErrorCode, NotFound, Unavailable
from tether.core.ids import DecisionId, GrantId, TaskId
from tether.core.task import GrantState, TaskState
from tether.service.ports import DecisionWrite, Store
from tether.store import SqlStore

from .conftest import T0, Backend, Make


def _count(store: SqlStore) -> int:
    return sum(1 for _ in store.audit_records())


def _assert_chain_ok(store: SqlStore, records: int) -> None:
    report = verify_chain(store.audit_records(), store.chain_head())
    assert report.ok, report
    assert report.records == records


def test_sql_store_is_a_store(store: SqlStore) -> None:
    port: Store = store  # mypy checks the protocol; this keeps the test honest at runtime too
    assert port.chain_head() is None


class TestTasksAndGrants:
    def test_open_task_round_trips_task_and_grant(self, store: SqlStore, make: Make) -> None:
        task, grant = make.task()
        record = store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))

        assert store.get_task(task.task_id) == task
        assert store.get_grant(grant.grant_id) == grant
        got = store.get_grant(grant.grant_id)
        assert got is not None
        assert got.scopes[0].constraint_map["amount"].max == 100
        assert (
            got.scopes[0].constraint_map["currency"] == task.granted[0].constraint_map["currency"]
        )
        assert got.issued_at.tzinfo is not None and got.issued_at.utcoffset() == timedelta(0)
        assert record.seq == 1 and record.kind is AuditKind.TASK_OPENED
        assert list(store.audit_records()) == [record]

    def test_a_grant_is_read_with_its_task(self, store: SqlStore, make: Make) -> None:
        task, grant = make.task()
        store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))

        assert store.get_grant_with_task(grant.grant_id) == (grant, task)
        assert store.get_grant_with_task(GrantId("grt_" + "0" * 26)) == (None, None)

    def test_unknown_ids_are_none(self, store: SqlStore) -> None:
        assert store.get_task(TaskId("tsk_" + "0" * 26)) is None
        assert store.get_grant(GrantId("grt_" + "0" * 26)) is None
        assert store.get_decision(DecisionId("dec_" + "0" * 26)) is None
        assert store.get_effect(DecisionId("dec_" + "0" * 26)) is None

    def test_times_keep_microseconds_and_come_back_in_utc(
        self, store: SqlStore, make: Make
    ) -> None:
        cet = timezone(timedelta(hours=1))
        opened = datetime(2026, 3, 1, 9, 30, 15, 999_999, tzinfo=cet)
        task, grant = make.task(opened_at=opened)
        store.open_task(task, grant, make.entry())
        got = store.get_task(task.task_id)
        assert got is not None
        assert got.opened_at == opened
        assert got.opened_at.tzinfo == UTC
        assert got.opened_at.microsecond == 999_999

    def test_open_task_with_a_grant_of_another_task_writes_nothing(
        self, store: SqlStore, make: Make
    ) -> None:
        task, _ = make.task()
        _, other_grant = make.task()
        with pytest.raises(ValueError):
            store.open_task(task, other_grant, make.entry())
        assert store.get_task(task.task_id) is None
        assert store.chain_head() is None

    def test_reused_task_id_is_refused_and_writes_nothing(
        self, store: SqlStore, make: Make
    ) -> None:
        task, grant = make.task()
        store.open_task(task, grant, make.entry())
        _, grant2 = make.task()
        grant2 = replace(grant2, task_id=task.task_id)
        with pytest.raises(Unavailable) as caught:
            store.open_task(task, grant2, make.entry())
        assert caught.value.code is ErrorCode.INTERNAL
        assert store.get_grant(grant2.grant_id) is None
        _assert_chain_ok(store, 1)

    @pytest.mark.parametrize("state", [TaskState.CLOSED, TaskState.REVOKED])
    def test_end_task_revokes_its_grants(
        self, store: SqlStore, make: Make, state: TaskState
    ) -> None:
        task, grant = make.task()
        other, other_grant = make.task()
        store.open_task(task, grant, make.entry())
        store.open_task(other, other_grant, make.entry())
        at = T0 + timedelta(seconds=30)

        ended = store.end_task(task.task_id, state, at, make.entry(AuditKind.TASK_CLOSED))

        assert ended is not None
        assert ended.state is state and ended.ended_at == at
        assert store.get_task(task.task_id) == ended
        got = store.get_grant(grant.grant_id)
        assert got is not None and got.state is GrantState.REVOKED
        untouched = store.get_grant(other_grant.grant_id)
        assert untouched is not None and untouched.state is GrantState.ACTIVE
        _assert_chain_ok(store, 3)

    def test_end_task_as_expired_expires_its_grants(self, store: SqlStore, make: Make) -> None:
        task, grant = make.task()
        store.open_task(task, grant, make.entry())
        ended = store.end_task(
            task.task_id, TaskState.EXPIRED, task.expires_at, make.entry(AuditKind.TASK_EXPIRED)
        )
        assert ended is not None and ended.state is TaskState.EXPIRED
        got = store.get_grant(grant.grant_id)
        assert got is not None and got.state is GrantState.EXPIRED

    def test_end_task_is_idempotent(self, store: SqlStore, make: Make) -> None:
        task, grant = make.task()
        store.open_task(task, grant, make.entry())
        first = store.end_task(task.task_id, TaskState.CLOSED, T0, make.entry())
        head = store.chain_head()

        again = store.end_task(task.task_id, TaskState.REVOKED, T0, make.entry())

        assert again is None
        assert store.chain_head() == head
        assert store.get_task(task.task_id) == first
        _assert_chain_ok(store, 2)

    def test_end_unknown_task_writes_nothing(self, store: SqlStore, make: Make) -> None:
        assert store.end_task(TaskId("tsk_" + "1" * 26), TaskState.CLOSED, T0, make.entry()) is None
        assert store.chain_head() is None

    def test_end_task_refuses_the_open_state(self, store: SqlStore, make: Make) -> None:
        task, grant = make.task()
        store.open_task(task, grant, make.entry())
        with pytest.raises(ValueError):
            store.end_task(task.task_id, TaskState.OPEN, T0, make.entry())
        _assert_chain_ok(store, 1)

    def test_expired_open_tasks_oldest_first(self, store: SqlStore, make: Make) -> None:
        short, g1 = make.task(ttl=60)
        shorter, g2 = make.task(ttl=30)
        long, g3 = make.task(ttl=3600)
        closed, g4 = make.task(ttl=10)
        for t, g in ((short, g1), (shorter, g2), (long, g3), (closed, g4)):
            store.open_task(t, g, make.entry())
        store.end_task(closed.task_id, TaskState.CLOSED, T0, make.entry())

        now = short.expires_at  # expiry is inclusive
        assert [t.task_id for t in store.expired_open_tasks(now, 10)] == [
            shorter.task_id,
            short.task_id,
        ]
        assert [t.task_id for t in store.expired_open_tasks(now, 1)] == [shorter.task_id]
        assert store.expired_open_tasks(T0, 10) == []
        assert store.expired_open_tasks(now, 0) == []


class TestDecisionsAndEffects:
    def test_decision_round_trips(self, store: SqlStore, make: Make) -> None:
        task, grant = make.task()
        store.open_task(task, grant, make.entry())
        with_task = make.decision(task, grant)
        without = make.decision(None, None)
        store.record_decision(DecisionWrite(with_task, make.entry(AuditKind.DECISION)))
        store.record_decision(DecisionWrite(without, make.entry(AuditKind.DECISION)))
        assert store.get_decision(with_task.decision_id) == with_task
        assert store.get_decision(without.decision_id) == without
        _assert_chain_ok(store, 3)

    def test_effect_round_trips(self, store: SqlStore, make: Make) -> None:
        decision = make.decision(None, None)
        store.record_decision(DecisionWrite(decision, make.entry()))
        effect = make.effect(decision)
        record = store.record_effect(effect, make.entry(AuditKind.EFFECT))
        assert store.get_effect(decision.decision_id) == effect
        assert record.kind is AuditKind.EFFECT and record.seq == 2

    def test_second_effect_conflicts_and_writes_nothing(self, store: SqlStore, make: Make) -> None:
        decision = make.decision(None, None)
        store.record_decision(DecisionWrite(decision, make.entry()))
        first = make.effect(decision)
        store.record_effect(first, make.entry(AuditKind.EFFECT))
        head = store.chain_head()

        with pytest.raises(Conflict) as caught:
            store.record_effect(make.effect(decision), make.entry(AuditKind.EFFECT))

        assert caught.value.code is ErrorCode.EFFECT_ALREADY_REPORTED
        assert store.chain_head() == head
        assert store.get_effect(decision.decision_id) == first
        _assert_chain_ok(store, 2)

    def test_effect_for_unknown_decision_is_not_found(self, store: SqlStore, make: Make) -> None:
        decision = make.decision(None, None)  # never recorded
        with pytest.raises(NotFound) as caught:
            store.record_effect(make.effect(decision), make.entry(AuditKind.EFFECT))
        assert caught.value.code is ErrorCode.DECISION_NOT_FOUND
        assert store.chain_head() is None


class TestAudit:
    def test_empty_store_has_an_empty_valid_chain(self, store: SqlStore) -> None:
        assert store.chain_head() is None
        assert list(store.audit_records()) == []
        assert verify_chain(store.audit_records(), store.chain_head()).ok

    def test_every_mutation_appends_exactly_one_record(self, store: SqlStore, make: Make) -> None:
        task, grant = make.task()
        decision = make.decision(task, grant)
        returned = []
        returned.append(store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED)))
        assert _count(store) == 1
        returned.append(
            store.record_decision(DecisionWrite(decision, make.entry(AuditKind.DECISION)))
        )
        assert _count(store) == 2
        returned.append(store.record_effect(make.effect(decision), make.entry(AuditKind.EFFECT)))
        assert _count(store) == 3
        returned.append(store.append_audit(make.entry(AuditKind.POLICY_LOADED, agent=None)))
        assert _count(store) == 4
        store.end_task(task.task_id, TaskState.CLOSED, T0, make.entry(AuditKind.TASK_CLOSED))
        assert _count(store) == 5

        stored = list(store.audit_records())
        assert stored[:4] == returned
        assert [r.kind for r in stored] == [
            AuditKind.TASK_OPENED,
            AuditKind.DECISION,
            AuditKind.EFFECT,
            AuditKind.POLICY_LOADED,
            AuditKind.TASK_CLOSED,
        ]
        head = store.chain_head()
        assert head is not None and (head.seq, head.hash) == (5, stored[-1].hash)
        _assert_chain_ok(store, 5)

    def test_entry_time_is_sealed_as_utc_iso8601(self, store: SqlStore, make: Make) -> None:
        at = datetime(2026, 5, 1, 14, 0, 0, 250_000, tzinfo=timezone(timedelta(hours=2)))
        record = store.append_audit(make.entry(at=at))
        assert record.at == "2026-05-01T12:00:00.250000+00:00"

    def test_naive_time_is_refused_and_writes_nothing(self, store: SqlStore, make: Make) -> None:
        with pytest.raises(ValueError):
            store.append_audit(make.entry(at=datetime(2026, 1, 1)))
        task, grant = make.task(opened_at=datetime(2026, 1, 1))
        with pytest.raises(ValueError):
            store.open_task(task, grant, make.entry())
        assert store.chain_head() is None

    def test_records_after_seq_and_across_pages(self, backend: Backend, make: Make) -> None:
        store = backend.open(page_size=3)
        written = [store.append_audit(make.entry(body={"n": n})) for n in range(10)]
        assert list(store.audit_records()) == written
        assert list(store.audit_records(after_seq=4)) == written[4:]
        assert list(store.audit_records(after_seq=9)) == written[9:]
        assert list(store.audit_records(after_seq=10)) == []

    def test_reused_record_id_is_refused(self, store: SqlStore, make: Make) -> None:
        entry = make.entry()
        store.append_audit(entry)
        with pytest.raises(Unavailable) as caught:
            store.append_audit(entry)
        assert caught.value.code is ErrorCode.INTERNAL
        _assert_chain_ok(store, 1)


class TestRestart:
    def test_everything_survives_closing_and_reopening(self, backend: Backend, make: Make) -> None:
        first = backend.open()
        task, grant = make.task()
        first.open_task(task, grant, make.entry())
        decision = make.decision(task, grant)
        first.record_decision(DecisionWrite(decision, make.entry()))
        effect = make.effect(decision)
        first.record_effect(effect, make.entry())
        ended = first.end_task(task.task_id, TaskState.CLOSED, T0, make.entry())
        records = list(first.audit_records())
        head = first.chain_head()
        first.close()

        second = backend.open()
        assert second.get_task(task.task_id) == ended
        got = second.get_grant(grant.grant_id)
        assert got is not None and got.state is GrantState.REVOKED
        assert second.get_decision(decision.decision_id) == decision
        assert second.get_effect(decision.decision_id) == effect
        assert list(second.audit_records()) == records
        assert second.chain_head() == head
        nxt = second.append_audit(make.entry())
        assert head is not None and nxt.seq == head.seq + 1 and nxt.prev_hash == head.hash
        _assert_chain_ok(second, 5)

    def test_two_handles_see_each_others_writes(self, backend: Backend, make: Make) -> None:
        a, b = backend.open(), backend.open()
        task, grant = make.task()
        a.open_task(task, grant, make.entry())
        assert b.get_task(task.task_id) == task
        b.end_task(task.task_id, TaskState.CLOSED, T0, make.entry())
        assert a.end_task(task.task_id, TaskState.CLOSED, T0, make.entry()) is None
        _assert_chain_ok(a, 2)

    def test_ping_on_a_healthy_store(self, store: SqlStore) -> None:
        store.ping()
        assert store.chain_head() is None  # ping writes nothing
