"""Upstream faults the gateway survives: no answer in time, and an answer that is not valid MCP.
Each is a tool error to the agent, an ``upstream_failed`` audit record, and an error effect."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from loopback import read_body, serve_asgi
from mcp_harness import CRM_UPDATE, UPSTREAM, open_grant, records, run, text_of
from starlette.types import Receive, Scope, Send

from support import make_runtime
from tether.core.audit import AuditKind, verify_chain
from tether.mcp import Caller, open_gateway, parse_config
from tether.runtime import Runtime
from tether.service.clock import ManualClock

UPDATE = {"crm.update": {"action": "write", "dataset": "tickets"}}


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = make_runtime(tmp_path / "data", ManualClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC)))
    yield rt
    rt.close()


def helper(runtime: Runtime) -> Caller:
    clock = runtime.clock
    assert isinstance(clock, ManualClock)
    keys = open_grant(runtime, clock, "helper", CRM_UPDATE)
    return Caller(runtime.verifier.verify(keys.svid, clock.now()), keys.grant)


def call_twice(runtime: Runtime, config: dict[str, Any], args: dict[str, Any]) -> list[Any]:
    gateway = open_gateway(parse_config(config), runtime)
    caller = helper(runtime)

    async def scenario() -> list[Any]:
        async with gateway.running():
            first = await gateway.call_tool(caller, "crm.update", args)
            second = await gateway.call_tool(caller, "crm.update", {"ticket": "T-2", "discount": 1})
            return [first, second]

    return run(scenario)


def test_an_upstream_that_does_not_answer_in_time(runtime: Runtime) -> None:
    config = {
        "upstreams": {
            "crm": {"command": sys.executable, "args": [UPSTREAM, "crm"], "timeout_seconds": 3}
        },
        "tools": UPDATE,
    }
    hung, after = call_twice(runtime, config, {"ticket": "hang", "discount": 1})
    assert hung.is_error and hung.meta["tether/error"]["failure"] == "timeout"
    assert "within 3 s" in text_of(hung)
    assert not after.is_error, text_of(after)  # the gateway and the upstream carry on
    (failed,) = records(runtime, AuditKind.UPSTREAM_FAILED)
    assert failed.body["failure"] == "timeout" and failed.body["tool"] == "crm.update"


class Malformed:
    """Speaks just enough MCP over HTTP (legacy handshake) to list a tool, then answers
    ``tools/call`` with a result that is not a CallToolResult."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        request = json.loads(body) if body else {}
        method, rid = request.get("method"), request.get("id")
        results: dict[str, Any] = {
            "initialize": {
                "protocolVersion": "2025-11-25",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "malformed", "version": "1"},
            },
            "tools/list": {
                "tools": [{"name": "update", "inputSchema": {"type": "object"}}],
            },
            "tools/call": {"content": "this is not a list of content blocks"},
        }
        if rid is None:  # a notification
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        if method in results:
            answer: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "result": results[method]}
        else:
            error = {"code": -32601, "message": "Method not found"}
            answer = {"jsonrpc": "2.0", "id": rid, "error": error}
        payload = json.dumps(answer).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def test_an_upstream_answer_that_is_not_valid_mcp(runtime: Runtime) -> None:
    with serve_asgi(Malformed()) as base:
        config = {"upstreams": {"crm": {"url": f"{base}/mcp"}}, "tools": UPDATE}
        first, second = call_twice(runtime, config, {"ticket": "T-1", "discount": 1})
    for result in (first, second):
        assert result.is_error and result.meta["tether/error"]["failure"] == "malformed"
    failures = records(runtime, AuditKind.UPSTREAM_FAILED)
    assert [f.body["failure"] for f in failures] == ["malformed", "malformed"]
    effects = [r.body["status"] for r in records(runtime, AuditKind.EFFECT)]
    assert effects == ["error", "error"]
    assert verify_chain(runtime.store.audit_records(), runtime.store.chain_head()).ok
