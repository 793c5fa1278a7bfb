"""The stdio entry point: `tether mcp-gateway --transport stdio`, one agent per process, its SVID
and grant from the environment, spoken to by the SDK client over the process's stdin/stdout."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp_harness import (
    CRM_QUERY,
    CRM_UPDATE,
    UPSTREAM,
    open_grant,
    records,
    run,
    text_of,
    write_config,
)
from typer.testing import CliRunner

from support import make_runtime
from tether.cli.main import app
from tether.core.audit import AuditKind
from tether.service.clock import ManualClock

CONFIG = {
    "upstreams": {"crm": {"command": sys.executable, "args": [UPSTREAM, "crm"]}},
    "tools": {"crm.query": {"action": "read", "dataset": "crm", "count_records": "content"}},
}


@pytest.mark.parametrize("configured_by", ["flags", "tether.yaml"])
def test_the_stdio_gateway_serves_its_agent(tmp_path: Path, configured_by: str) -> None:
    # The gateway process runs on the system clock, so the grant is issued at the real time.
    clock = ManualClock(datetime.now(UTC))
    data = tmp_path / "data"
    runtime = make_runtime(data, clock)
    try:
        keys = open_grant(runtime, clock, "analyst", CRM_QUERY)
        config = write_config(tmp_path / "gateway.yaml", CONFIG)
        args = ["-t", "stdio", "-g", str(config), "-d", str(data)]
        if configured_by == "tether.yaml":  # the same options, from the file, paths relative to it
            (tmp_path / "tether.yaml").write_text(
                "data_dir: data\nmcp_gateway: {gateway_config: gateway.yaml, transport: stdio}\n"
            )
            args = ["--config", str(tmp_path / "tether.yaml")]
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "tether", "mcp-gateway", *args],
            env={"TETHER_SVID": keys.svid, "TETHER_GRANT": keys.grant},
        )

        async def scenario() -> None:
            async with Client(params, read_timeout_seconds=60, cache=None) as client:
                listed = await client.list_tools()
                assert [t.name for t in listed.tools] == ["crm.query"]
                result = await client.call_tool("crm.query", {"customer": "c-5"})
                assert not result.is_error, text_of(result)
                assert text_of(result) == "3 records for c-5"
                denied = await client.call_tool("crm.admin", {})
                assert denied.is_error and "tool_not_in_scope" in text_of(denied)

        run(scenario)
        (effect,) = records(runtime, AuditKind.EFFECT)  # written by the gateway process
        assert effect.body["records"] == 1 and effect.body["status"] == "ok"
    finally:
        runtime.close()


def test_the_stdio_gateway_refuses_to_start_without_a_valid_identity(tmp_path: Path) -> None:
    clock = ManualClock(datetime.now(UTC))
    data = tmp_path / "data"
    runtime = make_runtime(data, clock)
    try:
        analyst = open_grant(runtime, clock, "analyst", CRM_QUERY)
        intruder = open_grant(runtime, clock, "intruder", CRM_UPDATE)
    finally:
        runtime.close()
    config = write_config(tmp_path / "gateway.yaml", CONFIG)
    args = ["mcp-gateway", "-t", "stdio", "-g", str(config), "-d", str(data)]
    runner = CliRunner()
    cases = [
        (
            {"TETHER_SVID": "not-a-token", "TETHER_GRANT": analyst.grant},
            "TETHER_SVID does not verify",
        ),
        ({"TETHER_SVID": analyst.svid, "TETHER_GRANT": ""}, "set TETHER_GRANT"),
        ({"TETHER_SVID": intruder.svid, "TETHER_GRANT": analyst.grant}, "not a usable grant"),
    ]
    for env, expected in cases:
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 5, result.output  # refused: no usable identity or grant
        assert expected in result.output
        errors = [line for line in result.output.splitlines() if line.startswith("error (")]
        assert len(errors) == 1  # one error line (rich may wrap it at the terminal width)
