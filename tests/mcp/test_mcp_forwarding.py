"""tools/call travels as a JSON-RPC message between the agent's session and the upstream's:
progress passes through, both protocol eras get well-formed answers, malformed params get the
SDK's JSON-RPC error, and a call's effect is written before the next decision on its task."""

from __future__ import annotations

import json
from typing import Any

import httpx
from mcp_harness import CRM_QUERY, Gw, connect, records, run, text_of
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from tether.core.audit import AuditKind


def test_upstream_progress_reaches_the_agent_that_asked_for_it(gw: Gw) -> None:
    analyst = gw.grant("analyst", CRM_QUERY)
    seen: list[tuple[float, float | None, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, total, message))

    async def scenario() -> Any:
        async with connect(gw.url, analyst) as client:
            return await client.call_tool(
                "crm.query", {"customer": "c-5", "rows": 4}, progress_callback=progress
            )

    result = run(scenario)
    assert not result.is_error, text_of(result)
    assert seen == [(n, 4, f"record {n} of 4") for n in range(1, 5)]


def test_legacy_and_modern_agent_sessions_get_the_same_answers(gw: Gw) -> None:
    analyst = gw.grant("analyst", CRM_QUERY)

    async def scenario(mode: str) -> tuple[str | None, Any, Any]:
        async with connect(gw.url, analyst, mode=mode) as client:
            allowed = await client.call_tool("crm.query", {"customer": "c-8"})
            denied = await client.call_tool("crm.update", {"ticket": "T-1"})
            return client.protocol_version, allowed, denied

    for mode in ("legacy", "auto"):
        version, allowed, denied = run(lambda mode=mode: scenario(mode))  # type: ignore[misc]
        assert (version in MODERN_PROTOCOL_VERSIONS) is (mode == "auto"), version
        assert not allowed.is_error and text_of(allowed) == "3 records for c-8"
        assert allowed.structured_content == {
            "items": [{"customer": "c-8", "order": n} for n in range(3)]
        }
        assert denied.is_error and "tool_not_in_scope" in text_of(denied)


def test_the_effect_is_written_before_the_next_decision_on_the_task(gw: Gw) -> None:
    analyst = gw.grant("analyst", CRM_QUERY)

    async def scenario() -> None:
        async with connect(gw.url, analyst) as client:
            for n in range(3):
                result = await client.call_tool("crm.query", {"customer": f"c-{n}"})
                assert not result.is_error, text_of(result)

    run(scenario)
    chain = [
        r
        for r in records(gw.runtime)
        if r.kind in (AuditKind.DECISION, AuditKind.EFFECT) and r.agent.endswith("/analyst")
    ][-6:]
    assert [r.kind for r in chain] == [AuditKind.DECISION, AuditKind.EFFECT] * 3
    for decision, effect in zip(chain[::2], chain[1::2], strict=True):
        assert effect.body["decision_id"] == decision.body["decision_id"]
        assert effect.body["status"] == "ok" and effect.body["records"] == 3


def _post(http: httpx.Client, url: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    accept = {"Accept": "application/json, text/event-stream"}
    return http.post(url, json=body, headers={**accept, **headers})


def _message(answer: httpx.Response) -> Any:
    """The JSON-RPC message of an answer, sent as JSON or as the last event of an SSE stream."""
    if answer.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:] for line in answer.text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1])
    return answer.json()


def test_malformed_call_params_get_the_sdk_json_rpc_error_not_an_internal_one(gw: Gw) -> None:
    analyst = gw.grant("analyst", CRM_QUERY)
    auth = {"Authorization": f"Bearer {analyst.svid}", "X-Tether-Grant": analyst.grant}
    calls = len(records(gw.runtime, AuditKind.DECISION))
    with httpx.Client(timeout=20) as http:
        opened = _post(
            http,
            gw.url,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "1"},
                },
            },
            **auth,
        )
        assert opened.status_code == 200, opened.text
        session = {"mcp-session-id": opened.headers["mcp-session-id"], **auth}
        done = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert _post(http, gw.url, done, **session).status_code == 202
        for params in (
            {"name": "crm.query", "arguments": "not an object"},
            {"arguments": {"customer": "c-1"}},
            {"name": 7},
        ):
            body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params}
            answer = _post(http, gw.url, body, **session)
            assert answer.status_code == 200, answer.text
            assert _message(answer)["error"]["code"] == -32602, params  # invalid params
        ok = {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "crm.query", "arguments": {"customer": "c-1"}},
        }
        answered = _message(_post(http, gw.url, ok, **session))
        assert answered["result"]["content"][0]["text"] == "3 records for c-1"
    # the malformed calls were refused before any decision; the good one was decided
    assert len(records(gw.runtime, AuditKind.DECISION)) == calls + 1
