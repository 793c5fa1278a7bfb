"""The Store contract for approvals, task activity and cascading ends, on every backend."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta

import pytest

from tether.core.approval import Approval, ApprovalState, cast_vote
from tether.core.audit import AuditKind, verify_chain
from tether.core.errors import Conflict, ErrorCode, NotFound, Unavailable
from tether.core.ids import ApprovalId
from tether.core.scope import ActionKind, JSONValue
from tether.core.task import Grant, GrantState, Task, TaskState
from tether.core.verdict import Decision
from tether.service.ports import AuditEntry, DecisionRecord, DecisionWrite
from tether.store import SqlStore

from .conftest import AGENT, T0, Make

LATER = T0 + timedelta(seconds=30)


def _kinds(store: SqlStore) -> list[AuditKind]:
    return [r.kind for r in store.audit_records()]


def _chain_ok(store: SqlStore, records: int) -> None:
    report = verify_chain(store.audit_records(), store.chain_head())
    assert report.ok, report
    assert report.records == records


def _pending(store: SqlStore, make: Make, **kwargs: object) -> tuple[Task, Grant, Approval]:
    """An open task and a pending approval its first decision asked for (3 records)."""
    task, grant = make.task()
    store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))
    decision = replace(make.decision(task, grant), decision=Decision.APPROVAL_REQUIRED)
    approval = make.approval(task, grant, decision, **kwargs)  # type: ignore[arg-type]
    store.record_decision(
        DecisionWrite(
            decision,
            make.entry(AuditKind.DECISION),
            new_approval=(approval, make.entry(AuditKind.APPROVAL_REQUESTED)),
        ),
    )
    return task, grant, approval


def _vote(approver: str, approve: bool = True):  # type: ignore[no-untyped-def]
    return lambda a: cast_vote(a, approver, approve, "checked", LATER)


def _vote_audit(make: Make):  # type: ignore[no-untyped-def]
    def audit(after: Approval) -> AuditEntry:
        return make.entry(AuditKind.APPROVAL_VOTED, body={"state": after.state.value})

    return audit


def _retry(task: Task, grant: Grant) -> DecisionRecord:
    return DecisionRecord(
        decision_id=Make().ids.decision(),
        task_id=task.task_id,
        grant_id=grant.grant_id,
        agent=AGENT,
        tool="payments.transfer",
        action=ActionKind.SPEND,
        dataset="ledger",
        decision=Decision.ALLOW,
        decided_at=LATER,
    )


class TestRequest:
    def test_the_decision_and_its_approval_are_written_together(
        self, store: SqlStore, make: Make
    ) -> None:
        _, _, approval = _pending(store, make)
        assert store.get_approval(approval.approval_id) == approval
        assert store.get_decision(approval.decision_id) is not None
        assert _kinds(store) == [
            AuditKind.TASK_OPENED,
            AuditKind.DECISION,
            AuditKind.APPROVAL_REQUESTED,
        ]
        _chain_ok(store, 3)

    def test_a_failed_approval_record_takes_the_decision_with_it(
        self, store: SqlStore, make: Make
    ) -> None:
        task, grant = make.task()
        used = make.entry()
        store.open_task(task, grant, used)
        decision = make.decision(task, grant)
        approval = make.approval(task, grant, decision)
        with pytest.raises(Unavailable):
            store.record_decision(
                DecisionWrite(decision, make.entry(), new_approval=(approval, used))
            )
        assert store.get_decision(decision.decision_id) is None
        assert store.get_approval(approval.approval_id) is None
        _chain_ok(store, 1)

    def test_unknown_approval_is_none(self, store: SqlStore) -> None:
        assert store.get_approval(ApprovalId("apr_" + "0" * 26)) is None

    def test_arguments_come_back_exactly(self, store: SqlStore, make: Make) -> None:
        # What an agent may put in a call; jsonb would refuse the NUL and rewrite the numbers.
        args: dict[str, JSONValue] = {
            "nul": "a\x00b",
            "emoji": "\U0001f4b8 ünïcødé",
            "huge": 1e300,
            "tiny": 5e-324,
            "negative_zero": -0.0,
            "big_int": 2**70,
            "nested": [{"b": 2, "a": 1}, [], {}, None, True],
            "quote": "'; DROP TABLE approvals; --",
        }
        _, _, approval = _pending(store, make, args=args)
        got = store.get_approval(approval.approval_id)
        assert got == approval
        assert got is not None
        assert isinstance(got.args["huge"], float) and isinstance(got.args["big_int"], int)
        assert math.copysign(1.0, got.args["negative_zero"]) == -1.0  # type: ignore[arg-type]
        assert list(got.args["nested"][0]) == ["b", "a"]  # type: ignore[index, call-overload]

    def test_a_nan_argument_is_kept(self, store: SqlStore, make: Make) -> None:
        _, _, approval = _pending(store, make, args={"amount": math.nan})
        got = store.get_approval(approval.approval_id)
        assert got is not None and math.isnan(got.args["amount"])  # type: ignore[arg-type]


class TestLookups:
    def test_list_is_newest_first_and_limited(self, store: SqlStore, make: Make) -> None:
        task, grant = make.task()
        store.open_task(task, grant, make.entry())
        made = []
        for n in range(3):
            decision = replace(make.decision(task, grant), decided_at=T0 + timedelta(seconds=n))
            approval = make.approval(task, grant, decision)
            store.record_decision(
                DecisionWrite(decision, make.entry(), new_approval=(approval, make.entry()))
            )
            made.append(approval)
        assert [a.approval_id for a in store.list_approvals()] == [
            a.approval_id for a in reversed(made)
        ]
        assert [a.approval_id for a in store.list_approvals(limit=1)] == [made[-1].approval_id]

    def test_find_pending_matches_only_the_exact_call(self, store: SqlStore, make: Make) -> None:
        task, _, approval = _pending(store, make)
        call = {
            "agent": approval.agent,
            "task_id": task.task_id,
            "tool": approval.tool,
            "action": approval.action,
            "dataset": approval.dataset,
            "args_mac": approval.args_mac,
            "now": LATER,
        }
        assert store.find_pending_approval(**call) == approval  # type: ignore[arg-type]
        others: list[dict[str, object]] = [
            {"args_mac": "mac-other"},
            {"dataset": None},
            {"dataset": "payroll"},
            {"tool": "email.send"},
            {"action": ActionKind.READ},
            {"agent": "spiffe://example.org/agents/other"},
            {"now": approval.expires_at},  # expiry is exclusive: at expires_at it is gone
        ]
        for change in others:
            assert store.find_pending_approval(**{**call, **change}) is None, change  # type: ignore[arg-type]


class TestVotes:
    def test_a_vote_is_stored_and_audited(self, store: SqlStore, make: Make) -> None:
        _, _, approval = _pending(store, make, required=2)
        after = store.vote_approval(approval.approval_id, _vote("alice"), _vote_audit(make))
        assert after.state is ApprovalState.PENDING and after.approvals == 1
        assert store.get_approval(approval.approval_id) == after
        after = store.vote_approval(approval.approval_id, _vote("bob"), _vote_audit(make))
        assert after.state is ApprovalState.APPROVED
        assert [v.approver for v in after.votes] == ["alice", "bob"]
        assert store.get_approval(approval.approval_id) == after
        assert _kinds(store)[-2:] == [AuditKind.APPROVAL_VOTED, AuditKind.APPROVAL_VOTED]
        _chain_ok(store, 5)

    def test_a_refused_vote_writes_nothing(self, store: SqlStore, make: Make) -> None:
        _, _, approval = _pending(store, make, required=2)
        store.vote_approval(approval.approval_id, _vote("alice"), _vote_audit(make))
        head = store.chain_head()
        with pytest.raises(Conflict):
            store.vote_approval(approval.approval_id, _vote("alice"), _vote_audit(make))
        assert store.chain_head() == head
        got = store.get_approval(approval.approval_id)
        assert got is not None and got.approvals == 1

    def test_a_vote_on_an_unknown_approval(self, store: SqlStore, make: Make) -> None:
        with pytest.raises(NotFound) as caught:
            store.vote_approval(ApprovalId("apr_" + "0" * 26), _vote("alice"), _vote_audit(make))
        assert caught.value.code is ErrorCode.APPROVAL_NOT_FOUND
        assert store.chain_head() is None


class TestUse:
    def test_an_approved_approval_is_used_once(self, store: SqlStore, make: Make) -> None:
        task, grant, approval = _pending(store, make)
        store.vote_approval(approval.approval_id, _vote("alice"), _vote_audit(make))
        first = _retry(task, grant)
        store.record_decision(DecisionWrite(first, make.entry(), use_approval=approval.approval_id))
        used = store.get_approval(approval.approval_id)
        assert used is not None
        assert used.state is ApprovalState.USED and used.used_by == first.decision_id
        head = store.chain_head()

        second = _retry(task, grant)
        with pytest.raises(Conflict) as caught:
            store.record_decision(
                DecisionWrite(second, make.entry(), use_approval=approval.approval_id)
            )
        assert caught.value.code is ErrorCode.APPROVAL_NOT_PENDING
        assert store.get_decision(second.decision_id) is None
        assert store.chain_head() == head
        assert store.get_approval(approval.approval_id) == used

    def test_a_pending_approval_cannot_be_used(self, store: SqlStore, make: Make) -> None:
        task, grant, approval = _pending(store, make)
        retry = _retry(task, grant)
        with pytest.raises(Conflict):
            store.record_decision(
                DecisionWrite(retry, make.entry(), use_approval=approval.approval_id)
            )
        assert store.get_decision(retry.decision_id) is None
        _chain_ok(store, 3)

    def test_an_unknown_approval_cannot_be_used(self, store: SqlStore, make: Make) -> None:
        task, grant = make.task()
        retry = _retry(task, grant)
        with pytest.raises(NotFound) as caught:
            store.record_decision(
                DecisionWrite(retry, make.entry(), use_approval=ApprovalId("apr_" + "1" * 26))
            )
        assert caught.value.code is ErrorCode.APPROVAL_NOT_FOUND
        assert store.chain_head() is None


class TestActivityAndCascade:
    def test_task_activity_counts_decisions_and_effects(self, store: SqlStore, make: Make) -> None:
        task, grant = make.task()
        store.open_task(task, grant, make.entry())
        allowed = [make.decision(task, grant) for _ in range(3)]
        denied = replace(make.decision(task, grant), decision=Decision.DENY)
        for decision in [*allowed, denied]:
            store.record_decision(DecisionWrite(decision, make.entry()))
        for decision in allowed[:2]:
            store.record_effect(make.effect(decision), make.entry())
        store.record_decision(
            DecisionWrite(make.decision(None, None), make.entry())
        )  # another task's

        activity = store.task_activity(task.task_id)
        assert activity.decisions == {"allow": 3, "deny": 1}
        assert (activity.effects, activity.records, activity.bytes) == (2, 6, 2 * 2**40)
        empty = store.task_activity(make.task()[0].task_id)
        assert (empty.decisions, empty.effects, empty.records, empty.bytes) == ({}, 0, 0, 0)

    @pytest.mark.parametrize("state", [TaskState.REVOKED, TaskState.EXPIRED])
    def test_ending_a_task_ends_every_task_delegated_from_it(
        self, store: SqlStore, make: Make, state: TaskState
    ) -> None:
        root, root_grant = make.task()
        store.open_task(root, root_grant, make.entry())
        tree: list[tuple[Task, Grant]] = []
        parent = root
        for _ in range(3):  # a chain root -> child -> grandchild -> great-grandchild
            child, child_grant = make.task()
            child = replace(child, parent_task_id=parent.task_id)
            store.open_task(child, child_grant, make.entry())
            tree.append((child, child_grant))
            parent = child
        closed, closed_grant = make.task()
        closed = replace(closed, parent_task_id=root.task_id)
        store.open_task(closed, closed_grant, make.entry())
        store.end_task(closed.task_id, TaskState.CLOSED, T0, make.entry())
        bystander, bystander_grant = make.task()
        store.open_task(bystander, bystander_grant, make.entry())
        cascaded: list[Task] = []

        def cascade(task: Task) -> AuditEntry:
            cascaded.append(task)
            return make.entry(AuditKind.TASK_REVOKED, task_id=task.task_id)

        ended = store.end_task(root.task_id, state, LATER, make.entry(), cascade=cascade)

        assert ended is not None and ended.state is state
        want_task = TaskState.EXPIRED if state is TaskState.EXPIRED else TaskState.REVOKED
        want_grant = GrantState.EXPIRED if state is TaskState.EXPIRED else GrantState.REVOKED
        assert [t.task_id for t in cascaded] == [t.task_id for t, _ in tree]
        for task, grant in tree:
            got = store.get_task(task.task_id)
            assert got is not None and got.state is want_task and got.ended_at == LATER
            got_grant = store.get_grant(grant.grant_id)
            assert got_grant is not None and got_grant.state is want_grant
        still_closed = store.get_task(closed.task_id)
        assert still_closed is not None and still_closed.state is TaskState.CLOSED
        untouched = store.get_task(bystander.task_id)
        assert untouched is not None and untouched.state is TaskState.OPEN
        # 6 opens, 1 close, the root's end and one record per delegated task.
        _chain_ok(store, 6 + 1 + 1 + len(tree))
