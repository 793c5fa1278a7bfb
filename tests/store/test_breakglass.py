"""Break-glass requests in the store, on every backend: round trip, audit, racing approvers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tether.core.audit import AuditKind, verify_chain
from tether.core.breakglass import BreakGlass, BreakGlassId, BreakGlassState, vote_breakglass
from tether.core.errors import ErrorCode, NotFound
from tether.service.ports import AuditEntry
from tether.store.breakglass import SqlBreakGlassStore

from .conftest import T0, Backend, Make, race

LATER = T0 + timedelta(seconds=30)


def _request(make: Make, task_id: str, *, at: timedelta = timedelta(0)) -> BreakGlass:
    return BreakGlass(
        breakglass_id=BreakGlassId(make.ids.breakglass()),
        task_id=task_id,
        agent="spiffe://example.org/agents/billing",
        scopes=make.scopes()[1:],
        reason="outage: refunds stuck, \x00 and ünïcødé kept",
        requested_by="carol",
        requested_at=T0 + at,
        decide_by=T0 + at + timedelta(minutes=15),
        window_seconds=900,
        required=2,
        state=BreakGlassState.PENDING,
    )


def _audit(make: Make) -> AuditEntry:
    return make.entry(AuditKind.BREAKGLASS_REQUESTED)


def test_requests_round_trip_and_are_audited(backend: Backend, make: Make) -> None:
    store = backend.open()
    requests = SqlBreakGlassStore(store)
    task, _ = make.task()
    first, second = (
        _request(make, task.task_id),
        _request(make, task.task_id, at=timedelta(seconds=1)),
    )
    other = _request(make, make.task()[0].task_id, at=timedelta(seconds=2))
    for bg in (first, second, other):
        requests.create(bg, _audit(make))

    assert requests.get(first.breakglass_id) == first
    assert requests.get("brk_" + "0" * 26) is None
    assert {b.breakglass_id for b in requests.for_task(task.task_id)} == {
        first.breakglass_id,
        second.breakglass_id,
    }
    assert [b.breakglass_id for b in requests.list(limit=2)] == [
        other.breakglass_id,
        second.breakglass_id,
    ]
    after = requests.update(
        first.breakglass_id,
        lambda b: vote_breakglass(b, "alice", True, "seen", LATER),
        lambda _: make.entry(AuditKind.BREAKGLASS_VOTED),
    )
    assert requests.get(first.breakglass_id) == after and after.approvals == 1
    report = verify_chain(store.audit_records(), store.chain_head())
    assert report.ok and report.records == 4


def test_an_unknown_request_is_not_found(backend: Backend, make: Make) -> None:
    requests = SqlBreakGlassStore(backend.open())
    with pytest.raises(NotFound) as caught:
        requests.update("brk_" + "1" * 26, lambda b: b, lambda _: make.entry())
    assert caught.value.code is ErrorCode.BREAKGLASS_NOT_FOUND


def test_two_approvers_racing_on_two_replicas_activate_it(backend: Backend, make: Make) -> None:
    replicas = [SqlBreakGlassStore(backend.open()), SqlBreakGlassStore(backend.open())]
    bg = _request(make, make.task()[0].task_id)
    replicas[0].create(bg, _audit(make))

    outcomes = race(
        2,
        lambda n: replicas[n].update(
            bg.breakglass_id,
            lambda b: vote_breakglass(b, ["alice", "bob"][n], True, "ok", LATER),
            lambda _: make.entry(AuditKind.BREAKGLASS_VOTED),
        ),
    )

    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    final = replicas[1].get(bg.breakglass_id)
    assert final is not None and final.state is BreakGlassState.ACTIVE
    assert sorted(v.approver for v in final.votes) == ["alice", "bob"]
