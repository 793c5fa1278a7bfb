"""Every task event, decision and effect is audited, chained, and free of secrets."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx

from support import Agent, copy_policies, live_server, make_runtime, mint
from tether.core.audit import verify_chain
from tether.core.identity import Workload
from tether.core.scope import ActionKind
from tether.core.verdict import Decision, ReasonCode, Verdict
from tether.runtime import Runtime
from tether.service.clock import ManualClock
from tether.service.enforce import CallRequest

SCOPES = [
    {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]},
    {"tool": "payments.transfer", "actions": ["spend"]},
]


def _db_bytes(runtime: Runtime) -> bytes:
    data_dir = runtime.config.data_dir
    return b"".join(p.read_bytes() for p in data_dir.glob("tether.db*"))


def test_each_event_is_one_chained_record(analyst: Agent, runtime: Runtime) -> None:
    task = analyst.open_task(SCOPES).json()
    verdict = analyst.authorize(
        task["grant"], tool="crm.query", action="read", dataset="crm", args={"customer": "c-77"}
    ).json()
    analyst.effect(verdict["decision_id"], status="ok", records=3)
    analyst.close(task["task_id"])
    records = list(runtime.store.audit_records())
    assert [r.kind.value for r in records] == ["task_opened", "decision", "effect", "task_closed"]
    assert all(r.agent == "spiffe://tether.local/agent/analyst" for r in records)
    assert all(r.task_id == task["task_id"] for r in records)
    decision = records[1].body
    assert decision["intent"]["workflow"] == "support-triage"  # type: ignore[index, call-overload]
    assert decision["verdict"]["decision"] == "allow"  # type: ignore[index, call-overload]
    assert decision["verdict"]["policy_revision"] == runtime.policy.revision  # type: ignore[index, call-overload]
    assert verify_chain(records, runtime.store.chain_head()).ok


def test_secrets_and_argument_values_never_reach_the_store(
    analyst: Agent, runtime: Runtime
) -> None:
    task = analyst.open_task(SCOPES).json()
    secret_customer = "customer-secret-4242"
    verdict = analyst.authorize(
        task["grant"],
        tool="crm.query",
        action="read",
        dataset="crm",
        args={"customer": secret_customer},
    ).json()
    analyst.effect(verdict["decision_id"], status="ok", recipients=["bob.private@example.org"])
    analyst.authorize(task["grant"], tool="payments.transfer", action="spend", args={"amount": 77})
    raw = _db_bytes(runtime)
    assert secret_customer.encode() not in raw
    assert b"bob.private@example.org" not in raw
    assert task["grant"].encode() not in raw
    assert analyst.svid.encode() not in raw
    records = list(runtime.store.audit_records())
    call = records[1].body["call"]
    assert str(call["args"]["customer"]).startswith("hmac-sha256:")  # type: ignore[index, call-overload]
    spend = [r for r in records if r.kind.value == "decision"][-1]
    assert spend.body["call"]["args"]["amount"] == 77  # type: ignore[index, call-overload]  # listed plain


def test_equal_values_get_equal_macs(analyst: Agent, runtime: Runtime) -> None:
    grant = analyst.open_task(SCOPES).json()["grant"]
    for _ in range(2):
        analyst.authorize(
            grant, tool="crm.query", action="read", dataset="crm", args={"customer": "c"}
        )
    macs = [
        r.body["call"]["args"]["customer"]  # type: ignore[index, call-overload]
        for r in runtime.store.audit_records()
        if r.kind.value == "decision"
    ]
    assert len(macs) == 2 and macs[0] == macs[1]


def test_denials_and_refusals_are_audited(
    analyst: Agent, intruder: Agent, runtime: Runtime
) -> None:
    grant = analyst.open_task(SCOPES).json()["grant"]
    intruder.authorize(grant, tool="crm.query", action="read", dataset="crm")
    analyst.open_task([{"tool": "shell.exec", "actions": ["execute"]}])
    kinds = [(r.kind.value, r.agent) for r in runtime.store.audit_records()]
    assert ("decision", "spiffe://tether.local/agent/intruder") in kinds
    assert ("task_refused", "spiffe://tether.local/agent/analyst") in kinds


def test_if_the_audit_record_cannot_be_written_the_call_is_denied(
    analyst: Agent, runtime: Runtime
) -> None:
    grant = analyst.open_task(SCOPES).json()["grant"]
    before = runtime.store.chain_head()
    # A real write failure inside SQLite: the audit table refuses inserts.
    with sqlite3.connect(runtime.config.data_dir / "tether.db") as db:
        db.execute(
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
    verdict = analyst.authorize(grant, tool="crm.query", action="read", dataset="crm").json()
    assert verdict["decision"] == "deny"
    assert [r["code"] for r in verdict["reasons"]] == ["audit_unavailable"]
    assert runtime.store.get_decision(verdict["decision_id"]) is None
    assert runtime.store.chain_head() == before


def test_a_batch_whose_commit_fails_denies_every_decision_in_it(
    analyst: Agent, runtime: Runtime
) -> None:
    # Decisions awaited on an event loop share the writer thread's group commit. Here every
    # write of a batch succeeds and its COMMIT fails (a deferred foreign key, checked only at
    # commit): every decision in it must be denied with audit_unavailable, none recorded.
    grant = analyst.open_task(SCOPES).json()["grant"]
    before = runtime.store.chain_head()
    with sqlite3.connect(runtime.config.data_dir / "tether.db") as db:
        db.executescript(
            "CREATE TABLE commit_guard (ref TEXT REFERENCES audit(record_id) "
            "DEFERRABLE INITIALLY DEFERRED);"
            "CREATE TRIGGER fail_commit AFTER INSERT ON decisions "
            "BEGIN INSERT INTO commit_guard VALUES ('no such record'); END;"
        )
    agent = Workload.from_spiffe_id("spiffe://tether.local/agent/analyst")
    request = CallRequest("crm.query", ActionKind.READ, "crm", {"limit": 10})

    async def together() -> list[Verdict]:
        calls = [runtime.authorizer.enforce_async(agent, grant, request) for _ in range(8)]
        return await asyncio.gather(*calls)

    verdicts = asyncio.run(together())
    assert [v.decision for v in verdicts] == [Decision.DENY] * 8
    assert {v.reasons[0].code for v in verdicts} == {ReasonCode.AUDIT_UNAVAILABLE}
    assert all(runtime.store.get_decision(v.decision_id) is None for v in verdicts)
    assert runtime.store.chain_head() == before


def test_decisions_and_audit_survive_a_restart(tmp_path: Path, clock: ManualClock) -> None:
    data = tmp_path / "data"
    first = make_runtime(data, clock)
    with live_server(first) as url, httpx.Client(base_url=url) as client:
        agent = Agent(client, mint(first, "analyst", clock))
        task = agent.open_task(SCOPES).json()
        agent.authorize(task["grant"], tool="crm.query", action="read", dataset="crm")
    first.close()

    second = make_runtime(data, clock)
    try:
        with live_server(second) as url, httpx.Client(base_url=url) as client:
            agent = Agent(client, mint(second, "analyst", clock))
            verdict = agent.authorize(task["grant"], tool="crm.query", action="read", dataset="crm")
            assert verdict.json()["decision"] == "allow"
        records = list(second.store.audit_records())
        assert [r.kind.value for r in records] == ["task_opened", "decision", "decision"]
        assert verify_chain(records, second.store.chain_head()).ok
    finally:
        second.close()


def test_policy_change_is_picked_up_and_a_broken_file_keeps_the_last_good_set(
    tmp_path: Path, clock: ManualClock
) -> None:
    policies = copy_policies(tmp_path / "policies")
    runtime = make_runtime(tmp_path / "data", clock, policy_dir=policies)
    try:
        with live_server(runtime) as url, httpx.Client(base_url=url) as client:
            agent = Agent(client, mint(runtime, "analyst", clock))
            grant = agent.open_task(SCOPES).json()["grant"]

            def read() -> dict[str, object]:
                return agent.authorize(grant, tool="crm.query", action="read", dataset="crm").json()

            assert read()["decision"] == "allow"
            revision = runtime.policy.revision
            (policies / "zz_freeze.cedar").write_text(
                '@id("freeze-crm")\n'
                'forbid(principal, action == Action::"read", resource == Tool::"crm.query");\n'
            )
            runtime.policy.check_for_changes()
            frozen = read()
            assert frozen["decision"] == "deny" and frozen["policy_ids"] == ["freeze-crm"]
            assert frozen["policy_revision"] != revision

            good_revision = runtime.policy.revision
            (policies / "zz_broken.cedar").write_text("permit(principal, action, resource) when {")
            runtime.policy.check_for_changes()
            assert runtime.policy.revision == good_revision
            assert read()["decision"] == "deny"  # still the last good set
    finally:
        runtime.close()
