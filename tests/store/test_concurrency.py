"""Two handles on one database, as two replicas: the invariants hold when their calls race.

Each race starts its threads at a barrier so the calls overlap; the head lock (``FOR UPDATE`` on
PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite) must serialize them without losing or doubling a write.
Appends and effect reports race in ``test_chain.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import text

from tether.core.approval import Approval, ApprovalState, cast_vote
from tether.core.audit import AuditKind, verify_chain
from tether.core.errors import Conflict, ErrorCode
from tether.core.task import TaskState
from tether.core.verdict import Decision
from tether.service.ports import AuditEntry, DecisionWrite
from tether.store import SCHEMA_VERSION, SqlStore, migrate
from tether.store.schema import VERSION_TABLE

from .conftest import T0, Backend, Make, race

LATER = T0 + timedelta(seconds=30)


def _codes(outcomes: list[object]) -> list[str]:
    return sorted(
        str(o.code) if isinstance(o, Conflict) else type(o).__name__
        for o in outcomes
        if isinstance(o, BaseException)
    )


def _pending(store: SqlStore, make: Make, required: int) -> tuple[Approval, Make]:
    task, grant = make.task()
    store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))
    decision = replace(make.decision(task, grant), decision=Decision.APPROVAL_REQUIRED)
    approval = make.approval(task, grant, decision, required=required)
    store.record_decision(
        DecisionWrite(
            decision,
            make.entry(),
            new_approval=(approval, make.entry(AuditKind.APPROVAL_REQUESTED)),
        )
    )
    return approval, make


def _vote_audit(make: Make) -> Callable[[Approval], AuditEntry]:
    return lambda after: make.entry(AuditKind.APPROVAL_VOTED, body={"state": after.state.value})


def test_racing_uses_of_one_approval_allow_exactly_one(backend: Backend, make: Make) -> None:
    replicas = [backend.open(), backend.open()]
    approval, _ = _pending(replicas[0], make, required=1)
    replicas[1].vote_approval(
        approval.approval_id,
        lambda a: cast_vote(a, "alice", True, "ok", LATER),
        _vote_audit(make),
    )
    task = replicas[0].get_task(approval.task_id)
    grant = replicas[1].get_grant(approval.grant_id)
    assert task is not None and grant is not None
    retries = [replace(make.decision(task, grant), decided_at=LATER) for _ in range(8)]

    outcomes = race(
        8,
        lambda n: replicas[n % 2].record_decision(
            DecisionWrite(retries[n], make.entry(), use_approval=approval.approval_id)
        ),
    )

    winners = [n for n, o in enumerate(outcomes) if not isinstance(o, BaseException)]
    assert len(winners) == 1, outcomes
    assert _codes(outcomes) == [ErrorCode.APPROVAL_NOT_PENDING] * 7
    used = replicas[0].get_approval(approval.approval_id)
    assert used is not None and used.state is ApprovalState.USED
    assert used.used_by == retries[winners[0]].decision_id
    recorded = [r for r in retries if replicas[1].get_decision(r.decision_id) is not None]
    assert recorded == [retries[winners[0]]]
    report = verify_chain(replicas[0].audit_records(), replicas[1].chain_head())
    assert report.ok and report.records == 5  # open, decision, request, vote, the one use


@pytest.mark.parametrize(("approvers", "required"), [(2, 2), (4, 3)])
def test_racing_votes_by_different_approvers(
    backend: Backend, make: Make, approvers: int, required: int
) -> None:
    replicas = [backend.open(), backend.open()]
    approval, _ = _pending(replicas[0], make, required=required)
    names = [f"approver-{n}" for n in range(approvers)]

    outcomes = race(
        approvers,
        lambda n: replicas[n % 2].vote_approval(
            approval.approval_id,
            lambda a: cast_vote(a, names[n], True, "ok", LATER),
            _vote_audit(make),
        ),
    )

    # Every vote up to the required number is recorded; a vote after that finds it approved.
    assert _codes(outcomes) == [ErrorCode.APPROVAL_NOT_PENDING] * (approvers - required)
    final = replicas[1].get_approval(approval.approval_id)
    assert final is not None
    assert final.state is ApprovalState.APPROVED
    assert final.approvals == required and len(final.votes) == required
    assert {v.approver for v in final.votes} <= set(names)
    voted = [r for r in replicas[0].audit_records() if r.kind is AuditKind.APPROVAL_VOTED]
    # Each vote's audit record says what that vote left the approval as, in chain order.
    assert [r.body["state"] for r in voted] == ["pending"] * (required - 1) + ["approved"]
    report = verify_chain(replicas[0].audit_records(), replicas[1].chain_head())
    assert report.ok and report.records == 3 + required


def test_one_approver_racing_themself_is_counted_once(backend: Backend, make: Make) -> None:
    replicas = [backend.open(), backend.open()]
    approval, _ = _pending(replicas[0], make, required=2)

    outcomes = race(
        4,
        lambda n: replicas[n % 2].vote_approval(
            approval.approval_id,
            lambda a: cast_vote(a, "alice", True, "ok", LATER),
            _vote_audit(make),
        ),
    )

    assert _codes(outcomes) == [ErrorCode.APPROVAL_NOT_PENDING] * 3
    final = replicas[1].get_approval(approval.approval_id)
    assert final is not None and final.state is ApprovalState.PENDING and final.approvals == 1


def test_replicas_starting_together_create_the_schema_once(backend: Backend) -> None:
    # The database is empty: every handle races to create tether's tables.
    outcomes = race(4, lambda _: backend.open())

    assert [type(o).__name__ for o in outcomes] == ["SqlStore"] * 4, outcomes
    engine = backend.raw()
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT key, value FROM tether_meta")).all()
            heads = conn.execute(text("SELECT partition_id, seq FROM audit_head")).all()
            revisions = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    finally:
        engine.dispose()
    assert sorted(tuple(r) for r in versions) == [
        ("audit_chain_format", "2"),
        ("schema_version", str(SCHEMA_VERSION)),
    ]
    assert [tuple(r) for r in heads] == [("0", 0)]
    assert [tuple(r) for r in revisions] == [(migrate.head(),)]
    assert all(store.schema_state().up_to_date for store in outcomes if isinstance(store, SqlStore))


def test_mixed_mutations_from_two_replicas_keep_one_chain(backend: Backend, make: Make) -> None:
    replicas = [backend.open(), backend.open()]
    rounds = 15

    def work(n: int) -> int:
        store, writes = replicas[n % 2], 0
        for _ in range(rounds):
            task, grant = make.task()
            store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))
            decision = make.decision(task, grant)
            store.record_decision(DecisionWrite(decision, make.entry(AuditKind.DECISION)))
            other = replicas[(n + 1) % 2]  # the effect lands on the other replica
            other.record_effect(make.effect(decision), make.entry(AuditKind.EFFECT))
            ended = store.end_task(task.task_id, TaskState.CLOSED, LATER, make.entry())
            assert ended is not None
            writes += 4
        return writes

    outcomes = race(4, work)

    assert all(isinstance(o, int) for o in outcomes), outcomes
    total = sum(o for o in outcomes if isinstance(o, int))
    stored = list(replicas[1].audit_records())
    assert [r.seq for r in stored] == list(range(1, total + 1))
    report = verify_chain(stored, replicas[0].chain_head())
    assert report.ok and report.records == total
