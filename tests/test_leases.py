"""Just-in-time scoped JWT credentials through a real server: minted on allow, verifiable with the
published JWKS, refused once the task ends, expired by the reaper, and never written down."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from support import Agent, copy_policies, live_server, mint
from tether.cli.main import app
from tether.cli.serve import build_app
from tether.core.call import Call
from tether.core.errors import ConfigurationError, ErrorCode, Unauthenticated
from tether.core.scope import ActionKind
from tether.credentials.downstream import CREDENTIALS_FILE, load_downstreams
from tether.credentials.jwt_lease import ScopedClaims, ScopedJwtIssuer, verify_scoped_jwt
from tether.identity.keys import SigningKey
from tether.runtime import Runtime, RuntimeConfig, open_runtime
from tether.service.clock import ManualClock
from tether.service.settings import ServiceSettings

TD = "spiffe://tether.local/agent/"
CRM_API = "https://crm.internal"
CREDENTIALS = f"""\
issuers:
  - name: crm-api
    kind: scoped_jwt
    tools: [crm.*]
    audience: {CRM_API}
    ttl_seconds: 120
"""
READ = {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}
UPDATE = {"tool": "crm.update", "actions": ["write"], "datasets": ["tickets"]}
DOCS = {"tool": "docs.search", "actions": ["read"], "datasets": ["docs"]}
QUERY = {"tool": "crm.query", "action": "read", "dataset": "crm", "args": {}}


@pytest.fixture
def runtime(tmp_path: Path, clock: ManualClock) -> Iterator[Runtime]:
    policies = copy_policies(tmp_path / "policies")
    (policies / CREDENTIALS_FILE).write_text(CREDENTIALS)
    rt = open_runtime(
        RuntimeConfig(
            data_dir=tmp_path / "data",
            policy_dir=policies,
            environ={},
            settings=ServiceSettings(),
        ),
        clock=clock,
    )
    yield rt
    rt.close()


def _verify(
    client: httpx.Client, token: str, clock: ManualClock, audience: str = CRM_API
) -> ScopedClaims:
    jwks = client.get("/.well-known/jwks.json")
    assert jwks.status_code == 200
    return verify_scoped_jwt(token, jwks.json(), audience, clock.now())


def _introspect(client: httpx.Client, agent: Agent, token: str) -> dict[str, object]:
    response = client.post(
        "/v1/leases/introspect",
        json={"token": token, "audience": CRM_API},
        headers=agent.headers,
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    return dict(response.json())


def _allowed(agent: Agent, scopes: list[dict[str, object]]) -> tuple[Any, Any]:
    task = agent.open_task(scopes).json()
    response = agent.authorize(task["grant"], **QUERY)
    verdict = response.json()
    assert verdict["decision"] == "allow", verdict
    assert response.headers["cache-control"] == "no-store"
    return task, verdict


def test_an_allow_carries_a_scoped_token_for_exactly_that_call(
    analyst: Agent, client: httpx.Client, clock: ManualClock, runtime: Runtime
) -> None:
    task, verdict = _allowed(analyst, [READ, UPDATE])
    credential = verdict["credential"]

    claims = _verify(client, credential["value"], clock)
    assert claims.subject == TD + "analyst"
    assert claims.operations == frozenset({"crm.query:read"})  # not crm.update, not write
    assert claims.jti == credential["lease_id"]
    assert claims.expires_at - claims.issued_at == timedelta(seconds=120)
    assert credential["kind"] == "scoped_jwt" and credential["audience"] == CRM_API
    assert {"kind": "credential", "value": credential["lease_id"]}.items() <= verdict[
        "obligations"
    ][-1].items()
    # Another API must not accept it.
    with pytest.raises(Unauthenticated):
        _verify(client, credential["value"], clock, audience="https://billing.internal")
    leases = client.get(f"/v1/tasks/{task['task_id']}/leases", headers=analyst.headers).json()
    assert [(x["lease_id"], x["state"], x["issuer"]) for x in leases] == [
        (credential["lease_id"], "active", "crm-api")
    ]


def test_the_token_is_never_written_to_the_audit_log(analyst: Agent, runtime: Runtime) -> None:
    _, verdict = _allowed(analyst, [READ])
    token = verdict["credential"]["value"]
    records = list(runtime.store.audit_records())
    issued = [r for r in records if r.kind.value == "lease_issued"]
    assert len(issued) == 1 and issued[0].body["lease_id"] == verdict["credential"]["lease_id"]
    dumped = json.dumps([r.body for r in records])
    assert token not in dumped and token.split(".")[2] not in dumped
    # The decision record names the lease through its obligation, not the secret.
    decision = next(r for r in records if r.kind.value == "decision")
    assert decision.body["verdict"]["obligations"][-1]["value"] == issued[0].body["lease_id"]


def test_closing_the_task_makes_introspection_refuse_the_token(
    analyst: Agent, client: httpx.Client, runtime: Runtime
) -> None:
    task, verdict = _allowed(analyst, [READ])
    token, lease_id = verdict["credential"]["value"], verdict["credential"]["lease_id"]
    live = _introspect(client, analyst, token)
    assert live["active"] is True and live["lease_id"] == lease_id
    assert live["scope"] == "crm.query:read"

    assert analyst.close(task["task_id"]).status_code == 200

    assert _introspect(client, analyst, token) == {
        "active": False,
        "lease_id": None,
        "sub": None,
        "scope": None,
        "exp": None,
    }
    closed = [r for r in runtime.store.audit_records() if r.kind.value == "task_closed"]
    assert closed[-1].body["leases_revoked"] == [lease_id]


def test_the_reaper_expires_a_lease_whose_time_ran_out(
    analyst: Agent, client: httpx.Client, clock: ManualClock, runtime: Runtime
) -> None:
    _, verdict = _allowed(analyst, [READ])
    token = verdict["credential"]["value"]
    clock.advance(119)
    assert runtime.leases.reap() == (0, 0)
    assert _introspect(client, analyst, token)["active"] is True

    clock.advance(1)
    assert _introspect(client, analyst, token)["active"] is False  # refused before the sweep
    assert runtime.leases.reap() == (1, 0)
    assert runtime.leases.reap() == (0, 0)
    expired = [r for r in runtime.store.audit_records() if r.kind.value == "lease_expired"]
    assert [r.body["lease_id"] for r in expired] == [verdict["credential"]["lease_id"]]


def test_the_kill_switch_ends_the_agents_leases(
    analyst: Agent, client: httpx.Client, runtime: Runtime
) -> None:
    _, verdict = _allowed(analyst, [READ])
    runtime.agents.revoke(TD + "analyst", "compromised", "operator:test")
    assert _introspect(client, analyst, verdict["credential"]["value"])["active"] is False
    lease = runtime.leases.get(verdict["credential"]["lease_id"])
    assert lease.state.value == "revoked"


def test_an_agent_may_end_its_own_lease_but_not_anothers(
    analyst: Agent, intruder: Agent, client: httpx.Client, runtime: Runtime
) -> None:
    _, verdict = _allowed(analyst, [READ])
    lease_id = verdict["credential"]["lease_id"]

    stolen = client.post(f"/v1/leases/{lease_id}/revoke", headers=intruder.headers)
    assert stolen.status_code == 404 and stolen.json()["error"]["code"] == "lease_not_found"
    assert runtime.leases.is_active(lease_id)

    ended = client.post(f"/v1/leases/{lease_id}/revoke", headers=analyst.headers)
    assert ended.status_code == 200 and ended.json()["state"] == "revoked"
    again = client.post(f"/v1/leases/{lease_id}/revoke", headers=analyst.headers)
    assert again.status_code == 200 and again.json()["state"] == "revoked"  # idempotent
    kinds = [r.kind.value for r in runtime.store.audit_records()]
    assert kinds.count("lease_revoked") == 1
    bad = client.post("/v1/leases/not-a-lease/revoke", headers=analyst.headers)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_field"


def test_denied_and_uncovered_calls_get_no_credential(analyst: Agent, runtime: Runtime) -> None:
    task = analyst.open_task([READ, DOCS]).json()
    outside = analyst.authorize(task["grant"], tool="crm.update", action="write", args={})
    assert outside.json()["decision"] == "deny" and outside.json()["credential"] is None
    docs = analyst.authorize(
        task["grant"], tool="docs.search", action="read", dataset="docs", args={}
    ).json()
    assert docs["decision"] == "allow" and docs.get("credential") is None
    assert all(o["kind"] != "credential" for o in docs["obligations"])
    assert runtime.leases.recent() == []


def test_a_delegated_agents_token_names_the_delegation_chain(
    analyst: Agent, client: httpx.Client, clock: ManualClock, runtime: Runtime
) -> None:
    task = analyst.open_task([UPDATE]).json()
    child = client.post(
        f"/v1/tasks/{task['task_id']}/delegate",
        json={"grant": task["grant"], "agent": TD + "helper", "scopes": [UPDATE]},
        headers=analyst.headers,
    )
    assert child.status_code == 201, child.json()
    helper = Agent(client, mint(runtime, "helper", clock))
    verdict = helper.authorize(
        child.json()["grant"], tool="crm.update", action="write", dataset="tickets", args={}
    ).json()

    claims = _verify(client, verdict["credential"]["value"], clock)
    assert claims.subject == TD + "helper"
    assert claims.actors == (TD + "analyst",)
    assert claims.operations == frozenset({"crm.update:write"})


def test_introspection_answers_inactive_for_anything_but_a_live_lease(
    analyst: Agent, client: httpx.Client, clock: ManualClock, tmp_path: Path
) -> None:
    _, verdict = _allowed(analyst, [READ])
    token = verdict["credential"]["value"]
    forger = ScopedJwtIssuer(SigningKey.generate(), "tether")
    forged = forger.issue(
        jti=verdict["credential"]["lease_id"],
        audience=CRM_API,
        operations=["crm.query:read"],
        subject=TD + "analyst",
        now=clock.now(),
        grant_expires_at=clock.now() + timedelta(minutes=5),
    ).token
    for candidate in (forged, "garbage", token + "x", token.upper()):
        assert _introspect(client, analyst, candidate)["active"] is False
    other_api = client.post(
        "/v1/leases/introspect",
        json={"token": token, "audience": "https://billing.internal"},
        headers=analyst.headers,
    ).json()
    assert other_api["active"] is False
    anonymous = client.post("/v1/leases/introspect", json={"token": token, "audience": CRM_API})
    assert anonymous.status_code == 401
    oversized = client.post(
        "/v1/leases/introspect",
        json={"token": "a" * 20000, "audience": CRM_API},
        headers=analyst.headers,
    )
    assert oversized.status_code == 400


def test_the_jwks_is_public_and_holds_only_public_keys(client: httpx.Client) -> None:
    keys = client.get("/.well-known/jwks.json").json()["keys"]
    assert len(keys) == 1
    assert keys[0]["kty"] == "EC" and keys[0]["alg"] == "ES256" and "d" not in keys[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("issuers: nope", "1:10: issuers: must be a list"),
        ("[1, 2]", "1:1: (top level): must be a mapping (keys: issuers)"),
        (
            "issuers:\n  - name: a\n    kind: vault\n    tools: [x]",
            "3:11: issuers[0].kind: must be one of 'scoped_jwt', 'postgres_role'",
        ),
        (
            "issuers:\n  - name: A!\n    kind: scoped_jwt\n    tools: [x]\n    audience: y",
            "2:11: issuers[0].name: must be lower-case letters, digits, '_' or '-'",
        ),
        (
            "issuers:\n  - {name: a, kind: scoped_jwt, tools: [x], audience: y, ttl_seconds: 301}",
            "2:71: issuers[0].ttl_seconds: must be at most 300",
        ),
        (
            "issuers:\n  - {name: a, kind: scoped_jwt, tools: [], audience: y}",
            "2:40: issuers[0].tools: must not be empty",
        ),
        (
            "issuers:\n  - {name: a, kind: scoped_jwt, tools: ['b c'], audience: y}",
            "2:41: issuers[0].tools[0]: 'b c' is not a tool name or a 'prefix.*' pattern",
        ),
        (
            "issuers:\n  - {name: a, kind: scoped_jwt, tools: [x], audience: y, z: 1}",
            "2:58: issuers[0].z: unknown key; allowed here: audience, kind, name, tools",
        ),
        (
            "issuers:\n  - {name: a, kind: scoped_jwt, tools: [x], audience: y}\n"
            "  - {name: a, kind: scoped_jwt, tools: [z], audience: y}",
            "3:12: issuers[1].name: 2 issuers are named 'a'; names are unique",
        ),
        (
            "issuers:\n  - {name: w, kind: postgres_role, tools: [x], admin_dsn_env: NOPE, "
            "datasets: {crm: [public.t]}}",
            "2:63: issuers[0].admin_dsn_env: issuer 'w' reads its admin DSN from $NOPE, which is "
            "not set",
        ),
        ("issuers: [", "1:11: not valid YAML"),
    ],
)
def test_a_bad_credentials_file_is_refused_with_a_clear_message(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / CREDENTIALS_FILE).write_text(text)
    signer = ScopedJwtIssuer(SigningKey.generate(), "tether")
    with pytest.raises(ConfigurationError) as caught:
        load_downstreams(tmp_path, signer=signer, environ={})
    assert f"{CREDENTIALS_FILE}:{message}" in caught.value.message
    # a missing environment variable is the deployment's problem, not the file's
    wanted = ErrorCode.CONFIGURATION if "$NOPE" in message else ErrorCode.POLICY_INVALID
    assert caught.value.code is wanted


def test_the_credential_never_shows_in_a_repr(
    analyst: Agent, runtime: Runtime, clock: ManualClock
) -> None:
    task = analyst.open_task([READ]).json()
    workload = runtime.verifier.verify(analyst.svid, clock.now())
    verdict = runtime.authorizer.authorize(
        workload, task["grant"], Call("crm.query", ActionKind.READ, "crm", {}), credentials=True
    )
    assert verdict.credential is not None
    assert verdict.credential.value not in repr(verdict)
    assert verdict.credential.value not in repr(verdict.credential)


def test_an_operator_lists_and_revokes_leases_from_the_cli(
    analyst: Agent, client: httpx.Client, runtime: Runtime
) -> None:
    _, verdict = _allowed(analyst, [READ])
    lease_id = verdict["credential"]["lease_id"]
    data = str(runtime.config.data_dir)
    policies = str(runtime.config.policy_dir)
    cli = CliRunner()

    listed = cli.invoke(app, ["leases", "list", "-d", data, "-p", policies, "--json"])
    assert listed.exit_code == 0, listed.output
    assert [x["lease_id"] for x in json.loads(listed.output)] == [lease_id]
    assert verdict["credential"]["value"] not in listed.output

    bad = cli.invoke(app, ["leases", "revoke", "lse_nope", "-r", "x", "-d", data, "-p", policies])
    assert bad.exit_code != 0 and "lease id" in bad.output
    ended = cli.invoke(
        app, ["leases", "revoke", lease_id, "-r", "rotated", "-d", data, "-p", policies]
    )
    assert ended.exit_code == 0 and "revoked" in ended.output
    assert _introspect(client, analyst, verdict["credential"]["value"])["active"] is False
    revoked = [r for r in runtime.store.audit_records() if r.kind.value == "lease_revoked"]
    assert revoked[0].body["reason"] == "rotated"
    assert str(revoked[0].body["revoked_by"]).startswith("operator:")


def test_live_leases_are_a_metric(runtime: Runtime, clock: ManualClock) -> None:
    with live_server(runtime, build_app(runtime)) as url, httpx.Client(base_url=url) as http:
        agent = Agent(http, mint(runtime, "analyst", clock))
        task, _ = _allowed(agent, [READ])
        _allowed(agent, [READ])
        assert "tether_leases_live 2.0" in http.get("/metrics").text
        assert agent.close(task["task_id"]).status_code == 200
        assert "tether_leases_live 1.0" in http.get("/metrics").text


def test_a_caller_that_cannot_hand_over_a_credential_gets_none_minted(
    analyst: Agent, runtime: Runtime, clock: ManualClock
) -> None:
    # The MCP gateway, the egress proxy and AuthZEN decide without asking for credentials:
    # nothing is minted that no agent would receive.
    task = analyst.open_task([READ]).json()
    workload = runtime.verifier.verify(analyst.svid, clock.now())
    verdict = runtime.authorizer.authorize(
        workload, task["grant"], Call("crm.query", ActionKind.READ, "crm", {})
    )
    assert verdict.allowed and verdict.credential is None
    assert all(o.kind.value != "credential" for o in verdict.obligations)
    assert runtime.leases.recent() == []


def test_a_tasks_leases_are_shown_to_its_agent_only(
    analyst: Agent, intruder: Agent, client: httpx.Client
) -> None:
    task, _ = _allowed(analyst, [READ])
    theirs = client.get(f"/v1/tasks/{task['task_id']}/leases", headers=intruder.headers)
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "task_not_found"
    bad = client.get("/v1/tasks/not-a-task/leases", headers=analyst.headers)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_field"
    anonymous = client.get(f"/v1/tasks/{task['task_id']}/leases")
    assert anonymous.status_code == 401
    extra = client.post(
        "/v1/leases/introspect",
        json={"token": "x", "audience": CRM_API, "admin": True},
        headers=analyst.headers,
    )
    assert extra.status_code == 400


def test_an_authorize_asking_for_no_credential_mints_none(analyst: Agent, runtime: Runtime) -> None:
    """What the MCP gateway sends when it decides through this server: the same allow, and no
    credential minted that no agent would receive."""
    task = analyst.open_task([READ]).json()
    response = analyst.authorize(task["grant"], **QUERY, credential=False)
    verdict = response.json()
    assert verdict["decision"] == "allow", verdict
    assert verdict["credential"] is None
    assert all(o["kind"] != "credential" for o in verdict["obligations"])
    assert runtime.leases.recent() == []
    # Asked for (the default), the next one is minted.
    assert analyst.authorize(task["grant"], **QUERY).json()["credential"] is not None
    assert len(runtime.leases.recent()) == 1


@pytest.mark.parametrize("value", ["false", 0, None, "no"])
def test_a_credential_flag_that_is_not_a_boolean_is_refused(
    analyst: Agent, runtime: Runtime, value: object
) -> None:
    task = analyst.open_task([READ]).json()
    response = analyst.authorize(task["grant"], **QUERY, credential=value)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == {
        "code": "invalid_field",
        "message": "field 'credential': Input should be a valid boolean",
    }
    assert runtime.leases.recent() == []
