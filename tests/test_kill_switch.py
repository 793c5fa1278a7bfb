"""The kill switch (OWASP ASI10): revoke an agent everywhere at once, then restore it."""

from __future__ import annotations

import httpx
from typer.testing import CliRunner

from support import Agent, mint
from tether.cli.main import app
from tether.runtime import Runtime
from tether.service.clock import ManualClock

TD = "spiffe://tether.local/agent/"
UPDATE = {"tool": "crm.update", "actions": ["write"], "datasets": ["tickets"]}
WRITE = {"tool": "crm.update", "action": "write", "dataset": "tickets", "args": {}}


def test_revoking_an_agent_ends_its_tasks_and_delegates_and_blocks_new_ones(
    analyst: Agent, client: httpx.Client, runtime: Runtime, clock: ManualClock
) -> None:
    human = {"Authorization": f"Bearer {runtime.approvers.add('oncall')}"}
    first = analyst.open_task([UPDATE]).json()
    second = analyst.open_task([UPDATE]).json()
    child = client.post(
        f"/v1/tasks/{first['task_id']}/delegate",
        json={"grant": first["grant"], "agent": TD + "helper", "scopes": [UPDATE]},
        headers=analyst.headers,
    ).json()
    helper = Agent(client, mint(runtime, "helper", clock))
    assert helper.authorize(child["grant"], **WRITE).json()["decision"] == "allow"

    as_agent = client.post(
        "/v1/agents/revoke", json={"agent": TD + "analyst", "reason": "x"}, headers=analyst.headers
    )
    assert as_agent.status_code == 403  # no workload can pull the switch
    revoked = client.post(
        "/v1/agents/revoke",
        json={"agent": TD + "analyst", "reason": "prompt-injected, exfiltrating"},
        headers=human,
    )
    assert revoked.status_code == 200 and revoked.json()["tasks_ended"] == 2
    for grant in (first["grant"], second["grant"]):
        verdict = analyst.authorize(grant, **WRITE).json()
        assert verdict["decision"] == "deny" and verdict["reasons"][0]["code"] == "grant_revoked"
    cascaded = helper.authorize(child["grant"], **WRITE).json()
    assert cascaded["decision"] == "deny"
    blocked = analyst.open_task([UPDATE])
    assert blocked.status_code == 403 and blocked.json()["error"]["code"] == "agent_revoked"
    listed = client.get("/v1/agents/revoked", headers=human).json()
    assert listed[0]["agent"] == TD + "analyst" and listed[0]["revoked_by"] == "approver:oncall"
    kinds = [r.kind.value for r in runtime.store.audit_records()]
    assert "agent_revoked" in kinds and kinds.count("task_revoked") == 3

    restored = client.post("/v1/agents/restore", json={"agent": TD + "analyst"}, headers=human)
    assert restored.status_code == 204
    assert analyst.open_task([UPDATE]).status_code == 201
    again = client.post("/v1/agents/restore", json={"agent": TD + "analyst"}, headers=human)
    assert again.status_code == 404


def test_a_revoked_agent_receives_no_delegation(
    analyst: Agent, client: httpx.Client, runtime: Runtime
) -> None:
    runtime.agents.revoke(TD + "helper", "compromised", "operator:test")
    task = analyst.open_task([UPDATE]).json()
    refused = client.post(
        f"/v1/tasks/{task['task_id']}/delegate",
        json={"grant": task["grant"], "agent": TD + "helper", "scopes": [UPDATE]},
        headers=analyst.headers,
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "agent_revoked"


def test_bad_kill_switch_requests(client: httpx.Client, runtime: Runtime) -> None:
    human = {"Authorization": f"Bearer {runtime.approvers.add('oncall')}"}
    for body in (
        {"agent": "not-an-id", "reason": "x"},
        {"agent": "spiffe://", "reason": "x"},
        {"agent": TD + "a", "reason": ""},
        {"agent": TD + "a"},
    ):
        assert client.post("/v1/agents/revoke", json=body, headers=human).status_code == 400, body
    assert (
        client.post("/v1/agents/revoke", json={"agent": TD + "a", "reason": "x"}).status_code == 401
    )


def test_the_cli_pulls_the_switch_on_the_store(analyst: Agent, runtime: Runtime) -> None:
    task = analyst.open_task([UPDATE]).json()
    runner = CliRunner()
    data_dir = str(runtime.config.data_dir)
    result = runner.invoke(
        app, ["agents", "revoke", TD + "analyst", "--reason", "incident 7", "-d", data_dir]
    )
    assert result.exit_code == 0, result.output
    assert "1 open task(s) ended" in result.output
    verdict = analyst.authorize(task["grant"], **WRITE).json()
    assert verdict["decision"] == "deny"
    listed = runner.invoke(app, ["agents", "list", "-d", data_dir], env={"COLUMNS": "200"})
    assert "incident 7" in listed.output
    restored = runner.invoke(app, ["agents", "restore", TD + "analyst", "-d", data_dir])
    assert restored.exit_code == 0
    missing = runner.invoke(app, ["agents", "restore", TD + "analyst", "-d", data_dir])
    assert missing.exit_code == 4  # not found
