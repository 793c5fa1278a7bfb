"""Operating the gateway: ``GET /metrics`` with the metric names of ``tether serve``, and
``--log-format json`` (every stderr line one JSON object, decisions named, never a token)."""

from __future__ import annotations

import json
import socket
import sys
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

import httpx
from mcp_harness import (
    CRM_QUERY,
    UPSTREAM,
    Gw,
    connect,
    open_grant,
    run,
    text_of,
    write_config,
)

from metrics_support import assert_one_allow_and_one_deny, door_process
from support import make_runtime
from tether.service.clock import ManualClock


def test_metrics_count_the_gateways_decisions_without_credentials(gw: Gw) -> None:
    base = gw.url.removesuffix("/mcp")
    analyst = gw.grant("analyst", CRM_QUERY)

    async def scenario() -> None:
        async with connect(gw.url, analyst) as client:
            allowed = await client.call_tool("crm.query", {"customer": "c-9"})
            assert not allowed.is_error, text_of(allowed)
            denied = await client.call_tool("crm.update", {"ticket": "T-1"})
            assert denied.is_error

    run(scenario)
    response = httpx.get(f"{base}/metrics", timeout=30)  # no Authorization header
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert_one_allow_and_one_deny(response.text)
    assert analyst.svid not in response.text and analyst.grant not in response.text

    refused = httpx.post(f"{base}/metrics", timeout=30)
    assert refused.status_code == 405
    assert refused.json()["error"]["code"] == "method_not_allowed"
    # Only /metrics is open: MCP still needs the agent's SVID.
    assert httpx.post(gw.url, json={}, timeout=30).status_code == 401


def gateway_process(
    config: Path, data: Path, stderr: Path, *args: str
) -> AbstractContextManager[str]:
    command = ["mcp-gateway", "--gateway-config", str(config), "-d", str(data), *args]
    return door_process(command, stderr)


def test_json_logs_are_one_object_per_line_naming_decisions_never_tokens(tmp_path: Path) -> None:
    clock = ManualClock(datetime.now(UTC))  # the gateway process runs on the system clock
    data = tmp_path / "data"
    runtime = make_runtime(data, clock)
    try:
        analyst = open_grant(runtime, clock, "analyst", CRM_QUERY)
    finally:
        runtime.close()
    config = write_config(
        tmp_path / "gateway.yaml",
        {
            "upstreams": {"crm": {"command": sys.executable, "args": [UPSTREAM, "crm"]}},
            "tools": {"crm.query": {"action": "read", "dataset": "crm"}},
        },
    )
    stderr = tmp_path / "gateway.stderr"
    with gateway_process(config, data, stderr, "--log-format", "json") as base:

        async def scenario() -> None:
            async with connect(f"{base}/mcp", analyst) as client:
                result = await client.call_tool("crm.query", {"customer": "c-3"})
                assert not result.is_error, text_of(result)

        run(scenario)
        # A request uvicorn itself refuses: its own log line must be JSON too.
        with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), 10) as raw:
            raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            raw.recv(1024)

    lines = [line for line in stderr.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(isinstance(entry, dict) for entry in entries)
    events = [entry["event"] for entry in entries]
    assert "gateway_listening" in events and "upstream_connected" in events
    (decided,) = [e for e in entries if e["event"] == "decision"]
    assert decided["tool"] == "crm.query" and decided["decision"] == "allow"
    assert decided["agent"] == "spiffe://tether.local/agent/analyst"
    assert any(e.get("logger") == "uvicorn.error" for e in entries)
    text = stderr.read_text()
    assert analyst.svid not in text and analyst.grant not in text
