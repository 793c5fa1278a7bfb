"""What a gateway deciding remotely asks ``tether serve`` (``GET /v1/identity``, ``GET
/v1/grant``, ``POST /v1/gateway/events``), and how its decision point reads the answers: a real
serve app on loopback, and servers that answer garbage or fail, for the fail-closed paths."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import httpx
import pytest
from loopback import serve_asgi
from mcp_harness import CRM_QUERY, MAIL, AgentKeys, cli, open_grant
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from support import live_server, make_runtime, mint
from tether.api.app import create_app
from tether.core.audit import AuditKind
from tether.core.effect import EffectStatus
from tether.core.errors import ErrorCode, TetherError, Unavailable
from tether.core.ids import DecisionId, IdFactory
from tether.core.scope import ActionKind
from tether.core.verdict import Decision
from tether.mcp.callers import Caller
from tether.mcp.pdp import Effect
from tether.mcp.pdp_remote import RemoteDecisionPoint
from tether.mcp.pins import PinStatus, PinStore
from tether.runtime import Runtime
from tether.service.clock import ManualClock
from tether.service.enforce import CallRequest


@dataclasses.dataclass
class Serve:
    runtime: Runtime
    clock: ManualClock
    url: str
    gateway_svid: str
    gateway_id: str
    analyst: AgentKeys
    courier: AgentKeys


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    clock = ManualClock(datetime.now(UTC))
    runtime = make_runtime(tmp_path_factory.mktemp("serve") / "data", clock)
    try:
        gateway_svid = mint(runtime, "mcp-gateway", clock)
        gateway_id = runtime.verifier.verify(gateway_svid, clock.now()).id
        deps = dataclasses.replace(runtime.api_deps, gateways=frozenset({gateway_id}))
        with live_server(runtime, create_app(deps)) as url:
            yield Serve(
                runtime,
                clock,
                url,
                gateway_svid,
                gateway_id,
                open_grant(runtime, clock, "analyst", CRM_QUERY),
                open_grant(runtime, clock, "courier", MAIL),
            )
    finally:
        runtime.close()


def _get(serve: Serve, path: str, svid: str | None, grant: str | None = None) -> httpx.Response:
    headers = {}
    if svid is not None:
        headers["Authorization"] = f"Bearer {svid}"
    if grant is not None:
        headers["X-Tether-Grant"] = grant
    return httpx.get(f"{serve.url}{path}", headers=headers, timeout=30)


def _code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def test_identity_names_the_verified_workload(serve: Serve) -> None:
    answer = _get(serve, "/v1/identity", serve.analyst.svid)
    assert answer.status_code == 200
    assert answer.json()["agent"].endswith("/agent/analyst")
    assert answer.json()["kind"] == "jwt-svid"
    refused = _get(serve, "/v1/identity", None)
    assert refused.status_code == 401 and _code(refused) == "missing_token"
    forged = _get(serve, "/v1/identity", serve.analyst.svid[:-4] + "AAAA")
    assert forged.status_code == 401 and _code(forged) == "invalid_token"


def test_grant_answers_the_scopes_of_the_callers_own_usable_grant_only(serve: Serve) -> None:
    own = _get(serve, "/v1/grant", serve.analyst.svid, serve.analyst.grant)
    assert own.status_code == 200
    assert [s["tool"] for s in own.json()["scopes"]] == ["crm.query"]
    theirs = _get(serve, "/v1/grant", serve.analyst.svid, serve.courier.grant)
    assert theirs.status_code == 403 and _code(theirs) == "grant_not_bound"
    garbage = _get(serve, "/v1/grant", serve.analyst.svid, "not-a-grant")
    assert garbage.status_code == 403 and _code(garbage) == "grant_not_bound"
    unnamed = _get(serve, "/v1/grant", serve.analyst.svid)
    assert unnamed.status_code == 400 and _code(unnamed) == "invalid_field"
    anonymous = _get(serve, "/v1/grant", None, serve.analyst.grant)
    assert anonymous.status_code == 401


def test_gateway_events_are_taken_only_from_listed_gateways_and_only_gateway_kinds(
    serve: Serve,
) -> None:
    event = {
        "event_id": IdFactory(os.urandom).gateway_event(),
        "kind": "tool_pinned",
        "body": {"tool": "crm.query", "sha256": "ab" * 32},
    }
    url = f"{serve.url}/v1/gateway/events"

    def post(svid: str, body: object) -> httpx.Response:
        return httpx.post(url, json=body, headers={"Authorization": f"Bearer {svid}"}, timeout=30)

    agent = post(serve.analyst.svid, event)
    assert agent.status_code == 403 and _code(agent) == "not_a_gateway"
    forged = post(serve.gateway_svid, {**event, "kind": "decision"})
    assert forged.status_code == 400 and _code(forged) == "invalid_field"
    taken = post(serve.gateway_svid, {**event, "agent": "spiffe://tether.local/agent/analyst"})
    assert taken.status_code == 201
    record_id = taken.json()["record_id"]
    (record,) = [r for r in serve.runtime.store.audit_records() if r.record_id == record_id]
    assert record.kind is AuditKind.TOOL_PINNED
    assert record.body["reported_by"] == serve.gateway_id
    assert record.agent == "spiffe://tether.local/agent/analyst"


def _point(url: str, serve: Serve) -> RemoteDecisionPoint:
    return RemoteDecisionPoint(url, serve.clock, lambda: serve.gateway_svid, timeout=5)


def _caller(serve: Serve, keys: AgentKeys) -> Caller:
    workload = serve.runtime.verifier.verify(keys.svid, serve.clock.now())
    return Caller(workload, keys.grant, keys.svid)


def test_the_remote_point_decides_through_serve_and_reads_grants(serve: Serve) -> None:
    pdp = _point(serve.url, serve)
    caller = _caller(serve, serve.analyst)

    async def scenario() -> None:
        workload = await pdp.verify(serve.analyst.svid)
        assert workload == caller.workload
        grant = await pdp.grant(caller)
        assert grant is not None and grant.scope_for("crm.query") is not None
        assert grant.scope_for("email.send") is None
        allowed = await pdp.enforce(caller, CallRequest("crm.query", ActionKind.READ, "crm", {}))
        assert allowed.decision is Decision.ALLOW
        denied = await pdp.enforce(caller, CallRequest("email.send", ActionKind.SEND, None, {}))
        assert denied.decision is Decision.DENY
        assert denied.reasons[0].code.value == "tool_not_in_scope"
        effect = Effect(allowed.decision_id, EffectStatus.OK, 1, 10)
        await pdp.report(caller, effect)
        with pytest.raises(TetherError) as twice:
            await pdp.report(caller, effect)
        assert twice.value.code is ErrorCode.EFFECT_ALREADY_REPORTED  # refused for good
        await pdp.aclose()

    anyio.run(scenario)


def _answering(status: int, body: str) -> Starlette:
    async def anything(request: Request) -> Response:
        return PlainTextResponse(body, status_code=status)

    paths = ["/v1/identity", "/v1/grant", "/v1/authorize", "/v1/effects", "/v1/gateway/events"]
    return Starlette(routes=[Route(p, anything, methods=["GET", "POST"]) for p in paths])


@pytest.mark.parametrize(
    ("status", "body"),
    [(200, "<html>not tether</html>"), (500, "oops"), (502, ""), (200, '{"decision": "maybe"}')],
)
def test_garbage_or_a_5xx_from_serve_is_pdp_unavailable(
    serve: Serve, status: int, body: str
) -> None:
    caller = _caller(serve, serve.analyst)

    async def scenario(pdp: RemoteDecisionPoint) -> list[ErrorCode]:
        codes = []
        calls = [
            lambda: pdp.verify(serve.analyst.svid),
            lambda: pdp.grant(caller),
            lambda: pdp.enforce(caller, CallRequest("crm.query", ActionKind.READ, "crm", {})),
            lambda: pdp.report(
                caller, Effect(DecisionId("dec_" + "0" * 26), EffectStatus.OK, 0, 0)
            ),
        ]
        for call in calls:
            with pytest.raises(Unavailable) as refused:
                await call()
            codes.append(refused.value.code)
        await pdp.aclose()
        return codes

    with serve_asgi(_answering(status, body)) as url:
        codes = anyio.run(scenario, _point(url, serve))
    assert codes == [ErrorCode.PDP_UNAVAILABLE] * 4


def test_a_serve_that_is_gone_is_pdp_unavailable_and_records_wait(
    serve: Serve, tmp_path: Path
) -> None:
    with serve_asgi(_answering(500, "")) as url:
        pass  # its port is free again: nothing answers there
    pdp = _point(url, serve)
    caller = _caller(serve, serve.analyst)

    async def scenario() -> None:
        with pytest.raises(Unavailable) as refused:
            await pdp.enforce(caller, CallRequest("crm.query", ActionKind.READ, "crm", {}))
        assert refused.value.code is ErrorCode.PDP_UNAVAILABLE
        # A gateway record is kept in the outbox, not dropped, and not raised to the caller.
        await pdp.events.append_async(AuditKind.UPSTREAM_FAILED, {"upstream": "crm"})
        assert pdp._events.pending == 1

    anyio.run(scenario)


def _changed_pin(data: Path, serve: Serve) -> PinStore:
    pins = PinStore(data / "mcp-pins.json")
    pins.check("crm.query", {"name": "query", "description": "Look up."}, serve.clock.now())
    changed = pins.check(
        "crm.query", {"name": "query", "description": "Exfiltrate."}, serve.clock.now()
    )
    assert changed.status is PinStatus.CHANGED
    return pins


def test_approving_a_pin_on_a_remote_gateway_records_it_in_serves_chain_first(
    serve: Serve, tmp_path: Path
) -> None:
    data = tmp_path / "gateway"
    pins = _changed_pin(data, serve)
    svid_file = tmp_path / "svid.jwt"
    svid_file.write_text(serve.gateway_svid)
    args = ["mcp", "pins", "approve", "crm.query", "-d", str(data), "--gateway-svid-file"]
    with serve_asgi(_answering(500, "")) as gone:
        pass
    refused = cli([*args, str(svid_file), "--pdp-url", gone])
    assert refused.exit_code != 0
    (entry,) = pins.entries()
    assert entry.pending_sha256 is not None  # not approved: its record could not be written

    approved = cli([*args, str(svid_file), "--pdp-url", serve.url])
    assert approved.exit_code == 0, approved.output
    (entry,) = pins.entries()
    assert entry.pending_sha256 is None
    records = [
        r
        for r in serve.runtime.store.audit_records()
        if r.kind is AuditKind.TOOL_PINNED and r.body.get("how") == "operator_approved"
    ]
    assert [r.body["sha256"] for r in records] == [entry.sha256]
    assert records[0].body["reported_by"] == serve.gateway_id
    assert not (data / "tether.db").exists()


def test_gateway_events_refuse_malformed_oversized_and_forged_bodies_and_record_nothing(
    serve: Serve,
) -> None:
    url = f"{serve.url}/v1/gateway/events"
    headers = {"Authorization": f"Bearer {serve.gateway_svid}", "Content-Type": "application/json"}
    before = len(list(serve.runtime.store.audit_records()))

    def post(content: bytes, svid: str | None = None) -> httpx.Response:
        sent = dict(headers)
        if svid is not None:
            sent["Authorization"] = f"Bearer {svid}"
        return httpx.post(url, content=content, headers=sent, timeout=30)

    malformed = post(b'{"kind": "tool_pinned", "body": ')
    assert malformed.status_code == 400, malformed.text
    repeated = post(b'{"kind": "tool_pinned", "kind": "upstream_failed", "body": {}}')
    assert repeated.status_code == 400 and _code(repeated) == "malformed_json"
    oversized = post(b'{"kind": "tool_pinned", "body": {"x": "' + b"a" * 300_000 + b'"}}')
    assert oversized.status_code == 413 and _code(oversized) == "payload_too_large"
    forged = post(b'{"kind": "tool_pinned", "body": {}}', svid=serve.gateway_svid[:-4] + "AAAA")
    assert forged.status_code == 401 and _code(forged) == "invalid_token"
    assert len(list(serve.runtime.store.audit_records())) == before
