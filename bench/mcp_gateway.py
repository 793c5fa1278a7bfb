"""MCP gateway overhead: the same ``tools/call`` sequence direct to an upstream, through a bare
forwarding proxy, through ``tether mcp-gateway`` and through a gateway deciding remotely
(``--pdp-url``, against ``tether serve``), interleaved in one run, on loopback.

Six processes, as in a deployment: a trivial upstream MCP server (streamable HTTP, one ``echo``
tool), the gateway (``tether mcp-gateway`` over streamable HTTP, fronting that upstream with an
injected bearer credential), the bare proxy (the gateway's own layers without tether: the SDK's
server and its transport to the agent, the call forwarded as a JSON-RPC message through the
gateway's upstream connection, nothing decided or recorded), and this client (the official SDK
``Client``, one session per path), plus the remote-decision pair: ``tether serve`` on the same
data directory and a gateway with ``--pdp-url`` and a data directory of its own holding only the
upstream's secret (it verifies the SVID, reads the grant, decides and writes the effect over
HTTP, one pooled connection). Each gateway call does the whole job: SVID verify, grant token
verify, grant/task reads, scope check, Cedar, the decision's audit write, the upstream call, and
the effect's audit write (after the answer).

Prints, per path, p50/p95/p99, the added latency (the median of the paired differences: each
call minus the direct call made in the same round), the ratio of the medians and the proxy
process's CPU per call (``/proc``, every thread: less sensitive to a loaded machine than
latency; for the remote path the gateway's, with serve's printed below it). Then the layers
timed alone, in this process: the decision (``Authorizer.enforce``), the effect write, and
shaping the result for the agent. Quote figures measured in one run, with the load average
printed beside them.

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
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from shutil import copytree
from typing import Any

import anyio
import httpx2
import yaml
from _servers import free_port, processes_cpu, stop
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from tether.core.identity import Workload
from tether.core.ids import DecisionId
from tether.core.scope import ActionKind, Scope
from tether.core.secret import Secret
from tether.core.task import Intent
from tether.credentials.secrets import SecretStore
from tether.runtime import Runtime, RuntimeConfig, dev_issuer, open_runtime, packaged_policies

TOKEN = "bench-upstream-token"


# -- the upstream and the bare proxy (run as subprocesses of this script) ------------------------


def echo_listing(name: str) -> Any:
    """A ``tools/list`` handler showing the one echo tool as ``name``."""
    import mcp_types as types

    async def on_list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        schema = {"type": "object", "properties": {"text": {"type": "string"}}}
        return types.ListToolsResult(
            tools=[types.Tool(name=name, description="Echo.", input_schema=schema)]
        )

    return on_list_tools


def serve_upstream(port: int) -> None:
    import mcp_types as types
    import uvicorn
    from mcp.server import Server, ServerRequestContext

    on_list_tools = echo_listing("echo")

    async def on_call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        text = str((params.arguments or {}).get("text", ""))
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

    server = Server("bench", on_list_tools=on_list_tools, on_call_tool=on_call_tool)
    app = server.streamable_http_app(json_response=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def serve_bare(port: int, upstream_url: str) -> None:
    """The floor of the gateway's design: its transports and forwarding, nothing decided."""
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    import mcp_types as types
    import uvicorn
    from mcp.server import Server, ServerRequestContext
    from mcp.server.context import CallNext

    from tether.mcp.config import CredentialRef, HttpUpstream
    from tether.mcp.results import for_agent
    from tether.mcp.upstreams import UpstreamConnection
    from tether.service.clock import SystemClock

    config = HttpUpstream("bench", upstream_url, CredentialRef("bench-token"))
    holder: list[UpstreamConnection] = []

    @asynccontextmanager
    async def lifespan(_server: Server[Any]) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            holder.append(UpstreamConnection(config, lambda _: Secret(TOKEN), tg, SystemClock()))
            yield
            holder[0].close()
            tg.cancel_scope.cancel()

    on_list_tools = echo_listing("bench.echo")

    async def on_call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        raise AssertionError("forwarded by the middleware")

    async def forward(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Any:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        params = ctx.params or {}
        name = str(params.get("name", "")).removeprefix("bench.")
        raw = await holder[0].request(
            "tools/call", {"name": name, "arguments": params.get("arguments")}
        )
        return for_agent(raw, ctx.protocol_version)

    server = Server(
        "bare", on_list_tools=on_list_tools, on_call_tool=on_call_tool, lifespan=lifespan
    )
    server.middleware.append(forward)
    app = server.streamable_http_app(json_response=False)  # as the gateway: SSE when notified
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- the run -------------------------------------------------------------------------------------


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


PATHS = (
    "direct to the upstream",
    "bare forward, no tether",
    "through tether gateway",
    "gateway, decided by serve",
)


async def measure(
    urls: tuple[str, str, str, str],
    svid: str,
    grants: tuple[str, str],
    calls: int,
    warmup: int,
    pids: tuple[int, ...],
) -> tuple[list[list[float]], list[float | None]]:
    agent = {"Authorization": f"Bearer {svid}", "X-Tether-Grant": grants[0]}
    remote_agent = {"Authorization": f"Bearer {svid}", "X-Tether-Grant": grants[1]}
    upstream = {"Authorization": f"Bearer {TOKEN}"}
    direct_url, bare_url, gateway_url, remote_url = urls
    async with (
        httpx2.AsyncClient(headers=upstream, timeout=30) as direct_http,
        httpx2.AsyncClient(timeout=30) as bare_http,
        httpx2.AsyncClient(headers=agent, timeout=30) as gateway_http,
        httpx2.AsyncClient(headers=remote_agent, timeout=30) as remote_http,
        Client(streamable_http_client(direct_url, http_client=direct_http), cache=None) as direct,
        Client(streamable_http_client(bare_url, http_client=bare_http), cache=None) as bare,
        Client(streamable_http_client(gateway_url, http_client=gateway_http), cache=None) as gw,
        Client(streamable_http_client(remote_url, http_client=remote_http), cache=None) as rgw,
    ):
        assert [t.name for t in (await gw.list_tools()).tools] == ["bench.echo"]
        assert [t.name for t in (await rgw.list_tools()).tools] == ["bench.echo"]
        clients = ((direct, "echo"), (bare, "bench.echo"), (gw, "bench.echo"), (rgw, "bench.echo"))
        times: list[list[float]] = [[], [], [], []]
        cpu_start: list[float | None] = []
        for i in range(warmup + calls):
            if i == warmup:
                cpu_start = [processes_cpu([pid]) for pid in pids]
            args = {"text": f"call {i}"}
            for path, (client, tool) in enumerate(clients):
                start = time.perf_counter()
                result = await client.call_tool(tool, args)
                elapsed = time.perf_counter() - start
                if result.is_error or result.content[0].text != args["text"]:  # type: ignore[union-attr]
                    raise SystemExit(f"{PATHS[path]}: call failed: {result.content}")
                if i >= warmup:
                    times[path].append(elapsed * 1000)
        cpu_end = [processes_cpu([pid]) for pid in pids]
        cpu = [
            None if a is None or b is None else (b - a) * 1000 / calls
            for a, b in zip(cpu_start, cpu_end, strict=True)
        ]
        return times, cpu


def median_us(fn: Callable[[], object], rounds: int) -> float:
    spent = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        spent.append((time.perf_counter() - start) * 1e6)
    return statistics.median(spent)


def layers(runtime: Runtime, workload: Workload, grant: str, rounds: int) -> dict[str, float]:
    """Each layer the gateway adds, timed alone in this process (median microseconds)."""
    from tether.core.effect import EffectStatus
    from tether.mcp.config import ToolMapping
    from tether.mcp.results import encoded, for_agent, measure
    from tether.service.enforce import CallRequest

    request = CallRequest("bench.echo", ActionKind.READ, None, {"text": "call"}, None)
    decisions: list[DecisionId] = []

    def decide() -> None:
        decisions.append(runtime.authorizer.enforce(workload, grant, request).decision_id)

    def report() -> None:
        runtime.effects.report(workload, decisions.pop(), EffectStatus.OK, None, 40, ())

    raw = {"content": [{"type": "text", "text": "call 1"}], "isError": False}
    mapping = ToolMapping(ActionKind.READ)

    def shape() -> None:
        answer = for_agent(raw, "2025-11-25")
        measure(answer, len(encoded(answer)), mapping, {"text": "call"})

    return {
        "decision (Authorizer.enforce)": median_us(decide, rounds),
        "effect write (EffectService.report)": median_us(report, rounds),
        "result shaped, measured, encoded": median_us(shape, rounds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare", nargs=2, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve_upstream:
        serve_upstream(options.serve_upstream)
        return
    if options.serve_bare:
        serve_bare(int(options.serve_bare[0]), options.serve_bare[1])
        return

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
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
        # A task of its own for the layers, so their decisions do not touch the measured one.
        alone = runtime.tasks.open_task(workload, intent, [scope], 3600).token
        # The remote-decision path: a task of its own, and the gateway's own identity.
        remote_grant = runtime.tasks.open_task(workload, intent, [scope], 3600).token
        gateway_svid = dev_issuer(config).mint_svid(
            "mcp-gateway", audience="tether", now=runtime.clock.now()
        )
        gateway_id = runtime.verifier.verify(gateway_svid, runtime.clock.now()).id
        alone_us = layers(runtime, workload, alone, min(options.calls, 500))
        runtime.close()
        SecretStore(data, environ=env).set("bench-token", Secret(TOKEN))
        # The remote gateway's host: the upstream's secret and its own SVID, nothing else.
        remote_data = root / "remote-gateway"
        SecretStore(remote_data, environ=env).set("bench-token", Secret(TOKEN))
        (root / "gateway.jwt").write_text(gateway_svid)

        up_port, bare_port, gw_port = free_port(), free_port(), free_port()
        serve_port, remote_port = free_port(), free_port()
        direct_url = f"http://127.0.0.1:{up_port}/mcp"
        commands = {
            "the upstream": [sys.executable, __file__, "--serve-upstream", str(up_port)],
            "the bare proxy": [
                sys.executable,
                __file__,
                "--serve-bare",
                str(bare_port),
                direct_url,
            ],
        }
        upstream = subprocess.Popen(commands["the upstream"])
        stack.callback(stop, upstream)
        wait_for_port(up_port, upstream, "the upstream")
        bare = subprocess.Popen(
            [sys.executable, __file__, "--serve-bare", str(bare_port), direct_url], env=env
        )
        stack.callback(stop, bare)
        # The echo tool never changes: descriptors are re-read when the upstream says so
        # (pin_check on_change), as for any upstream declaring tools.listChanged; an upstream
        # checked each_call costs one more tools/list round trip per call.
        bench = {
            "url": direct_url,
            "credential": {"secret": "bench-token"},
            "pin_check": "on_change",
        }
        gateway_config = {
            "upstreams": {"bench": bench},
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
        stack.callback(stop, gateway)
        serve = subprocess.Popen(
            [
                *(sys.executable, "-m", "tether", "serve"),
                *("--data-dir", str(data), "--policies", str(policies)),
                *("--port", str(serve_port), "--log-level", "warning"),
                *("--gateway-ids", gateway_id),
            ],
            env=env,
        )
        stack.callback(stop, serve)
        wait_for_port(serve_port, serve, "tether serve")
        remote = subprocess.Popen(
            [
                *(sys.executable, "-m", "tether", "mcp-gateway"),
                *("--gateway-config", str(root / "gateway.yaml")),
                *("--data-dir", str(remote_data)),
                *("--pdp-url", f"http://127.0.0.1:{serve_port}"),
                *("--gateway-svid-file", str(root / "gateway.jwt")),
                *("--port", str(remote_port), "--log-level", "warning"),
            ],
            env=env,
        )
        stack.callback(stop, remote)
        wait_for_port(bare_port, bare, "the bare proxy")
        wait_for_port(gw_port, gateway, "the gateway")
        wait_for_port(remote_port, remote, "the remote-decision gateway")
        urls = (
            direct_url,
            f"http://127.0.0.1:{bare_port}/mcp",
            f"http://127.0.0.1:{gw_port}/mcp",
            f"http://127.0.0.1:{remote_port}/mcp",
        )
        load = os.getloadavg()[0]
        pids = (bare.pid, gateway.pid, remote.pid, serve.pid)
        times, cpu = anyio.run(
            measure, urls, svid, (grant, remote_grant), options.calls, options.warmup, pids
        )
        load = max(load, os.getloadavg()[0])

    direct = times[0]
    p50_direct = statistics.median(direct)
    print(
        f"tools/call on a trivial tool, loopback, {options.calls} calls per path, interleaved; "
        f"{os.cpu_count()} cores, load average up to {load:.1f} during the run"
    )
    print(
        f"{'path':<27}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'added p50':>11}{'ratio':>8}"
        f"{'proxy CPU ms/call':>19}"
    )
    for path, values in enumerate(times):
        added = [v - d for v, d in zip(values, direct, strict=True)]
        p50 = statistics.median(values)
        used = cpu[path - 1] if path > 0 else None
        print(
            f"{PATHS[path]:<27}{p50:>9.3f}{percentile(values, 0.95):>9.3f}"
            f"{percentile(values, 0.99):>9.3f}"
            + (f"{statistics.median(added):>11.3f}{p50 / p50_direct:>7.2f}x" if path else " " * 19)
            + (f"{used:>19.3f}" if used is not None else f"{'':>19}")
        )
    if cpu[3] is not None:
        print(f"  tether serve's CPU per call on the remote path: {cpu[3]:.3f} ms")
    print("layers timed alone in this process (median per call):")
    for name, spent in alone_us.items():
        print(f"  {name:<40}{spent / 1000:>8.3f} ms")


if __name__ == "__main__":
    main()
