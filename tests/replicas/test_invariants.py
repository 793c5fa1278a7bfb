"""The scale-out invariants, on two replicas sharing one PostgreSQL database (DESIGN "Scale-out").

1. A revocation on one replica (a task closed, a parent's delegate, an agent's kill switch) is
   refused by the other on its very next call: tether keeps no grant cache. The verified-token caches hold signatures only; every authorize asks the store
   for the grant's and the task's state, so "within one second" is met with zero delay.
2. A budget is never overspent, whatever replica the calls land on.
3. An approval is used at most once.
4. The audit log stays one hash chain with no gap and no fork, and ``tether audit verify
   --store-url`` proves it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import httpx
from typer.testing import CliRunner

from replicas.harness import (
    BIG_TRANSFER,
    CRM,
    PAY,
    READ,
    Agents,
    Replica,
    auditor,
    codes,
    decisions_in,
    open_task,
    post_authorize,
    race,
    revoke_agent,
    verified_log,
)
from support import Agent
from tether.cli.main import app

REFUSED = {"grant_revoked", "task_not_open"}
TD = "spiffe://tether.local/agent/"
DOCS: dict[str, object] = {"tool": "docs.search", "actions": ["read"], "datasets": ["docs"]}
SEARCH: dict[str, object] = {"tool": "docs.search", "action": "read", "dataset": "docs"}


def test_a_task_closed_on_one_replica_is_refused_by_the_other_on_the_next_call(
    pair: list[Replica], agents: Callable[[str], Agents]
) -> None:
    analyst = agents("analyst")
    waits: list[float] = []
    for n in range(10):
        here, there = analyst.on[n % 2], analyst.on[(n + 1) % 2]
        task = open_task(here, [CRM])
        # The other replica has verified this grant and allowed a call with it: anything it
        # could cache about the grant is warm.
        assert there.authorize(task["grant"], **READ).json()["decision"] == "allow"
        closed = here.close(task["task_id"])
        assert closed.status_code == 200 and closed.json()["state"] == "closed"
        started = time.monotonic()
        refused = there.authorize(task["grant"], **READ).json()  # no wait, no clock moved
        waits.append(time.monotonic() - started)
        assert refused["decision"] == "deny", refused
        assert codes(refused)[0] in REFUSED
    # The refusal is the first answer after the close: the only delay is one round trip.
    assert max(waits) < 1.0


def test_closing_a_parent_on_one_replica_revokes_its_delegate_on_the_other(
    pair: list[Replica], agents: Callable[[str], Agents]
) -> None:
    analyst, helper = agents("analyst"), agents("helper")
    parent = open_task(analyst.on[0], [DOCS])
    delegated = analyst.on[1].client.post(
        f"/v1/tasks/{parent['task_id']}/delegate",
        json={"grant": parent["grant"], "agent": TD + "helper", "scopes": [DOCS]},
        headers=analyst.on[1].headers,
    )
    assert delegated.status_code == 201, delegated.text
    child = delegated.json()["grant"]
    assert helper.on[0].authorize(child, **SEARCH).json()["decision"] == "allow"
    assert analyst.on[1].close(parent["task_id"]).status_code == 200
    refused = helper.on[0].authorize(child, **SEARCH).json()
    assert refused["decision"] == "deny" and codes(refused)[0] in REFUSED


def test_an_agent_revoked_on_one_replica_is_refused_by_the_other_on_the_next_call(
    pair: list[Replica], agents: Callable[[str], Agents]
) -> None:
    a, b = pair
    analyst = agents("analyst")
    human = a.runtime.approvers.add("oncall")
    task = open_task(analyst.on[0], [CRM])
    assert analyst.on[0].authorize(task["grant"], **READ).json()["decision"] == "allow"
    revoked = revoke_agent(b, human, TD + "analyst")
    assert revoked.status_code == 200, revoked.text
    refused = analyst.on[0].authorize(task["grant"], **READ).json()
    assert refused["decision"] == "deny" and codes(refused)[0] in REFUSED
    blocked = analyst.on[0].open_task([CRM])
    assert blocked.status_code == 403 and blocked.json()["error"]["code"] == "agent_revoked"


def test_parallel_calls_on_both_replicas_never_overspend_a_budget(
    pair: list[Replica], agents: Callable[[str], Agents], store_url: str
) -> None:
    analyst = agents("analyst")
    task = open_task(analyst.on[0], [CRM], budgets={"records": 1000})
    body: dict[str, object] = {"grant": task["grant"], "expect": {"records": 100}, **READ}
    calls = [partial(post_authorize, pair[n % 2], analyst.svid, body) for n in range(24)]
    responses = race(calls)
    assert {r.status_code for r in responses} == {200}
    verdicts = [r.json() for r in responses]
    allowed = [v for v in verdicts if v["decision"] == "allow"]
    assert len(allowed) == 10
    assert all(codes(v) == ["budget_exceeded"] for v in verdicts if v["decision"] != "allow")
    with auditor(store_url) as store:
        recorded = decisions_in(list(store.audit_records()))
    assert all(recorded[v["decision_id"]] == "allow" for v in allowed)
    assert sum(recorded[v["decision_id"]] == "allow" for v in verdicts) == 10


def test_an_approved_call_is_allowed_once_whatever_replica_the_retries_reach(
    pair: list[Replica], agents: Callable[[str], Agents]
) -> None:
    a, b = pair
    analyst = agents("analyst")
    # The approver registry lives in the shared data directory: added on a, known to b.
    approver = {"Authorization": f"Bearer {a.runtime.approvers.add('alice')}"}
    task = open_task(analyst.on[0], [PAY])
    asked = analyst.on[0].authorize(task["grant"], **BIG_TRANSFER).json()
    assert asked["decision"] == "approval_required"
    approval_id = asked["approval_id"]
    # The same call retried on b finds the same pending approval: both replicas bind the call
    # with the same audit key, so they compute the same MAC of its arguments.
    again = analyst.on[1].authorize(task["grant"], **BIG_TRANSFER).json()
    assert again["approval_id"] == approval_id
    with b.client() as client:
        voted = client.post(
            f"/v1/approvals/{approval_id}/approve", json={"reason": "agreed"}, headers=approver
        )
    assert voted.status_code == 200 and voted.json()["state"] == "approved"

    body: dict[str, object] = {"grant": task["grant"], "approval_id": approval_id, **BIG_TRANSFER}
    responses = race([partial(post_authorize, pair[n % 2], analyst.svid, body) for n in range(12)])
    verdicts = [r.json() for r in responses]
    allowed = [v for v in verdicts if v["decision"] == "allow"]
    assert len(allowed) == 1, verdicts
    assert all(codes(v)[0] == "approval_used" for v in verdicts if v["decision"] != "allow")
    with a.client() as client:
        state = client.get(f"/v1/approvals/{approval_id}", headers=approver).json()
    assert state["state"] == "used" and state["used_by"] == allowed[0]["decision_id"]


def _session(replicas: list[Replica], svid: str, n: int) -> list[dict[str, object]]:
    """One agent's task spread over the replicas: open, reads, effects, a transfer, close."""
    clients = [r.client() for r in replicas]
    try:
        on = [Agent(c, svid) for c in clients]

        def pick(i: int) -> Agent:
            return on[(n + i) % len(on)]

        task = open_task(pick(0), [CRM, PAY], budgets={"records": 1000})
        verdicts: list[dict[str, object]] = []
        for i in range(6):
            verdict = pick(i).authorize(task["grant"], expect={"records": 5}, **READ).json()
            verdicts.append(verdict)
            if verdict["decision"] == "allow":
                effect = pick(i + 1).effect(str(verdict["decision_id"]), status="ok", records=3)
                assert effect.status_code == 201, effect.text
        small: dict[str, object] = {**BIG_TRANSFER, "args": {"amount": 20, "to": "c-1"}}
        verdicts.append(pick(1).authorize(task["grant"], **small).json())
        verdicts.append(pick(2).authorize(task["grant"], **BIG_TRANSFER).json())
        assert pick(3).close(task["task_id"]).status_code == 200
        verdicts.append(pick(4).authorize(task["grant"], **READ).json())
        return verdicts
    finally:
        for c in clients:
            c.close()


def test_mixed_traffic_on_both_replicas_leaves_one_verifiable_chain(
    pair: list[Replica], agents: Callable[[str], Agents], store_url: str
) -> None:
    svids = [agents(f"worker-{n}").svid for n in range(8)]
    sessions = race([partial(_session, pair, svid, n) for n, svid in enumerate(svids)])
    verdicts = [v for session in sessions for v in session]
    assert {str(v["decision"]) for v in verdicts} == {"allow", "deny", "approval_required"}

    with auditor(store_url) as store:
        records, report = verified_log(store)
        heads = store.chain_heads()
    # One chain per replica, each dense from 1 to its head (no gap) and linked (no fork).
    assert {r.partition for r in records} == {"a", "b"}
    for name in ("a", "b"):
        seqs = [r.seq for r in records if r.partition == name]
        head = heads[name]
        assert head is not None and seqs == list(range(1, head.seq + 1))
    assert report.ok, report.problem
    recorded = decisions_in(records)  # and each decision is recorded once
    assert all(recorded[str(v["decision_id"])] == v["decision"] for v in verdicts)

    runner = CliRunner()
    by_flag = runner.invoke(app, ["audit", "verify", "--store-url", store_url])
    assert by_flag.exit_code == 0, by_flag.output
    assert f"{len(records)} records, chain intact" in by_flag.output
    assert "(postgresql store)" in by_flag.output
    by_env = runner.invoke(app, ["audit", "verify"], env={"TETHER_DATABASE_URL": store_url})
    assert by_env.exit_code == 0 and "chain intact" in by_env.output


def test_the_replicas_report_ready_on_the_shared_store(pair: list[Replica]) -> None:
    for replica in pair:
        ready = httpx.get(f"{replica.base_url}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        assert replica.runtime.store.backend == "postgresql"
