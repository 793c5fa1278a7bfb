"""Break-glass over real HTTP: explicit, N humans, time-boxed, never inherited, reviewed."""

from __future__ import annotations

import httpx
import pytest

from support import Agent, mint
from tether.runtime import Runtime
from tether.service.clock import ManualClock

TD = "spiffe://tether.local/agent/"
READ = {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}
UPDATE = {"tool": "crm.update", "actions": ["write"], "datasets": ["tickets"]}
DELETE_SCOPE = {"tool": "crm.purge", "actions": ["delete"], "datasets": ["crm"]}
DELETE_CALL = {"tool": "crm.purge", "action": "delete", "dataset": "crm", "args": {"id": "c-9"}}


@pytest.fixture
def humans(client: httpx.Client, runtime: Runtime) -> dict[str, dict[str, str]]:
    return {
        name: {"Authorization": f"Bearer {runtime.approvers.add(name)}"}
        for name in ("oncall", "alice", "bob")
    }


def codes(verdict: dict[str, object]) -> list[str]:
    return [r["code"] for r in verdict["reasons"]]  # type: ignore[index, union-attr]


def open_task(agent: Agent) -> dict[str, str]:
    response = agent.open_task([READ], ttl_seconds=3600)
    assert response.status_code == 201, response.text
    return dict(response.json())


def request(
    client: httpx.Client, task: dict[str, str], headers: dict[str, str]
) -> dict[str, object]:
    response = client.post(
        f"/v1/tasks/{task['task_id']}/breakglass",
        json={"scopes": [DELETE_SCOPE], "reason": "purge a poisoned record now"},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_two_other_humans_activate_it_and_the_call_is_audited_loudly(
    analyst: Agent, client: httpx.Client, humans: dict[str, dict[str, str]], runtime: Runtime
) -> None:
    task = open_task(analyst)
    before = analyst.authorize(task["grant"], **DELETE_CALL).json()
    assert before["decision"] == "deny" and codes(before) == ["tool_not_in_scope"]

    bg = request(client, task, humans["oncall"])
    assert bg["state"] == "pending" and bg["required"] == 2
    path = f"/v1/breakglass/{bg['breakglass_id']}"
    self_vote = client.post(path + "/approve", headers=humans["oncall"])
    assert self_vote.status_code == 403  # the requester cannot approve their own request
    assert client.post(path + "/approve", headers=analyst.headers).status_code == 403
    one = client.post(path + "/approve", json={"reason": "seen"}, headers=humans["alice"]).json()
    assert one["state"] == "pending"
    still = analyst.authorize(task["grant"], **DELETE_CALL).json()
    assert still["decision"] == "deny"
    two = client.post(path + "/approve", headers=humans["bob"]).json()
    assert two["state"] == "active" and two["active_until"]

    allowed = analyst.authorize(task["grant"], **DELETE_CALL).json()
    assert allowed["decision"] == "allow"
    assert codes(allowed) == ["break_glass"]
    assert "approver:alice" in allowed["reasons"][0]["message"]
    assert "ASI10" in allowed["risks"]
    # Outside its scopes, break-glass changes nothing.
    other = analyst.authorize(task["grant"], tool="crm.purge", action="write", dataset="crm").json()
    assert other["decision"] == "deny"

    records = list(runtime.store.audit_records())
    kinds = [r.kind.value for r in records]
    assert "breakglass_requested" in kinds and kinds.count("breakglass_voted") == 2
    used = [r for r in records if r.kind.value == "breakglass_decision"]
    assert len(used) == 1
    assert used[0].body["policy_would_have"]["decision"] == "deny"  # type: ignore[index, call-overload]
    assert used[0].body["breakglass_id"] == bg["breakglass_id"]


def test_it_ends_by_itself_and_stays_open_for_review(
    analyst: Agent,
    client: httpx.Client,
    humans: dict[str, dict[str, str]],
    clock: ManualClock,
) -> None:
    task = open_task(analyst)
    bg = request(client, task, analyst.headers)  # the agent itself may ask
    path = f"/v1/breakglass/{bg['breakglass_id']}"
    client.post(path + "/approve", headers=humans["alice"])
    client.post(path + "/approve", headers=humans["bob"])
    assert analyst.authorize(task["grant"], **DELETE_CALL).json()["decision"] == "allow"
    clock.advance(15 * 60)
    after = analyst.authorize(task["grant"], **DELETE_CALL).json()
    assert after["decision"] == "deny"
    shown = client.get(path, headers=humans["alice"]).json()
    assert shown["state"] == "ended" and shown["needs_review"] is True
    empty = client.post(path + "/review", json={"note": ""}, headers=humans["alice"])
    assert empty.status_code == 400
    reviewed = client.post(
        path + "/review",
        json={"note": "record purged; root cause: poisoned import"},
        headers=humans["alice"],
    ).json()
    assert reviewed["needs_review"] is False and reviewed["reviewed_by"] == "approver:alice"
    again = client.post(path + "/review", json={"note": "x"}, headers=humans["bob"])
    assert again.status_code == 409


def test_it_is_never_inherited_by_a_delegate(
    analyst: Agent,
    client: httpx.Client,
    humans: dict[str, dict[str, str]],
    runtime: Runtime,
    clock: ManualClock,
) -> None:
    task = analyst.open_task([READ, UPDATE], ttl_seconds=3600).json()
    bg = request(client, task, humans["oncall"])
    path = f"/v1/breakglass/{bg['breakglass_id']}"
    client.post(path + "/approve", headers=humans["alice"])
    client.post(path + "/approve", headers=humans["bob"])
    helper = Agent(client, mint(runtime, "helper", clock))
    widened = client.post(
        f"/v1/tasks/{task['task_id']}/delegate",
        json={"grant": task["grant"], "agent": TD + "helper", "scopes": [DELETE_SCOPE]},
        headers=analyst.headers,
    )
    assert widened.status_code == 403
    assert widened.json()["error"]["code"] == "delegation_widens"
    # A delegate of the same task, granted what the parent holds, still cannot reach the
    # break-glass scope: break-glass is bound to the task's own agent.
    child = client.post(
        f"/v1/tasks/{task['task_id']}/delegate",
        json={"grant": task["grant"], "agent": TD + "helper", "scopes": [UPDATE]},
        headers=analyst.headers,
    )
    assert child.status_code == 201, child.text
    verdict = helper.authorize(child.json()["grant"], **DELETE_CALL).json()
    assert verdict["decision"] == "deny"
    assert [r["code"] for r in verdict["reasons"]] == ["tool_not_in_scope"]
    assert analyst.authorize(task["grant"], **DELETE_CALL).json()["decision"] == "allow"


def test_a_no_ends_it_and_expiry_of_the_request(
    analyst: Agent,
    client: httpx.Client,
    humans: dict[str, dict[str, str]],
    clock: ManualClock,
) -> None:
    task = open_task(analyst)
    bg = request(client, task, humans["oncall"])
    denied = client.post(
        f"/v1/breakglass/{bg['breakglass_id']}/deny",
        json={"reason": "not needed"},
        headers=humans["alice"],
    ).json()
    assert denied["state"] == "denied"
    late = request(client, task, humans["oncall"])
    clock.advance(15 * 60 + 1)
    expired = client.post(
        f"/v1/breakglass/{late['breakglass_id']}/approve", headers=humans["alice"]
    )
    assert expired.status_code == 409


def test_it_never_revives_a_closed_task(
    analyst: Agent, client: httpx.Client, humans: dict[str, dict[str, str]]
) -> None:
    task = open_task(analyst)
    bg = request(client, task, humans["oncall"])
    path = f"/v1/breakglass/{bg['breakglass_id']}"
    client.post(path + "/approve", headers=humans["alice"])
    client.post(path + "/approve", headers=humans["bob"])
    analyst.close(task["task_id"])
    verdict = analyst.authorize(task["grant"], **DELETE_CALL).json()
    assert verdict["decision"] == "deny" and codes(verdict) == ["grant_revoked"]


def test_bad_break_glass_requests(
    analyst: Agent, intruder: Agent, client: httpx.Client, humans: dict[str, dict[str, str]]
) -> None:
    task = open_task(analyst)
    path = f"/v1/tasks/{task['task_id']}/breakglass"
    no_reason = client.post(
        path, json={"scopes": [DELETE_SCOPE], "reason": ""}, headers=humans["oncall"]
    )
    assert no_reason.status_code == 400
    stranger = client.post(
        path, json={"scopes": [DELETE_SCOPE], "reason": "mine now"}, headers=intruder.headers
    )
    assert stranger.status_code == 404  # another agent's task
    nobody = client.post(path, json={"scopes": [DELETE_SCOPE], "reason": "x"})
    assert nobody.status_code == 401
    huge = client.post(
        path,
        json={"scopes": [DELETE_SCOPE], "reason": "x", "window_seconds": 99999},
        headers=humans["oncall"],
    )
    assert huge.status_code == 400
    assert client.get("/v1/breakglass/brk_" + "0" * 26, headers=humans["alice"]).status_code == 404
    assert client.get("/v1/breakglass", headers=analyst.headers).status_code == 403


def test_cli_requests_approves_and_reviews(analyst: Agent, base_url: str, runtime: Runtime) -> None:
    import json

    from typer.testing import CliRunner

    from tether.cli.main import app

    runner = CliRunner()
    tokens = {name: runtime.approvers.add(name) for name in ("oncall", "alice", "bob")}
    task = open_task(analyst)

    def run(who: str, *args: str) -> str:
        env = {"TETHER_URL": base_url, "TETHER_APPROVER_TOKEN": tokens[who], "COLUMNS": "200"}
        result = runner.invoke(app, ["breakglass", *args], env=env)
        assert result.exit_code == 0, result.output
        return result.output

    out = run(
        "oncall",
        "request",
        "--task",
        task["task_id"],
        "--scope",
        json.dumps(DELETE_SCOPE),
        "--reason",
        "purge now",
    )
    bg_id = out.split("BREAK-GLASS ")[1].split(":")[0]
    run("alice", "approve", bg_id)
    assert "active" in run("bob", "approve", bg_id)
    assert analyst.authorize(task["grant"], **DELETE_CALL).json()["decision"] == "allow"
    assert "OPEN" in run("alice", "list")
    assert "review pending" not in run("alice", "review", bg_id, "--note", "done, all clean")
