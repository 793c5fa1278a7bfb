"""What a gateway deciding remotely sends ``tether serve`` after each call: the call's effect
and the observation of its result in one ``POST /v1/effects``; each alone again when serve
refuses one of them for good; both kept and retried when no answer comes, the effect recorded
once. A real serve app on loopback (its requests recorded on the way in), the gateway's real
decision point and effect queue, a loopback proxy that loses answers, and a real gateway
process for the request count per call."""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
import structlog
from loopback import losing_proxy, read_body, serve_asgi
from mcp_harness import (
    CRM_KEY,
    CRM_QUERY,
    UPSTREAM,
    AgentKeys,
    connect,
    open_grant,
    run,
    text_of,
    write_config,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope

from metrics_support import door_process
from support import live_server, make_runtime, mint
from tether.api.app import create_app
from tether.core.audit import AuditKind
from tether.core.effect import EffectStatus
from tether.core.errors import ErrorCode, Unavailable
from tether.core.ids import DecisionId, TaskId
from tether.core.scope import ActionKind
from tether.core.secret import Secret
from tether.core.verdict import Decision
from tether.credentials.secrets import SecretStore
from tether.mcp.callers import Caller
from tether.mcp.effectqueue import EffectQueue
from tether.mcp.pdp import Effect, Observation
from tether.mcp.pdp_http import ServeClient
from tether.mcp.pdp_remote import RemoteDecisionPoint
from tether.runtime import Runtime
from tether.service.clock import ManualClock
from tether.service.enforce import CallRequest
from tether.store.observations import SqlObservationStore

#: A result with a value provenance keeps (an e-mail address).
RESULT = {"customer": "c-1", "email": "bob@example.com"}


@dataclasses.dataclass(frozen=True)
class Seen:
    method: str
    path: str
    observation: bool  # the body carried an observation
    status: int


class Recorded:
    """ASGI: the requests that reach the app, in order, with the status answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: list[Seen] = []

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        try:
            document = json.loads(body) if body else None
        except ValueError:
            document = None
        observation = isinstance(document, dict) and "observation" in document
        given = False

        async def replay() -> Message:
            nonlocal given
            if given:
                return await receive()
            given = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.seen.append(
                    Seen(scope["method"], scope["path"], observation, message["status"])
                )
            await send(message)

        await self.app(scope, replay, answer)

    def since(self, mark: int) -> list[Seen]:
        return self.seen[mark:]


@dataclasses.dataclass
class Serve:
    runtime: Runtime
    clock: ManualClock
    url: str
    recorded: Recorded
    gateway_svid: str
    analyst: AgentKeys


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    clock = ManualClock(datetime.now(UTC))
    runtime = make_runtime(tmp_path_factory.mktemp("serve") / "data", clock)
    try:
        gateway_svid = mint(runtime, "mcp-gateway", clock)
        gateway_id = runtime.verifier.verify(gateway_svid, clock.now()).id
        deps = dataclasses.replace(runtime.api_deps, gateways=frozenset({gateway_id}))
        recorded = Recorded(create_app(deps))
        with live_server(runtime, recorded) as url:
            analyst = open_grant(runtime, clock, "analyst", CRM_QUERY)
            yield Serve(runtime, clock, url, recorded, gateway_svid, analyst)
    finally:
        runtime.close()


def _point(serve: Serve, url: str | None = None, timeout: float = 10) -> RemoteDecisionPoint:
    return RemoteDecisionPoint(
        url or serve.url, serve.clock, lambda: serve.gateway_svid, timeout=timeout
    )


def _caller(serve: Serve, keys: AgentKeys) -> Caller:
    workload = serve.runtime.verifier.verify(keys.svid, serve.clock.now())
    return Caller(workload, keys.grant, keys.svid)


def _fresh(serve: Serve) -> AgentKeys:
    """A task of its own for one test (its effects and observations apart)."""
    return open_grant(serve.runtime, serve.clock, "analyst", CRM_QUERY)


def _one_task(serve: Serve) -> tuple[AgentKeys, Caller, RemoteDecisionPoint, EffectQueue]:
    """A fresh task's keys and caller, a decision point on serve, an effect queue."""
    keys = _fresh(serve)
    return keys, _caller(serve, keys), _point(serve), EffectQueue()


def _effects(serve: Serve, decision_id: str) -> list[dict[str, Any]]:
    return [
        r.body
        for r in serve.runtime.store.audit_records()
        if r.kind is AuditKind.EFFECT and r.body.get("decision_id") == decision_id
    ]


def _observed(serve: Serve, keys: AgentKeys) -> int:
    claims = serve.runtime.signer.verify(keys.grant, serve.clock.now())
    store = SqlObservationStore(serve.runtime.store)
    return store.count_observations([TaskId(claims.task_id)])


async def _allowed(pdp: RemoteDecisionPoint, caller: Caller) -> DecisionId:
    verdict = await pdp.enforce(caller, CallRequest("crm.query", ActionKind.READ, "crm", {}))
    assert verdict.decision is Decision.ALLOW, verdict.reasons
    return verdict.decision_id


def _queue_both(
    queue: EffectQueue, pdp: RemoteDecisionPoint, caller: Caller, d: DecisionId
) -> None:
    """Queue a call's effect and then the observation of its result, in one turn, as the
    gateway does after answering (``Gateway.report``)."""
    assert caller.grant_token is not None
    effect = Effect(d, EffectStatus.OK, 1, 42)
    seen = Observation("crm.query", "crm", RESULT, d)
    queue.submit(caller.grant_token, d, partial(pdp.report, caller, effect))
    queue.submit(caller.grant_token, d, partial(pdp.observe, caller, seen))


def test_a_calls_effect_and_observation_reach_serve_in_one_request(serve: Serve) -> None:
    keys, caller, pdp, queue = _one_task(serve)
    mark = len(serve.recorded.seen)

    async def scenario() -> DecisionId:
        async with queue.running():
            decision_id = await _allowed(pdp, caller)
            _queue_both(queue, pdp, caller, decision_id)
            assert await queue.settled(keys.grant) is None
        await pdp.aclose()
        return decision_id

    decision_id = anyio.run(scenario)
    assert serve.recorded.since(mark) == [
        Seen("POST", "/v1/authorize", False, 200),
        Seen("POST", "/v1/effects", True, 201),
    ]
    assert [e["bytes"] for e in _effects(serve, decision_id)] == [42]
    assert _observed(serve, keys) > 0


def test_an_effect_whose_answer_was_lost_is_recorded_once_and_its_observation_kept(
    serve: Serve,
) -> None:
    keys = _fresh(serve)
    caller = _caller(serve, keys)
    queue = EffectQueue()

    async def scenario(pdp: RemoteDecisionPoint, lose: threading.Event) -> DecisionId:
        async with queue.running():
            decision_id = await _allowed(pdp, caller)
            lose.set()  # serve records both; the gateway never hears of it
            _queue_both(queue, pdp, caller, decision_id)
            unsettled = await queue.settled(keys.grant)
            assert unsettled is not None and unsettled.code is ErrorCode.PDP_UNAVAILABLE
            assert queue.pending == 2  # both kept, not dropped
            lose.clear()
            assert await queue.settled(keys.grant) is None  # retried, each alone
            assert queue.pending == 0
        await pdp.aclose()
        return decision_id

    with losing_proxy(serve.url) as proxy, structlog.testing.capture_logs() as logs:
        decision_id = anyio.run(scenario, _point(serve, proxy.url), proxy.losing)
    assert proxy.lost == 2  # the request with both, then the first retry of the effect
    assert len(_effects(serve, decision_id)) == 1
    assert _observed(serve, keys) > 0
    # Serve's 409 effect_already_reported to the retry is read as that record, not an error.
    assert "effect_not_recorded" not in [line["event"] for line in logs], logs


def test_an_observation_refused_for_good_leaves_the_effect_recorded_on_its_own(
    serve: Serve,
) -> None:
    keys, caller, pdp, queue = _one_task(serve)
    mark = len(serve.recorded.seen)

    async def scenario() -> DecisionId:
        async with queue.running():
            decision_id = await _allowed(pdp, caller)
            # The task ends between the call and its report: nothing more is observed for it,
            # but what the call did is still recorded.
            claims = serve.runtime.signer.verify(keys.grant, serve.clock.now())
            serve.runtime.tasks.close_task(caller.workload, TaskId(claims.task_id))
            _queue_both(queue, pdp, caller, decision_id)
            assert await queue.settled(keys.grant) is None
            assert queue.pending == 0
        await pdp.aclose()
        return decision_id

    with structlog.testing.capture_logs() as logs:
        decision_id = anyio.run(scenario)
    seen = serve.recorded.since(mark)
    assert [(s.path, s.observation) for s in seen] == [
        ("/v1/authorize", False),
        ("/v1/effects", True),
        ("/v1/effects", False),
        ("/v1/observations", False),
    ]
    assert [s.status for s in seen][2] == 201 and seen[1].status == seen[3].status >= 400
    assert len(_effects(serve, decision_id)) == 1
    assert _observed(serve, keys) == 0
    refused = [line for line in logs if line["event"] == "effect_not_recorded"]
    assert len(refused) == 1 and refused[0]["decision_id"] == decision_id


def test_a_serve_that_never_answers_is_pdp_unavailable_within_the_timeout(serve: Serve) -> None:
    released = threading.Event()

    async def hang(request: Request) -> Response:
        await anyio.to_thread.run_sync(released.wait)
        return Response(status_code=500)

    caller = _caller(serve, serve.analyst)
    hanging = Starlette(
        routes=[Route(p, hang, methods=["POST"]) for p in ("/v1/authorize", "/v1/effects")]
    )

    async def scenario(pdp: RemoteDecisionPoint) -> list[ErrorCode]:
        codes = []
        calls = [
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

    with serve_asgi(hanging) as url:
        try:
            codes = anyio.run(scenario, _point(serve, url, timeout=0.2))
        finally:
            released.set()
    assert codes == [ErrorCode.PDP_UNAVAILABLE] * 2


def test_the_lean_client_takes_plain_http_only() -> None:
    assert ServeClient("http://127.0.0.1:8080", "serve", 5, environ={}).lean
    assert not ServeClient("https://tether.example", "serve", 5, environ={}).lean
    proxied = {"HTTP_PROXY": "http://proxy.internal:3128"}
    assert not ServeClient("http://127.0.0.1:8080", "serve", 5, environ=proxied).lean


def test_through_a_gateway_each_call_makes_two_requests_to_serve(
    serve: Serve, tmp_path: Path
) -> None:
    keys = _fresh(serve)
    gateway_data = tmp_path / "gateway"
    SecretStore(gateway_data, environ={}).set("crm-key", Secret(CRM_KEY))
    svid_file = tmp_path / "svid.jwt"
    svid_file.write_text(serve.gateway_svid)
    config = write_config(
        tmp_path / "gateway.yaml",
        {
            "upstreams": {
                "crm": {
                    "command": sys.executable,
                    "args": [UPSTREAM, "crm"],
                    "secret_env": {"CRM_API_KEY": "crm-key"},
                    "timeout_seconds": 30,
                }
            },
            "tools": {"crm.query": {"action": "read", "dataset": "crm"}},
        },
    )
    command = ["mcp-gateway", "--gateway-config", str(config), "-d", str(gateway_data)]
    command += ["--pdp-url", serve.url, "--gateway-svid-file", str(svid_file)]
    with ExitStack() as stack:
        base = stack.enter_context(door_process(command, tmp_path / "gateway.stderr"))
        mark = len(serve.recorded.seen)

        async def scenario() -> None:
            async with connect(f"{base}/mcp", keys) as client:
                for customer in ("c-1", "c-2"):
                    result = await client.call_tool("crm.query", {"customer": customer})
                    assert not result.is_error, text_of(result)

        run(scenario)
        deadline = time.monotonic() + 30
        while sum(s.path == "/v1/effects" for s in serve.recorded.since(mark)) < 2:
            assert time.monotonic() < deadline, serve.recorded.since(mark)
            time.sleep(0.05)  # the second call's effect, written after its answer
    # Besides these, the gateway's own records (first pins) and the cached identity and grant.
    each = ("/v1/authorize", "/v1/effects", "/v1/observations")
    per_call = [s for s in serve.recorded.since(mark) if s.path in each]
    assert [(s.path, s.observation, s.status) for s in per_call] == [
        ("/v1/authorize", False, 200),
        ("/v1/effects", True, 201),
        ("/v1/authorize", False, 200),
        ("/v1/effects", True, 201),
    ]
    assert _observed(serve, keys) > 0
