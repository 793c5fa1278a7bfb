"""The gateway's effects go into the decisions' group commit after the answer: the next decision
on the task (through the gateway or any other door) is made only once the effect is written, a
batch that fails to commit refuses the task's next call and writes nothing of the effect, and a
stopped gateway has written every effect it queued."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from mcp_harness import CRM_QUERY, AgentKeys, connect, records, run, running_gateway, text_of

from support import INTENT, make_runtime, mint
from tether.core.audit import AuditKind, AuditRecord, verify_chain
from tether.core.budget import Budgets
from tether.core.scope import ActionKind, Scope
from tether.core.task import Intent
from tether.core.verdict import Decision, ReasonCode
from tether.runtime import Runtime
from tether.service.clock import ManualClock
from tether.service.enforce import CallRequest

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def budgeted_grant(runtime: Runtime, clock: ManualClock, records_limit: int) -> AgentKeys:
    """An analyst's CRM grant whose task may read ``records_limit`` records in all."""
    svid = mint(runtime, "analyst", clock)
    workload = runtime.verifier.verify(svid, clock.now())
    opened = runtime.tasks.open_task(
        workload,
        Intent(**INTENT),
        [Scope.from_json(CRM_QUERY)],
        600,
        budgets=Budgets.from_json({"records": records_limit}),
    )
    return AgentKeys(svid, opened.token)


def logged(runtime: Runtime, kind: AuditKind) -> list[AuditRecord]:
    """The audit log's records of ``kind`` as they are now (not waiting for queued effects)."""
    return [r for r in runtime.store.audit_records() if r.kind is kind]


def calls(url: str, keys: AgentKeys, n: int) -> list[object]:
    """``n`` CRM queries, one after another in one session, each sent once the last answered."""

    async def scenario() -> list[object]:
        async with connect(url, keys) as client:
            return [await client.call_tool("crm.query", {"customer": "c-1042"}) for _ in range(n)]

    return run(scenario)


def test_the_next_call_on_a_task_is_decided_with_the_last_calls_effect_settled(
    tmp_path: Path,
) -> None:
    clock = ManualClock(START)
    with running_gateway(tmp_path, clock) as gw:
        # Each read reserves 100 records (the read floor) until its effect settles it at the 3
        # records the CRM returned: a second read fits in 150 only once the first is settled.
        keys = budgeted_grant(gw.runtime, clock, 150)
        first, second, third = calls(gw.url, keys, 3)
        assert not first.is_error and not second.is_error, text_of(second)  # type: ignore[attr-defined]
        assert not third.is_error, text_of(third)  # type: ignore[attr-defined]
        effects = records(gw.runtime, AuditKind.EFFECT)
        assert [e.body["records"] for e in effects] == [3, 3, 3]


def test_an_effect_whose_batch_fails_to_commit_refuses_the_tasks_next_call_on_every_door(
    tmp_path: Path,
) -> None:
    clock = ManualClock(START)
    with running_gateway(tmp_path, clock) as gw:
        keys = budgeted_grant(gw.runtime, clock, 1000)
        database = gw.data_dir / "tether.db"
        # Every batch that writes an effect fails at its COMMIT (a deferred foreign key).
        with sqlite3.connect(database) as db:
            db.executescript(
                "CREATE TABLE commit_guard (ref TEXT REFERENCES audit(record_id) "
                "DEFERRABLE INITIALLY DEFERRED);"
                "CREATE TRIGGER fail_commit AFTER INSERT ON effects "
                "BEGIN INSERT INTO commit_guard VALUES ('no such record'); END;"
            )
        answered, refused = calls(gw.url, keys, 2)
        # The answer did not wait for the effect; the next call did, and is refused.
        assert not answered.is_error, text_of(answered)  # type: ignore[attr-defined]
        assert refused.is_error  # type: ignore[attr-defined]
        error = refused.meta["tether/error"]  # type: ignore[attr-defined]
        assert error["code"] != "allow" and "decision_id" not in error, error
        decisions = logged(gw.runtime, AuditKind.DECISION)
        assert len(decisions) == 1  # the refused call was not decided, nor sent upstream
        assert logged(gw.runtime, AuditKind.EFFECT) == []  # nothing half-written
        (hold,) = gw.runtime.store.decision_holds(decisions[0].body["decision_id"])  # type: ignore[arg-type]
        assert hold[1] is None  # its reservation stands, unsettled

        # Another door (the one enforcement entry, as /v1/authorize calls it) on the same
        # task: denied too while the effect is not written.
        agent = gw.runtime.verifier.verify(keys.svid, clock.now())
        request = CallRequest("crm.query", ActionKind.READ, "crm", {"customer": "c-1042"})
        other_door = gw.runtime.authorizer.enforce(agent, keys.grant, request)
        assert other_door.decision is Decision.DENY
        assert [r.code for r in other_door.reasons] == [ReasonCode.STORE_UNAVAILABLE]

        with sqlite3.connect(database) as db:
            db.execute("DROP TRIGGER fail_commit")
        # The next call writes the kept effect first, then is decided and answered.
        (after,) = calls(gw.url, keys, 1)
        assert not after.is_error, text_of(after)  # type: ignore[attr-defined]
        effects = records(gw.runtime, AuditKind.EFFECT)
        assert effects[0].body["decision_id"] == decisions[0].body["decision_id"]
        assert len(effects) == 2  # the kept effect once, and the last call's
        chain = verify_chain(gw.runtime.store.audit_records(), gw.runtime.store.chain_head())
        assert chain.ok, chain


def test_a_stopped_gateway_has_written_the_effects_it_queued(tmp_path: Path) -> None:
    clock = ManualClock(START)
    with running_gateway(tmp_path, clock) as gw:
        keys = budgeted_grant(gw.runtime, clock, 1000)
        answered = calls(gw.url, keys, 3)
        assert not any(a.is_error for a in answered)  # type: ignore[attr-defined]
        # Stopped right after the answers, without waiting for the effects.
    reopened = make_runtime(tmp_path / "data", clock)
    try:
        kinds = [r.kind for r in reopened.store.audit_records()]
        assert kinds.count(AuditKind.DECISION) == 3 and kinds.count(AuditKind.EFFECT) == 3
    finally:
        reopened.close()


def observed_rows(database: Path, task_id: str) -> int:
    with sqlite3.connect(database) as db:
        (count,) = db.execute(
            "SELECT count(*) FROM observations WHERE task_id = ?", (task_id,)
        ).fetchone()
    return int(count)


def test_a_calls_effect_and_what_it_showed_the_agent_are_one_write(tmp_path: Path) -> None:
    clock = ManualClock(START)
    with running_gateway(tmp_path, clock) as gw:
        keys = budgeted_grant(gw.runtime, clock, 1000)
        database = gw.data_dir / "tether.db"
        # The effect's row cannot be inserted: its write fails inside the batch.
        with sqlite3.connect(database) as db:
            db.execute(
                "CREATE TRIGGER refuse_effect BEFORE INSERT ON effects "
                "BEGIN SELECT RAISE(ABORT, 'effects refused'); END;"
            )

        async def shown(n: int) -> list[object]:
            async with connect(gw.url, keys) as client:
                return [
                    await client.call_tool("crm.query", {"customer": "carol@example.com"})
                    for _ in range(n)
                ]

        answered, refused = run(lambda: shown(2))
        assert not answered.is_error, text_of(answered)  # type: ignore[attr-defined]
        assert refused.is_error  # type: ignore[attr-defined]  # its effect is not written
        (decision,) = logged(gw.runtime, AuditKind.DECISION)
        assert decision.task_id is not None
        # What the answer showed the agent went with its effect: neither is written.
        assert observed_rows(database, decision.task_id) == 0
        assert logged(gw.runtime, AuditKind.EFFECT) == []

        with sqlite3.connect(database) as db:
            db.execute("DROP TRIGGER refuse_effect")
        (after,) = run(lambda: shown(1))
        assert not after.is_error, text_of(after)  # type: ignore[attr-defined]
        effects = records(gw.runtime, AuditKind.EFFECT)  # settled: both calls' writes made
        assert effects[0].body["decision_id"] == decision.body["decision_id"]
        assert len(effects) == 2
        assert observed_rows(database, decision.task_id) > 0  # written with the kept effect
