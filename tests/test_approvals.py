"""Human approvals over real HTTP: bound to the exact call, single use, expiring, N of M."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from typer.testing import CliRunner

from support import Agent, copy_policies, live_server, make_runtime, mint
from tether.cli.main import app
from tether.core.audit import verify_chain
from tether.runtime import Runtime
from tether.service.clock import ManualClock

PAY = {"tool": "payments.transfer", "actions": ["spend"], "constraints": {"amount": {"max": 1000}}}
CALL = {"tool": "payments.transfer", "action": "spend", "args": {"amount": 500, "to": "c-1042"}}


def codes(verdict: dict[str, object]) -> list[str]:
    return [r["code"] for r in verdict["reasons"]]  # type: ignore[index, union-attr]


@pytest.fixture
def approver(client: httpx.Client, runtime: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {runtime.approvers.add('alice')}"}


@pytest.fixture
def second_approver(client: httpx.Client, runtime: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {runtime.approvers.add('bob')}"}


def request_approval(agent: Agent, *, before: int = 0) -> tuple[str, dict[str, object]]:
    grant = agent.open_task([PAY], ttl_seconds=3600).json()["grant"]
    for _ in range(before):  # small transfers first, so the task has a history
        agent.authorize(grant, **{**CALL, "args": {"amount": 20, "to": "c-1042"}})
    verdict = agent.authorize(grant, **CALL).json()
    assert verdict["decision"] == "approval_required", verdict
    assert verdict["approval_id"].startswith("apr_")
    return grant, verdict


def test_approval_required_creates_one_pending_approval_with_a_factual_summary(
    analyst: Agent, client: httpx.Client, approver: dict[str, str]
) -> None:
    grant, verdict = request_approval(analyst, before=2)
    again = analyst.authorize(grant, **CALL).json()
    assert again["approval_id"] == verdict["approval_id"]  # a retry does not pile up approvals
    shown = client.get(f"/v1/approvals/{verdict['approval_id']}", headers=approver).json()
    assert shown["state"] == "pending"
    assert shown["required"] == 1
    text = "\n".join(shown["summary"])
    assert (
        "Agent spiffe://tether.local/agent/analyst asks to spend with tool payments.transfer."
        in text
    )
    assert '"support-triage"' in text and "not verified" in text
    assert 'amount = 500; to = "c-1042"' in text
    assert "transfers-over-100-need-approval" in text and "need a human" in text
    assert "Touches no dataset." in text
    assert "so far: decisions 2 allow; 0 effects reported" in text
    listed = client.get("/v1/approvals", params={"state": "pending"}, headers=approver).json()
    assert [a["approval_id"] for a in listed] == [verdict["approval_id"]]


def test_approved_call_is_allowed_once_for_exactly_that_call(
    analyst: Agent, client: httpx.Client, approver: dict[str, str]
) -> None:
    grant, verdict = request_approval(analyst)
    approval_id = verdict["approval_id"]
    pending = analyst.authorize(grant, approval_id=approval_id, **CALL).json()
    assert pending["decision"] == "deny" and codes(pending)[0] == "approval_pending"

    voted = client.post(
        f"/v1/approvals/{approval_id}/approve", json={"reason": "refund agreed"}, headers=approver
    )
    assert voted.status_code == 200 and voted.json()["state"] == "approved"

    other_args = {**CALL, "args": {"amount": 900, "to": "c-1042"}}
    mismatch = analyst.authorize(grant, approval_id=approval_id, **other_args).json()
    assert mismatch["decision"] == "deny" and codes(mismatch)[0] == "approval_mismatch"

    allowed = analyst.authorize(grant, approval_id=approval_id, **CALL).json()
    assert allowed["decision"] == "allow"
    assert codes(allowed) == ["approval_granted"]
    assert "approver:alice" in allowed["reasons"][0]["message"]
    assert "ASI09" in allowed["risks"]

    replay = analyst.authorize(grant, approval_id=approval_id, **CALL).json()
    assert replay["decision"] == "deny" and codes(replay)[0] == "approval_used"
    state = client.get(f"/v1/approvals/{approval_id}", headers=approver).json()
    assert state["state"] == "used" and state["used_by"] == allowed["decision_id"]


def test_another_agent_cannot_use_the_approval(
    analyst: Agent, intruder: Agent, client: httpx.Client, approver: dict[str, str]
) -> None:
    _, verdict = request_approval(analyst)
    client.post(f"/v1/approvals/{verdict['approval_id']}/approve", headers=approver)
    own_grant = intruder.open_task([PAY]).json()["grant"]
    stolen = intruder.authorize(own_grant, approval_id=verdict["approval_id"], **CALL).json()
    assert stolen["decision"] == "deny" and codes(stolen)[0] == "approval_mismatch"
    status = intruder.client.get(
        f"/v1/approvals/{verdict['approval_id']}/status", headers=intruder.headers
    )
    assert status.status_code == 404


def test_expiry_means_deny(
    analyst: Agent, client: httpx.Client, approver: dict[str, str], clock: ManualClock
) -> None:
    grant, verdict = request_approval(analyst)
    approval_id = verdict["approval_id"]
    client.post(f"/v1/approvals/{approval_id}/approve", headers=approver)
    clock.advance(15 * 60)
    expired = analyst.authorize(grant, approval_id=approval_id, **CALL).json()
    assert expired["decision"] == "deny" and codes(expired)[0] == "approval_expired"


def test_voting_on_an_expired_approval_is_refused(
    analyst: Agent, client: httpx.Client, approver: dict[str, str], clock: ManualClock
) -> None:
    _, verdict = request_approval(analyst)
    clock.advance(15 * 60 + 1)
    late = client.post(f"/v1/approvals/{verdict['approval_id']}/approve", headers=approver)
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "approval_not_pending"


def test_a_deny_vote_ends_the_approval(
    analyst: Agent, client: httpx.Client, approver: dict[str, str]
) -> None:
    grant, verdict = request_approval(analyst)
    denied = client.post(
        f"/v1/approvals/{verdict['approval_id']}/deny", json={"reason": "no"}, headers=approver
    )
    assert denied.json()["state"] == "denied"
    retry = analyst.authorize(grant, approval_id=verdict["approval_id"], **CALL).json()
    assert retry["decision"] == "deny" and codes(retry)[0] == "approval_denied"
    status = analyst.client.get(
        f"/v1/approvals/{verdict['approval_id']}/status", headers=analyst.headers
    ).json()
    assert status["state"] == "denied"


def test_workloads_can_never_approve(
    analyst: Agent, client: httpx.Client, approver: dict[str, str]
) -> None:
    _, verdict = request_approval(analyst)
    path = f"/v1/approvals/{verdict['approval_id']}/approve"
    as_agent = client.post(path, headers=analyst.headers)
    assert as_agent.status_code == 403
    assert as_agent.json()["error"]["code"] == "not_an_approver"
    forged = client.post(path, headers={"Authorization": "Bearer tap_not-a-real-token"})
    assert forged.status_code == 401
    missing = client.post(path)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_token"
    assert client.get("/v1/approvals", headers=analyst.headers).status_code == 403
    unknown = client.get("/v1/approvals/apr_" + "0" * 26, headers=approver)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "approval_not_found"
    assert client.get("/v1/approvals/nope", headers=approver).status_code == 400


def test_an_unknown_or_malformed_approval_id_is_a_deny(analyst: Agent) -> None:
    grant, _ = request_approval(analyst)
    for bogus in ("apr_" + "0" * 26, "not-an-id"):
        verdict = analyst.authorize(grant, approval_id=bogus, **CALL).json()
        assert verdict["decision"] == "deny" and codes(verdict)[0] == "approval_unknown"


def test_concurrent_retries_use_an_approval_once(
    analyst: Agent, client: httpx.Client, approver: dict[str, str], base_url: str
) -> None:
    grant, verdict = request_approval(analyst)
    client.post(f"/v1/approvals/{verdict['approval_id']}/approve", headers=approver)

    def retry(_: int) -> str:
        with httpx.Client(base_url=base_url, timeout=10) as own:
            body = {"grant": grant, "approval_id": verdict["approval_id"], **CALL}
            return str(
                own.post("/v1/authorize", json=body, headers=analyst.headers).json()["decision"]
            )

    with ThreadPoolExecutor(max_workers=6) as pool:
        decisions = list(pool.map(retry, range(12)))
    assert decisions.count("allow") == 1
    assert decisions.count("deny") == 11


def test_approvals_are_audited_in_the_chain(
    analyst: Agent, client: httpx.Client, approver: dict[str, str], runtime: Runtime
) -> None:
    grant, verdict = request_approval(analyst)
    client.post(
        f"/v1/approvals/{verdict['approval_id']}/approve", json={"reason": "ok"}, headers=approver
    )
    analyst.authorize(grant, approval_id=verdict["approval_id"], **CALL)
    records = list(runtime.store.audit_records())
    kinds = [r.kind.value for r in records]
    assert kinds == [
        "task_opened",
        "decision",
        "approval_requested",
        "approval_voted",
        "decision",
        # The approved payment's just-in-time credential (credentials.yaml, payments-api).
        "lease_issued",
    ]
    vote = records[3].body
    assert vote["approver"] == "approver:alice" and vote["state"] == "approved"
    assert verify_chain(records, runtime.store.chain_head()).ok


def test_two_distinct_approvers_when_policy_says_so(tmp_path: Path, clock: ManualClock) -> None:
    policies = copy_policies(tmp_path / "policies")
    payments = policies / "payments.cedar"
    payments.write_text(
        payments.read_text().replace(
            '@approval_required("transfers over 100 need a human")',
            '@approval_required("transfers over 100 need a human")\n@approvers("2")',
        )
    )
    runtime = make_runtime(tmp_path / "data", clock, policy_dir=policies)
    try:
        with live_server(runtime) as url, httpx.Client(base_url=url) as client:
            agent = Agent(client, mint(runtime, "analyst", clock))
            alice = {"Authorization": f"Bearer {runtime.approvers.add('alice')}"}
            bob = {"Authorization": f"Bearer {runtime.approvers.add('bob')}"}
            grant, verdict = request_approval(agent)
            path = f"/v1/approvals/{verdict['approval_id']}/approve"
            first = client.post(path, headers=alice).json()
            assert (
                first["state"] == "pending" and first["approvals"] == 1 and first["required"] == 2
            )
            twice = client.post(path, headers=alice)
            assert twice.status_code == 409
            early = agent.authorize(grant, approval_id=verdict["approval_id"], **CALL).json()
            assert codes(early)[0] == "approval_pending"
            assert client.post(path, headers=bob).json()["state"] == "approved"
            done = agent.authorize(grant, approval_id=verdict["approval_id"], **CALL).json()
            assert done["decision"] == "allow"
    finally:
        runtime.close()


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        _Hook.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    _Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def test_a_webhook_announces_pending_approvals(
    tmp_path: Path, clock: ManualClock, webhook: str
) -> None:
    from dataclasses import replace

    from tether.notify import WebhookNotifier
    from tether.runtime import open_runtime

    base = make_runtime(tmp_path / "data", clock)
    config = replace(
        base.config,
        approval_webhook=webhook,
        approval_webhook_secret="whsec_" + "A" * 32,  # signing: tests/test_webhook_signing.py
        public_url="https://tether.example",
    )
    base.close()
    runtime = open_runtime(config, clock=clock)
    try:
        with live_server(runtime) as url, httpx.Client(base_url=url) as client:
            agent = Agent(client, mint(runtime, "analyst", clock))
            _, verdict = request_approval(agent)
            assert isinstance(runtime.notifier, WebhookNotifier)
            assert runtime.notifier.flush()
        assert len(_Hook.received) == 1
        event = _Hook.received[0]
        assert event["event"] == "approval_pending"
        assert event["approval_id"] == verdict["approval_id"]
        assert event["url"] == f"https://tether.example/ui/approvals/{verdict['approval_id']}"
        assert "payments.transfer" in str(event["text"])
    finally:
        runtime.close()


def test_cli_lists_shows_and_approves(
    analyst: Agent, base_url: str, runtime: Runtime, tmp_path: Path
) -> None:
    runner = CliRunner()
    added = runner.invoke(app, ["approvers", "add", "carol", "-d", str(runtime.config.data_dir)])
    assert added.exit_code == 0, added.output
    token = added.output.strip().splitlines()[-1]
    assert token.startswith("tap_")
    _, verdict = request_approval(analyst)
    env = {"TETHER_URL": base_url, "TETHER_APPROVER_TOKEN": token, "COLUMNS": "200"}
    listed = runner.invoke(app, ["approvals", "list"], env=env)
    assert listed.exit_code == 0 and verdict["approval_id"] in listed.output
    shown = runner.invoke(app, ["approvals", "show", str(verdict["approval_id"])], env=env)
    assert "need a human" in shown.output
    approved = runner.invoke(
        app, ["approvals", "approve", str(verdict["approval_id"]), "-r", "fine"], env=env
    )
    assert approved.exit_code == 0 and "approved" in approved.output
    again = runner.invoke(app, ["approvals", "approve", str(verdict["approval_id"])], env=env)
    assert again.exit_code == 5 and "approval_not_pending" in again.output  # refused
    bad = runner.invoke(
        app, ["approvals", "list"], env={"TETHER_URL": base_url, "TETHER_APPROVER_TOKEN": "tap_x"}
    )
    assert bad.exit_code == 5 and "invalid_token" in bad.output


BULK_NEEDS_A_HUMAN = """
@id("bulk-reads-need-approval")
@approval_required("reading over 100 customers needs a human")
forbid (principal, action == Action::"read", resource == Tool::"crm.query")
when { context.args has limit && context.args.limit > 100 };
"""


def test_an_approved_call_still_carries_the_permits_obligations(
    tmp_path: Path, clock: ManualClock
) -> None:
    policies = copy_policies(tmp_path / "policies")
    (policies / "bulk.cedar").write_text(BULK_NEEDS_A_HUMAN)
    runtime = make_runtime(tmp_path / "data", clock, policies)
    human = {"Authorization": f"Bearer {runtime.approvers.add('alice')}"}
    read = {"tool": "crm.query", "action": "read", "dataset": "crm", "args": {"limit": 200}}
    try:
        with live_server(runtime) as url, httpx.Client(base_url=url) as client:
            analyst = Agent(client, mint(runtime, "analyst", clock))
            grant = analyst.open_task(
                [{"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}]
            ).json()["grant"]
            asked = analyst.authorize(grant, **read).json()
            assert asked["decision"] == "approval_required" and asked["obligations"] == []
            client.post(f"/v1/approvals/{asked['approval_id']}/approve", headers=human)

            approved = analyst.authorize(grant, approval_id=asked["approval_id"], **read).json()

            assert approved["decision"] == "allow"
            # The permit analyst-reads-crm caps rows at 500: approval does not lift the cap.
            assert {"kind": "row_cap", "value": "500", "policy_id": "analyst-reads-crm"} in (
                approved["obligations"]
            )
    finally:
        runtime.close()
