"""MCP gateway start-up: time from starting ``tether mcp-gateway --transport stdio`` in front of
seven stdio upstreams to its first ``tools/list`` answer, cold (no pins yet) and warm (pins and
listings kept from an earlier start), interleaved in one run.

Each upstream is this script run as a trivial MCP server over stdio (official SDK, one ``echo``
tool), so each costs what a small Python MCP server costs to start. The agent is the SDK's
``Client``, spawning the gateway the way an MCP host does. Target (issue 12): within 2 s.

Upstreams start on first use, all at once: ``initialize`` is answered without waiting for any.
Cold, the first ``tools/list`` waits for all seven (it must list them and pin their tools); that
one is bound by CPU: each Python upstream spends about 0.6 s of CPU importing the SDK, so seven
of them cost about 4 s of CPU, over 2 s of wall time on two cores before anything else runs.
Warm, the first ``tools/list`` is answered from the pinned listing kept beside the pins file
(:mod:`tether.mcp.warmstart`) while the upstreams start in the background.

Prints each run and the medians side by side. Quote figures measured in one run, with the
machine's load (printed at the start and the end).

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

    try:
        anyio.run(run)
    except BaseException as error:  # the gateway went away while this one was starting
        if not _gone(error):
            raise


def _gone(error: BaseException) -> bool:
    if isinstance(error, BaseExceptionGroup):
        return all(_gone(e) for e in error.exceptions)
    return isinstance(error, BrokenPipeError | ConnectionResetError | anyio.ClosedResourceError)


async def first_answers(params: StdioServerParameters, expected: int) -> tuple[float, float, float]:
    """Seconds from spawning the gateway to its ``initialize`` answer, to its first
    ``tools/list`` answer, and to the answer of a first ``tools/call`` made after the listing."""
    started = time.perf_counter()
    async with Client(params, read_timeout_seconds=120, cache=None) as client:
        initialized = time.perf_counter() - started
        listed = await client.list_tools()
        elapsed = time.perf_counter() - started
        called = await client.call_tool("up0.echo", {"text": "hi"})
        answered = time.perf_counter() - started
    if len(listed.tools) != expected:
        raise SystemExit(f"expected {expected} tools, got {[t.name for t in listed.tools]}")
    if called.is_error:
        raise SystemExit(f"the first call failed: {called.content}")
    return initialized, elapsed, answered


def gateway_params(
    root: Path, data: Path, policies: Path, pins: Path, env: dict[str, str]
) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=[
            *("-m", "tether", "mcp-gateway", "--transport", "stdio"),
            *("--gateway-config", str(root / "gateway.yaml")),
            *("--data-dir", str(data), "--policies", str(policies), "--pins", str(pins)),
            *("--log-level", os.environ.get("BENCH_LOG_LEVEL", "warning")),
        ],
        env=env,
    )


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
    load_before = os.getloadavg()
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
        agent_env = {**env, "TETHER_SVID": svid, "TETHER_GRANT": grant}
        warm = gateway_params(root, data, policies, root / "warm" / "pins.json", agent_env)
        anyio.run(first_answers, warm, len(names))  # pins the tools: what makes later starts warm
        figures: dict[str, tuple[list[float], ...]] = {
            "cold": ([], [], []),
            "warm": ([], [], []),
        }
        for run in range(options.runs):
            cold = gateway_params(
                root, data, policies, root / f"cold{run}" / "pins.json", agent_env
            )
            for kind, params in (("cold", cold), ("warm", warm)):
                answers = anyio.run(first_answers, params, len(names))
                for figure, value in zip(figures[kind], answers, strict=True):
                    figure.append(value)
                first, elapsed, answered = answers
                print(
                    f"run {run + 1} {kind}: initialize answered after {first:.2f} s, "
                    f"first tools/list after {elapsed:.2f} s, first tools/call after "
                    f"{answered:.2f} s",
                    flush=True,
                )
    load_after = os.getloadavg()
    print(
        f"\n{len(names)} stdio upstreams, {options.runs} runs each, interleaved, "
        f"{os.cpu_count()} cores, load average {load_before[0]:.1f} at the start and "
        f"{load_after[0]:.1f} at the end"
    )
    print("| start | initialize answered | first tools/list answered | first tools/call answered |")
    print("|---|---|---|---|")
    for kind, columns in figures.items():
        print(f"| {kind} | " + " | ".join(f"{statistics.median(c):.2f} s" for c in columns) + " |")


if __name__ == "__main__":
    main()
