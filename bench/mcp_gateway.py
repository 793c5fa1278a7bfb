"""MCP gateway overhead: the same ``tools/call`` sequence direct to an upstream and through
``tether mcp-gateway``, interleaved in one run, on loopback.

Three processes, as in a deployment: a trivial upstream MCP server (streamable HTTP, one ``echo``
tool), the gateway (``tether mcp-gateway`` over streamable HTTP, fronting that upstream with an
injected bearer credential), and this client (the official SDK ``Client``, one session per path).
Each gateway call does the whole job: SVID verify, grant token verify, grant/task reads, scope
check, Cedar, the decision's audit write, the upstream call, and the effect's audit write.

Prints p50/p99 per path, the added latency per call (the median and p99 of the paired
differences: each gateway call minus the direct call made just before it) and the ratio of the
medians. Quote figures measured in one run.

    .venv/bin/python bench/mcp_gateway.py [--calls 1000] [--warmup 100]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from shutil import copytree
from typing import Any

import anyio
import httpx2
import yaml
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from tether.core.scope import Scope
from tether.core.secret import Secret
from tether.core.task import Intent
from tether.credentials.secrets import SecretStore
from tether.runtime import RuntimeConfig, dev_issuer, open_runtime, packaged_policies

TOKEN = "bench-upstream-token"


# -- the upstream (run as a subprocess of this script) -------------------------------------------


def serve_upstream(port: int) -> None:
    import mcp_types as types
    import uvicorn
    from mcp.server import Server, ServerRequestContext

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

    server = Server("bench", on_list_tools=on_list_tools, on_call_tool=on_call_tool)
    app = server.streamable_http_app(json_response=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- the run -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)  # a bounded wait for a socket, nothing else
    raise SystemExit(f"{what} did not start")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(
    direct_url: str, gateway_url: str, svid: str, grant: str, calls: int, warmup: int
) -> tuple[list[float], list[float]]:
    agent = {"Authorization": f"Bearer {svid}", "X-Tether-Grant": grant}
    upstream = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        httpx2.AsyncClient(headers=upstream, timeout=30) as direct_http,
        httpx2.AsyncClient(headers=agent, timeout=30) as gateway_http,
        Client(streamable_http_client(direct_url, http_client=direct_http), cache=None) as direct,
        Client(streamable_http_client(gateway_url, http_client=gateway_http), cache=None) as gw,
    ):
        assert [t.name for t in (await gw.list_tools()).tools] == ["bench.echo"]
        direct_ms: list[float] = []
        gateway_ms: list[float] = []
        for i in range(warmup + calls):
            args = {"text": f"call {i}"}
            start = time.perf_counter()
            a = await direct.call_tool("echo", args)
            middle = time.perf_counter()
            b = await gw.call_tool("bench.echo", args)
            end = time.perf_counter()
            if a.is_error or b.is_error:
                raise SystemExit(f"call failed: {a.content} / {b.content}")
            if i >= warmup:
                direct_ms.append((middle - start) * 1000)
                gateway_ms.append((end - middle) * 1000)
        return direct_ms, gateway_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve_upstream:
        serve_upstream(options.serve_upstream)
        return

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "data"
        env = {k: v for k, v in os.environ.items() if k != "TETHER_ENV"}
        # The example policies permit nothing on bench.echo: add one policy for it.
        policies = root / "policies"
        copytree(packaged_policies(), policies)
        (policies / "bench.cedar").write_text(
            '@id("bench-echo")\npermit (principal, action == Action::"read", '
            'resource == Tool::"bench.echo");\n'
        )
        config = RuntimeConfig(data_dir=data, policy_dir=policies, environ=env)
        runtime = open_runtime(config)
        svid = dev_issuer(config).mint_svid("bench", audience="tether", now=runtime.clock.now())
        workload = runtime.verifier.verify(svid, runtime.clock.now())
        scope = Scope.from_json({"tool": "bench.echo", "actions": ["read"]})
        intent = Intent("bench", "measure gateway overhead", "user:bench")
        grant = runtime.tasks.open_task(workload, intent, [scope], 3600).token
        runtime.close()
        SecretStore(data, environ=env).set("bench-token", Secret(TOKEN))

        up_port, gw_port = free_port(), free_port()
        upstream = subprocess.Popen([sys.executable, __file__, "--serve-upstream", str(up_port)])
        gateway = None
        try:
            wait_for_port(up_port, upstream, "the upstream")
            direct_url = f"http://127.0.0.1:{up_port}/mcp"
            gateway_config = {
                "upstreams": {
                    "bench": {"url": direct_url, "credential": {"secret": "bench-token"}}
                },
                "tools": {"bench.echo": {"action": "read"}},
            }
            (root / "gateway.yaml").write_text(yaml.safe_dump(gateway_config))
            gateway = subprocess.Popen(
                [
                    *(sys.executable, "-m", "tether", "mcp-gateway"),
                    *("--gateway-config", str(root / "gateway.yaml")),
                    *("--data-dir", str(data), "--policies", str(policies)),
                    *("--port", str(gw_port), "--log-level", "warning"),
                ],
                env=env,
            )
            wait_for_port(gw_port, gateway, "the gateway")
            gateway_url = f"http://127.0.0.1:{gw_port}/mcp"
            direct_ms, gateway_ms = anyio.run(
                measure, direct_url, gateway_url, svid, grant, options.calls, options.warmup
            )
        finally:
            for process in (gateway, upstream):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=20)

    added = [g - d for d, g in zip(direct_ms, gateway_ms, strict=True)]
    p50_direct, p50_gateway = statistics.median(direct_ms), statistics.median(gateway_ms)
    print(f"tools/call on a trivial tool, loopback, {options.calls} calls per path, interleaved")
    print(f"{'path':<28}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{'direct to the upstream':<28}{p50_direct:>10.3f}{percentile(direct_ms, 0.99):>10.3f}")
    print(
        f"{'through tether gateway':<28}{p50_gateway:>10.3f}{percentile(gateway_ms, 0.99):>10.3f}"
    )
    print(
        f"added per call: p50 {statistics.median(added):.3f} ms, "
        f"p99 {percentile(added, 0.99):.3f} ms; ratio of medians {p50_gateway / p50_direct:.2f}x"
    )


if __name__ == "__main__":
    main()
