"""The lean path for ``tools/call`` (tether.mcp.lean): it is the path single calls take, and it
answers exactly what the SDK's path answers for the same calls.

Two gateways share one runtime and the same upstreams' code: one with the lean path, one with
every request through the SDK's transport (``http_app(lean=False)``). The same calls go to
both, interleaved, with the official SDK client at protocol revisions 2025-06-18, 2025-11-25
(sessions) and 2026-07-28 (single exchanges), and raw POSTs for what the client will not send.
The JSON-RPC message each gateway answered with is taken off the wire (an ``application/json``
body or the last event of an SSE stream) and compared byte for byte, decision ids aside (each
decision has its own).
"""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from shutil import copytree
from typing import Any

import anyio
import httpx
import mcp.client.session
import pytest
from loopback import serve_asgi
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_harness import (
    CRM_KEY,
    CRM_QUERY,
    MAIL,
    MAIL_TOKEN,
    AgentKeys,
    connect,
    gateway_config,
    live,
    records,
    run,
    settle,
    text_of,
    write_config,
)
from mcp_types import JSONRPCResponse
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope
from upstream_http import serve_mail

from support import INTENT, make_runtime, mint
from tether.core.audit import AuditKind
from tether.core.scope import Scope
from tether.core.secret import Secret
from tether.core.task import Intent
from tether.credentials.secrets import SecretStore
from tether.mcp import Gateway, http_app, load_config, open_gateway
from tether.mcp.callers import Caller
from tether.mcp.lean import LeanStats, _answered
from tether.runtime import Runtime, packaged_policies
from tether.service.clock import ManualClock

_DECISION_ID = re.compile(rb"(dec|apr)_[0-9a-z]{20,32}")
#: The mail server numbers what it sends, and both gateways send through it.
_MAIL_ID = re.compile(rb'"queued":true,"id":\d+')


@dataclass
class Wire:
    """ASGI middleware keeping each ``tools/call`` POST's answer as it went on the wire."""

    app: ASGIApp
    answers: list[tuple[str, bytes]] = field(default_factory=list)
    in_flight: int = 0

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        asked: list[bytes] = []
        kind: list[str] = []
        body: list[bytes] = []

        async def seen_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                asked.append(message.get("body", b""))
            return message

        async def seen_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = dict(message["headers"])
                kind.append(headers.get(b"content-type", b"").decode())
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))
            await send(message)

        self.in_flight += 1
        try:
            await self.app(scope, seen_receive, seen_send)
        finally:
            self.in_flight -= 1
        try:
            method = json.loads(b"".join(asked)).get("method")
        except ValueError:
            return
        if method == "tools/call":
            self.answers.append((kind[0] if kind else "", b"".join(body)))

    def messages(self, count: int) -> list[bytes]:
        """The ``count`` answers' JSON-RPC messages, decision, approval and mail ids masked. An SSE
        answer is kept when its stream ends, which may be just after the client read it."""
        deadline = time.monotonic() + 20
        while len(self.answers) < count and time.monotonic() < deadline:
            time.sleep(0.005)  # waiting on a condition: the server task closing the stream
        out = []
        for content_type, body in self.answers:
            if content_type.startswith("text/event-stream"):
                data = [line[5:].strip() for line in body.splitlines() if line.startswith(b"data:")]
                body = data[-1]
            body = _MAIL_ID.sub(b'"queued":true,"id":0', body)
            out.append(_DECISION_ID.sub(rb"\1_*", body))
        # in request order (a stream's end may be seen after the next request's)
        return sorted(out, key=lambda message: json.loads(message)["id"])


@dataclass
class Pair:
    runtime: Runtime
    clock: ManualClock
    lean_url: str
    sdk_url: str
    stats: LeanStats
    lean_wire: Wire
    sdk_wire: Wire
    lean: Gateway
    sdk: Gateway

    def grant(self, *scopes: dict[str, object]) -> AgentKeys:
        """A new task of the analyst (the one agent the example policies let read the CRM),
        every scope granted."""
        svid = mint(self.runtime, "analyst", self.clock)
        workload = self.runtime.verifier.verify(svid, self.clock.now())
        opened = self.runtime.tasks.open_task(
            workload, Intent(**INTENT), [Scope.from_json(s) for s in scopes], 600
        )
        assert not opened.refused, opened.refused
        return AgentKeys(svid, opened.token)

    def upstream_lean_calls(self, gateway: Gateway, keys: AgentKeys) -> int:
        """``tools/call`` requests ``gateway`` sent on the lean channel of the agent's sessions."""
        workload = self.runtime.verifier.verify(keys.svid, self.clock.now())
        caller = Caller(workload, keys.grant)
        return sum(
            gateway.session_for(name, caller).lean_calls for name in ("crm", "payments", "email")
        )

    def reset(self) -> None:
        """Forget the answers seen so far, once every stream still open has ended."""
        deadline = time.monotonic() + 20
        wires = (self.lean_wire, self.sdk_wire)
        while any(w.in_flight for w in wires) and time.monotonic() < deadline:
            time.sleep(0.005)  # waiting on a condition: the server closing its SSE streams
        for wire in wires:
            wire.answers.clear()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("lean")
    clock = ManualClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    data_dir = root / "data"
    runtime = make_runtime(data_dir, clock, None)
    SecretStore(data_dir, environ={}).set("mail-token", Secret(MAIL_TOKEN))
    SecretStore(data_dir, environ={}).set("crm-key", Secret(CRM_KEY))
    description = root / "description.txt"
    stats = LeanStats()
    try:
        with serve_mail(MAIL_TOKEN) as (mail_url, _log):
            config = gateway_config(mail_url, crm_env={"CRM_DESCRIPTION_FILE": str(description)})
            loaded = load_config(write_config(root / "gateway.yaml", config))
            pins = Path(root / "pins.json")
            lean = open_gateway(loaded, runtime, pins=pins)
            sdk = open_gateway(loaded, runtime, pins=pins, lean=False)
            lean_wire = Wire(http_app(lean, stats=stats))
            sdk_wire = Wire(http_app(sdk, lean=False))
            with (
                live(lean),
                live(sdk),
                serve_asgi(lean_wire) as lean_base,
                serve_asgi(sdk_wire) as sdk_base,
            ):
                yield Pair(
                    runtime,
                    clock,
                    f"{lean_base}/mcp",
                    f"{sdk_base}/mcp",
                    stats,
                    lean_wire,
                    sdk_wire,
                    lean,
                    sdk,
                )
    finally:
        runtime.close()


#: The calls compared: allowed (the HTTP upstream; the stdio one, a structured result), a send
#: that needs approval (the task has read confidential data since), not in the grant,
#: no such tool, an upstream that answers with an error, arguments the upstream cannot read.
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("email.send", {"to": "alice@example.com", "body": "hello"}),
    ("crm.query", {"customer": "c-8"}),
    ("email.send", {"to": "bob@example.com", "body": "hi"}),
    ("crm.update", {"ticket": "T-1"}),
    ("crm.nothing", {}),
    ("payments.nothing", {"a": 1}),
    ("crm.query", {"customer": "c-9", "rows": "not a number"}),
]


async def _calls(pair: Pair, keys: AgentKeys, mode: str) -> list[tuple[str | None, list[Any]]]:
    """Each call made through both gateways in turn, on the same task (so both decide it
    with the same facts)."""
    async with (
        connect(pair.lean_url, keys, mode=mode) as lean,
        connect(pair.sdk_url, keys, mode=mode) as sdk,
    ):
        results: list[list[Any]] = [[], []]
        for name, args in CALLS:
            for n, client in enumerate((lean, sdk)):
                results[n].append(await client.call_tool(name, args))
        return [(lean.protocol_version, results[0]), (sdk.protocol_version, results[1])]


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25", "2026-07-28"])
def test_the_lean_path_answers_what_the_sdk_path_answers(
    pair: Pair, version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = pair.grant(CRM_QUERY, MAIL)
    modern = version in MODERN_PROTOCOL_VERSIONS
    if not modern:
        # The SDK client offers its latest handshake revision; this one offers an earlier one.
        monkeypatch.setattr(mcp.client.session, "LATEST_HANDSHAKE_VERSION", version)
    mode = "auto" if modern else "legacy"
    pair.reset()
    before = (pair.stats.modern, pair.stats.session)
    upstream_before = pair.upstream_lean_calls(pair.lean, keys)

    (lean_version, lean_results), (sdk_version, _) = run(lambda: _calls(pair, keys, mode))
    assert lean_version == sdk_version == version
    # the calls did what they say (a refused setup would fail here, not pass)
    assert not lean_results[0].is_error, text_of(lean_results[0])
    assert text_of(lean_results[1]) == "3 records for c-8"
    assert text_of(lean_results[2]).startswith("approval_required"), text_of(lean_results[2])
    assert "tool_not_in_scope" in text_of(lean_results[3])
    assert "upstream_failed" in text_of(lean_results[6])
    # every call the grant allowed went upstream on the lean channel of the lean gateway
    # (email.send, crm.query twice, one failing upstream; the analyst's sessions, used before)
    assert pair.upstream_lean_calls(pair.lean, keys) - upstream_before == 3
    assert pair.upstream_lean_calls(pair.sdk, keys) == 0
    # every call took the lean path on the lean gateway
    lean_count = (pair.stats.modern - before[0], pair.stats.session - before[1])
    assert lean_count == ((len(CALLS), 0) if modern else (0, len(CALLS)))
    assert pair.lean_wire.messages(len(CALLS)) == pair.sdk_wire.messages(len(CALLS))
    # the SDK path answers a session's call as an SSE event, the lean path as JSON
    assert [kind for kind, _ in pair.lean_wire.answers] == ["application/json"] * len(CALLS)
    if not modern:
        assert all(k.startswith("text/event-stream") for k, _ in pair.sdk_wire.answers)


def _post(http: httpx.Client, url: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    accept = {"Accept": "application/json, text/event-stream"}
    content = json.dumps(body).encode() if not isinstance(body, bytes) else body
    return http.post(
        url, content=content, headers={"Content-Type": "application/json", **accept, **headers}
    )


def _session(http: httpx.Client, url: str, auth: dict[str, str], version: str) -> dict[str, str]:
    opened = _post(
        http,
        url,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": version,
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "1"},
            },
        },
        auth,
    )
    assert opened.status_code == 200, opened.text
    session = {"mcp-session-id": opened.headers["mcp-session-id"], **auth}
    done = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert _post(http, url, done, session).status_code == 202
    return session


MALFORMED: list[Any] = [
    {"name": "crm.query", "arguments": "not an object"},
    {"arguments": {"customer": "c-1"}},
    {"name": 7},
    None,
]


def _envelope(version: str) -> dict[str, Any]:
    return {
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": {},
    }


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25", "2026-07-28"])
def test_malformed_params_get_the_same_json_rpc_error_on_both_paths(
    pair: Pair, version: str
) -> None:
    keys = pair.grant(CRM_QUERY)
    auth = {"Authorization": f"Bearer {keys.svid}", "X-Tether-Grant": keys.grant}
    modern = version in MODERN_PROTOCOL_VERSIONS
    pair.reset()
    lean_before = pair.stats.lean
    decisions = len(records(pair.runtime, AuditKind.DECISION))
    with httpx.Client(timeout=20) as http:
        for url in (pair.lean_url, pair.sdk_url):
            if modern:
                headers = {**auth, "MCP-Protocol-Version": version}
            else:
                headers = _session(http, url, auth, version)
            for n, params in enumerate(MALFORMED):
                body: dict[str, Any] = {"jsonrpc": "2.0", "id": n + 10, "method": "tools/call"}
                if params is not None:
                    body["params"] = dict(params)
                if modern:
                    body.setdefault("params", {})["_meta"] = _envelope(version)
                    headers["Mcp-Method"] = "tools/call"
                    name = body["params"].get("name")
                    if isinstance(name, str):
                        headers["Mcp-Name"] = name
                    else:
                        headers.pop("Mcp-Name", None)
                answer = _post(http, url, body, headers)
                assert answer.status_code in (200, 400), answer.text
    lean, sdk = pair.lean_wire.messages(len(MALFORMED)), pair.sdk_wire.messages(len(MALFORMED))
    assert len(lean) == len(MALFORMED), (lean, sdk)
    assert lean == sdk
    # invalid params; a 2026 request whose name is not a string does not match its Mcp-Name
    assert {json.loads(m)["error"]["code"] for m in lean} <= {-32602, -32020}, lean
    # all on the lean path, but the envelope the SDK's ladder refuses (the SDK answers it)
    assert pair.stats.lean - lean_before == len(MALFORMED) - (1 if modern else 0)
    # refused before any decision, on both paths
    assert len(records(pair.runtime, AuditKind.DECISION)) == decisions


def test_a_call_asking_for_progress_goes_the_sdk_way_and_gets_its_progress(pair: Pair) -> None:
    keys = pair.grant(CRM_QUERY)
    seen: list[float] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append(done)

    async def scenario() -> Any:
        async with connect(pair.lean_url, keys, mode="legacy") as client:
            return await client.call_tool(
                "crm.query", {"customer": "c-5", "rows": 3}, progress_callback=progress
            )

    lean, passed = pair.stats.lean, pair.stats.passed_on
    result = run(scenario)
    assert not result.is_error, text_of(result)
    assert seen == [1, 2, 3]
    assert pair.stats.lean == lean  # not the lean path
    assert pair.stats.passed_on > passed


def test_a_lean_call_is_decided_and_its_effect_recorded(pair: Pair) -> None:
    keys = pair.grant(CRM_QUERY)
    decided = {r.body["decision_id"] for r in records(pair.runtime, AuditKind.DECISION)}

    async def scenario() -> Any:
        async with connect(pair.lean_url, keys, mode="legacy") as client:
            return await client.call_tool("crm.query", {"customer": "c-3", "rows": 2})

    lean = pair.stats.lean
    result = run(scenario)
    assert not result.is_error, text_of(result)
    assert pair.stats.lean == lean + 1
    settle()
    mine = [
        r
        for r in records(pair.runtime)
        if r.kind in (AuditKind.DECISION, AuditKind.EFFECT) and r.body["decision_id"] not in decided
    ]
    assert [r.kind for r in mine] == [AuditKind.DECISION, AuditKind.EFFECT]
    assert mine[1].body["decision_id"] == mine[0].body["decision_id"]
    assert mine[1].body["status"] == "ok" and mine[1].body["records"] == 2


def test_an_ended_session_is_not_served_on_the_lean_path(pair: Pair) -> None:
    keys = pair.grant(CRM_QUERY)
    auth = {"Authorization": f"Bearer {keys.svid}", "X-Tether-Grant": keys.grant}
    call = {
        "jsonrpc": "2.0",
        "id": 5,
        "method": "tools/call",
        "params": {"name": "crm.query", "arguments": {"customer": "c-1"}},
    }
    with httpx.Client(timeout=20) as http:
        session = _session(http, pair.lean_url, auth, "2025-11-25")
        lean = pair.stats.session
        assert _post(http, pair.lean_url, call, session).status_code == 200
        assert pair.stats.session == lean + 1
        ended = http.delete(pair.lean_url, headers=session)
        assert ended.status_code == 200, ended.text
        answer = _post(http, pair.lean_url, call, session)
    assert answer.status_code == 404  # the SDK's answer for an ended session
    assert pair.stats.session == lean + 1


def _chatty_upstream() -> ASGIApp:
    """An HTTP upstream answering each call as an SSE stream that carries a log message of the
    session before the result (the official SDK server, SSE responses)."""
    import mcp_types as types
    from mcp.server import Server, ServerRequestContext

    async def on_list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        schema = {"type": "object", "properties": {"text": {"type": "string"}}}
        return types.ListToolsResult(
            tools=[types.Tool(name="say", description="Say it.", input_schema=schema)]
        )

    async def on_call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        text = str((params.arguments or {}).get("text", ""))
        with warnings.catch_warnings():
            # Deprecated from 2026-07-28 on; how a 2025 session's server logs.
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await ctx.session.send_log_message(
                level="info", data=f"saying {text}", related_request_id=ctx.request_id
            )
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

    server = Server("chatty", on_list_tools=on_list_tools, on_call_tool=on_call_tool)
    return server.streamable_http_app(json_response=False)


def test_an_sse_answer_upstream_reaches_the_agent_with_its_log_message(tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    policies = tmp_path / "policies"
    copytree(packaged_policies(), policies)
    (policies / "chatty.cedar").write_text(
        '@id("chatty")\npermit (principal, action == Action::"read", '
        'resource == Tool::"chatty.say");\n'
    )
    runtime = make_runtime(tmp_path / "data", clock, policies)
    heard: list[str] = []

    async def hear(params: Any) -> None:
        heard.append(str(params.data))

    try:
        with serve_asgi(_chatty_upstream()) as upstream:
            config = {
                "upstreams": {"chatty": {"url": f"{upstream}/mcp", "pin_check": "on_change"}},
                "tools": {"chatty.say": {"action": "read"}},
            }
            loaded = load_config(write_config(tmp_path / "gateway.yaml", config))
            gateway = open_gateway(loaded, runtime)
            stats = LeanStats()
            with live(gateway), serve_asgi(http_app(gateway, stats=stats)) as base:
                svid = mint(runtime, "talker", clock)
                workload = runtime.verifier.verify(svid, clock.now())
                scope = Scope.from_json({"tool": "chatty.say", "actions": ["read"]})
                opened = runtime.tasks.open_task(workload, Intent(**INTENT), [scope], 600)
                assert not opened.refused, opened.refused
                keys = AgentKeys(svid, opened.token)

                async def scenario() -> Any:
                    async with connect(
                        f"{base}/mcp", keys, mode="legacy", logging_callback=hear
                    ) as client:
                        said = await client.call_tool("chatty.say", {"text": "hello"})
                        with anyio.fail_after(10):
                            while not heard:
                                await anyio.sleep(0.01)
                        return said

                said = run(scenario)
                session = gateway.session_for("chatty", Caller(workload, keys.grant))
                assert session.lean_calls == 1
                assert stats.session == 1
    finally:
        runtime.close()
    assert not said.is_error and text_of(said) == "hello"
    assert heard == ["saying hello"]


@pytest.mark.parametrize(
    "result",
    [
        {"content": [{"type": "text", "text": "héllo \u2028 \U0001f600"}], "isError": False},
        {"content": [], "structuredContent": {"n": 2**70, "x": None, "f": 1.5}},
    ],
    ids=["text", "past 64 bits"],
)
@pytest.mark.parametrize("request_id", [7, "r-1"])
def test_a_lean_answer_is_the_message_the_sdks_model_writes(
    result: dict[str, Any], request_id: int | str
) -> None:
    """The lean path writes its answer without the SDK's model: the same JSON-RPC message,
    and what orjson refuses (an integer past 64 bits) still answered, through the model."""
    written = _answered(request_id, result)
    model = JSONRPCResponse(jsonrpc="2.0", id=request_id, result=result)
    assert json.loads(written) == json.loads(model.model_dump_json(by_alias=True))
    assert json.loads(written) == {"jsonrpc": "2.0", "id": request_id, "result": result}
    assert list(json.loads(written)) == ["jsonrpc", "id", "result"]
