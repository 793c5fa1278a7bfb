"""MCP gateway start-up: time from starting ``tether mcp-gateway --transport stdio`` in front of
seven stdio upstreams to its first ``tools/list`` answer.

Each upstream is this script run as a trivial MCP server over stdio (official SDK, one ``echo``
tool), so each costs what a small Python MCP server costs to start. The agent is the SDK's
``Client``, spawning the gateway the way an MCP host does. Target (issue 12): within 2 s.

Upstreams start on first use, all at once: ``initialize`` is answered without waiting for any,
and the first ``tools/list`` waits for all seven (it must list them). That one is bound by CPU:
each Python upstream spends about 0.6 s of CPU importing the SDK, so seven of them cost about
4 s of CPU, over 2 s of wall time on two cores before anything else runs.

Prints each run and the medians. Quote figures measured in one run, with the machine's load.

    .venv/bin/python bench/mcp_startup.py [--runs 3] [--upstreams 7]

``BENCH_LOG_LEVEL=info`` shows the gateway's log lines (each upstream's start) on stderr.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from shutil import copytree
from typing import Any

import anyio
import yaml
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters

from tether.core.scope import Scope
from tether.core.task import Intent
from tether.runtime import RuntimeConfig, dev_issuer, open_runtime, packaged_policies


def serve_upstream(name: str) -> None:
    import mcp_types as types
    from mcp.server import Server, ServerRequestContext
    from mcp.server.stdio import stdio_server

    async def on_list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        schema = {"type": "object", "properties": {"text": {"type": "string"}}}
        return types.ListToolsResult(
            tools=[types.Tool(name="echo", description="Echo.", input_schema=schema)]
        )

    async def on_call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        text = str((params.arguments or {}).get("text", ""))
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

    server = Server(name, on_list_tools=on_list_tools, on_call_tool=on_call_tool)

    async def run() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(run)


async def first_answers(params: StdioServerParameters, expected: int) -> tuple[float, float]:
    """Seconds from spawning the gateway to its ``initialize`` answer and to its first
    ``tools/list`` answer."""
    started = time.perf_counter()
    async with Client(params, read_timeout_seconds=120, cache=None) as client:
        initialized = time.perf_counter() - started
        listed = await client.list_tools()
        elapsed = time.perf_counter() - started
    if len(listed.tools) != expected:
        raise SystemExit(f"expected {expected} tools, got {[t.name for t in listed.tools]}")
    return initialized, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--upstreams", type=int, default=7)
    parser.add_argument("--serve-upstream", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve_upstream:
        serve_upstream(options.serve_upstream)
        return

    names = [f"up{n}" for n in range(options.upstreams)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "data"
        env = {k: v for k, v in os.environ.items() if k != "TETHER_ENV"}
        policies = root / "policies"
        copytree(packaged_policies(), policies)
        (policies / "bench.cedar").write_text(
            "".join(
                f'@id("bench-{name}")\npermit (principal, action == Action::"read", '
                f'resource == Tool::"{name}.echo");\n'
                for name in names
            )
        )
        config = RuntimeConfig(data_dir=data, policy_dir=policies, environ=env)
        runtime = open_runtime(config)
        svid = dev_issuer(config).mint_svid("bench", audience="tether", now=runtime.clock.now())
        workload = runtime.verifier.verify(svid, runtime.clock.now())
        scopes = [Scope.from_json({"tool": f"{n}.echo", "actions": ["read"]}) for n in names]
        intent = Intent("bench", "measure gateway start-up", "user:bench")
        grant = runtime.tasks.open_task(workload, intent, scopes, 3600).token
        runtime.close()
        gateway_config = {
            "upstreams": {
                name: {"command": sys.executable, "args": [__file__, "--serve-upstream", name]}
                for name in names
            },
            "tools": {f"{name}.echo": {"action": "read"} for name in names},
        }
        (root / "gateway.yaml").write_text(yaml.safe_dump(gateway_config))
        params = StdioServerParameters(
            command=sys.executable,
            args=[
                *("-m", "tether", "mcp-gateway", "--transport", "stdio"),
                *("--gateway-config", str(root / "gateway.yaml")),
                *("--data-dir", str(data), "--policies", str(policies)),
                *("--log-level", os.environ.get("BENCH_LOG_LEVEL", "warning")),
            ],
            env={**env, "TETHER_SVID": svid, "TETHER_GRANT": grant},
        )
        initialize, listing = [], []
        for run in range(options.runs):
            first, elapsed = anyio.run(first_answers, params, len(names))
            initialize.append(first)
            listing.append(elapsed)
            print(
                f"run {run + 1}: initialize answered after {first:.2f} s, "
                f"first tools/list after {elapsed:.2f} s",
                flush=True,
            )
    print(
        f"{len(names)} stdio upstreams, {options.runs} runs, {os.cpu_count()} cores, load "
        f"{os.getloadavg()[0]:.1f}: median {statistics.median(initialize):.2f} s to the "
        f"initialize answer, {statistics.median(listing):.2f} s to the first tools/list answer"
    )


if __name__ == "__main__":
    main()
