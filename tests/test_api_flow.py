"""The decision path end to end over real HTTP on loopback: task → grant → authorize → effect."""

from __future__ import annotations

from support import Agent
from tether.runtime import Runtime
from tether.service.clock import ManualClock

CRM_READ = {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}
CRM_WRITE = {
    "tool": "crm.update",
    "actions": ["write"],
    "datasets": ["tickets"],
    "constraints": {"discount": {"max": 10}},
}
PAY = {"tool": "payments.transfer", "actions": ["spend"], "constraints": {"amount": {"max": 1000}}}


def open_grant(agent: Agent, *scopes: dict[str, object], **extra: object) -> dict[str, object]:
    response = agent.open_task(list(scopes) or [CRM_READ, CRM_WRITE, PAY], **extra)
    assert response.status_code == 201, response.text
    return response.json()


def decide(agent: Agent, grant: str, **call: object) -> dict[str, object]:
    response = agent.authorize(grant, **call)
    assert response.status_code == 200, response.text
    return response.json()


def codes(verdict: dict[str, object]) -> list[str]:
    return [r["code"] for r in verdict["reasons"]]  # type: ignore[index, union-attr]


def test_open_task_returns_a_bound_short_lived_grant(analyst: Agent, clock: ManualClock) -> None:
    task = open_grant(analyst, CRM_READ)
    assert task["task_id"].startswith("tsk_")  # type: ignore[union-attr]
    assert task["granted"] == [
        {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"], "constraints": {}}
    ]
    assert task["expires_at"] == "2026-11-28T12:10:00+00:00"  # default 10 minutes


def test_requested_ttl_is_capped(analyst: Agent) -> None:
    task = open_grant(analyst, CRM_READ, ttl_seconds=86400)
    assert task["expires_at"] == "2026-11-28T13:00:00+00:00"  # capped at one hour


def test_policy_grants_less_than_asked(analyst: Agent) -> None:
    shell = {"tool": "shell.exec", "actions": ["execute"]}
    task = open_grant(analyst, CRM_READ, shell)
    assert [s["tool"] for s in task["granted"]] == ["crm.query"]  # type: ignore[index, union-attr]
    refused = task["refused"]
    assert refused and refused[0]["tool"] == "shell.exec"  # type: ignore[index]


def test_nothing_grantable_is_403_with_reasons(analyst: Agent) -> None:
    response = analyst.open_task([{"tool": "shell.exec", "actions": ["execute"]}])
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "nothing_granted"
    assert "shell.exec" in error["message"] or "execute" in error["message"]


def test_unknown_dataset_is_not_granted(analyst: Agent) -> None:
    response = analyst.open_task([{"tool": "crm.query", "actions": ["read"], "datasets": ["nope"]}])
    assert response.status_code == 403
    assert "catalog" in response.json()["error"]["message"]


def test_read_in_scope_is_allowed_with_risks_and_revision(analyst: Agent) -> None:
    grant = open_grant(analyst)["grant"]
    verdict = decide(analyst, grant, tool="crm.query", action="read", dataset="crm", args={})
    assert verdict["decision"] == "allow"
    assert verdict["decision_id"].startswith("dec_")  # type: ignore[union-attr]
    assert codes(verdict) == ["policy_permits"]
    assert verdict["policy_ids"]
    assert "ASI02" in verdict["risks"] and "ASI03" in verdict["risks"]  # type: ignore[operator]
    assert verdict["policy_revision"]


def test_each_scope_dimension_denies_on_its_own(analyst: Agent) -> None:
    grant = open_grant(analyst)["grant"]
    cases = [
        ({"tool": "email.send", "action": "send", "args": {}}, "tool_not_in_scope"),
        ({"tool": "crm.query", "action": "write", "dataset": "crm"}, "action_not_in_scope"),
        ({"tool": "crm.query", "action": "read", "dataset": "payroll"}, "dataset_not_in_scope"),
        ({"tool": "crm.query", "action": "read"}, "dataset_not_in_scope"),
        (
            {"tool": "crm.update", "action": "write", "dataset": "tickets", "args": {}},
            "argument_missing",
        ),
        (
            {
                "tool": "crm.update",
                "action": "write",
                "dataset": "tickets",
                "args": {"discount": 50},
            },
            "constraint_violated",
        ),
        (
            {
                "tool": "crm.update",
                "action": "write",
                "dataset": "tickets",
                "args": {"discount": "5"},
            },
            "constraint_violated",
        ),
    ]
    for call, code in cases:
        verdict = decide(analyst, grant, **call)
        assert verdict["decision"] == "deny", call
        assert codes(verdict) == [code], call


def test_argument_constraint_violation_names_the_bound(analyst: Agent) -> None:
    grant = open_grant(analyst)["grant"]
    verdict = decide(
        analyst, grant, tool="crm.update", action="write", dataset="tickets", args={"discount": 11}
    )
    assert "discount" in verdict["reasons"][0]["message"]  # type: ignore[index]
    assert "10" in verdict["reasons"][0]["message"]  # type: ignore[index]
    assert "ASI01" in verdict["risks"]  # type: ignore[operator]


def test_three_answers_from_policy(analyst: Agent) -> None:
    grant = open_grant(analyst)["grant"]
    small = decide(analyst, grant, tool="payments.transfer", action="spend", args={"amount": 50})
    assert small["decision"] == "allow"
    large = decide(analyst, grant, tool="payments.transfer", action="spend", args={"amount": 500})
    assert large["decision"] == "approval_required"
    assert codes(large) == ["approval_required"]
    assert large["policy_ids"]


def test_grant_presented_by_another_agent_is_refused(analyst: Agent, intruder: Agent) -> None:
    grant = open_grant(analyst)["grant"]
    verdict = decide(intruder, grant, tool="crm.query", action="read", dataset="crm")
    assert verdict["decision"] == "deny"
    assert codes(verdict) == ["grant_not_bound"]


def test_garbage_grant_is_a_deny_not_an_error(analyst: Agent) -> None:
    verdict = decide(analyst, "not-a-grant", tool="crm.query", action="read", dataset="crm")
    assert verdict["decision"] == "deny"
    assert codes(verdict) == ["grant_invalid"]


def test_an_svid_is_not_a_grant(analyst: Agent) -> None:
    verdict = decide(analyst, analyst.svid, tool="crm.query", action="read", dataset="crm")
    assert codes(verdict) == ["grant_invalid"]


def test_closing_revokes_and_replay_is_denied(analyst: Agent) -> None:
    task = open_grant(analyst)
    closed = analyst.close(task["task_id"])  # type: ignore[arg-type]
    assert closed.status_code == 200
    assert closed.json()["state"] == "closed"
    verdict = decide(analyst, task["grant"], tool="crm.query", action="read", dataset="crm")  # type: ignore[arg-type]
    assert verdict["decision"] == "deny"
    assert codes(verdict) == ["grant_revoked"]
    again = analyst.close(task["task_id"])  # type: ignore[arg-type]
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "task_not_open"


def test_only_the_owner_can_close(analyst: Agent, intruder: Agent) -> None:
    task = open_grant(analyst)
    response = intruder.close(task["task_id"])  # type: ignore[arg-type]
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "task_not_found"


def test_expired_grant_is_denied_and_reaper_ends_the_task(
    analyst: Agent, runtime: Runtime, clock: ManualClock
) -> None:
    task = open_grant(analyst, CRM_READ, ttl_seconds=60)
    clock.advance(61)
    verdict = decide(analyst, task["grant"], tool="crm.query", action="read", dataset="crm")  # type: ignore[arg-type]
    assert verdict["decision"] == "deny"
    assert codes(verdict) == ["grant_expired"]
    assert runtime.tasks.reap_expired() == 1
    assert runtime.tasks.reap_expired() == 0
    stored = runtime.store.get_task(task["task_id"])  # type: ignore[arg-type]
    assert stored is not None and stored.state.value == "expired"
    kinds = [r.kind.value for r in runtime.store.audit_records()]
    assert kinds.count("task_expired") == 1


def test_effects_are_recorded_once_against_the_decision(analyst: Agent, intruder: Agent) -> None:
    grant = open_grant(analyst)["grant"]
    verdict = decide(analyst, grant, tool="crm.query", action="read", dataset="crm")
    decision_id = verdict["decision_id"]
    first = analyst.effect(decision_id, status="ok", records=12, bytes=3400, recipients=["a@x.io"])  # type: ignore[arg-type]
    assert first.status_code == 201, first.text
    assert first.json()["records"] == 12 and first.json()["recipient_count"] == 1
    second = analyst.effect(decision_id, status="ok")  # type: ignore[arg-type]
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "effect_already_reported"
    foreign = intruder.effect(decision_id, status="ok")  # type: ignore[arg-type]
    assert foreign.status_code == 404
    unknown = analyst.effect("dec_" + "0" * 26, status="ok")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "decision_not_found"


def test_effect_after_a_deny_is_kept_as_evidence(analyst: Agent, runtime: Runtime) -> None:
    grant = open_grant(analyst)["grant"]
    verdict = decide(analyst, grant, tool="email.send", action="send")
    assert verdict["decision"] == "deny"
    response = analyst.effect(verdict["decision_id"], status="ok")  # type: ignore[arg-type]
    assert response.status_code == 201
    effects = [r for r in runtime.store.audit_records() if r.kind.value == "effect"]
    assert effects[-1].body["ran_without_allow"] is True


def test_health_and_openapi(client: object) -> None:
    import httpx

    assert isinstance(client, httpx.Client)
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    spec = client.get("/openapi.json").json()
    for path in ("/v1/tasks", "/v1/authorize", "/v1/effects", "/v1/tasks/{task_id}/close"):
        assert path in spec["paths"], path


def test_readyz_is_503_when_the_store_is_gone(client: object, runtime: Runtime) -> None:
    import httpx

    assert isinstance(client, httpx.Client)
    runtime.store.close()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"


def test_a_lost_store_denies_instead_of_crashing(analyst: Agent, runtime: Runtime) -> None:
    grant = open_grant(analyst)["grant"]
    runtime.store.close()
    response = analyst.authorize(grant, tool="crm.query", action="read", dataset="crm")
    assert response.status_code == 200
    verdict = response.json()
    assert verdict["decision"] == "deny"
    assert codes(verdict) == ["audit_unavailable", "store_unavailable"]
