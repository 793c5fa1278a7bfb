"""MCP gateway overhead: the same ``tools/call`` sequence direct to an upstream, through a bare
forwarding proxy, through ``tether mcp-gateway`` on its SDK path and on its lean path, and
through a gateway deciding remotely (``--pdp-url``, against ``tether serve``), interleaved in one
run, on loopback, with a streamable HTTP upstream and a stdio one.

The processes, as in a deployment: a trivial upstream MCP server (streamable HTTP, one ``echo``
tool) and the same server over stdio, four gateways (``tether.mcp.server.http_app`` served by
uvicorn as ``tether mcp-gateway`` serves it, its heap kept out of full collections as there
(``tether.heap``; a baseline's gateway that predates it, without); fronting the HTTP upstream with
an injected bearer credential, or the stdio one, which each gateway starts itself; each with the
lean path for ``tools/call`` or with every request through the SDK's transport,
``http_app(lean=False)``), the bare proxy (the gateway's own layers without tether: the SDK's server
and its transport to the agent, the call forwarded as a JSON-RPC message through the gateway's
upstream connection, nothing decided or recorded), an HTTP forward (the floor of any gateway
on this stack: uvicorn takes the agent's request and the lean channel's HTTP client sends it on
as it came, nothing parsed, decided or recorded), the remote-decision pair (``tether serve`` on the
same data directory, accepting the gateway's own records with ``--gateway-ids``, and ``tether
mcp-gateway --pdp-url`` on its default lean path in front of the HTTP upstream, with a data
directory of its own holding only the upstream's secret: serve verifies the SVID and the grant,
decides, and records the effect and the observation, over HTTP), and this client (the official SDK
``Client``, one session per path; ``--mode legacy`` for 2025-11-25 sessions, ``auto`` for 2026-07-28
single exchanges). Each gateway call does the whole job: SVID verify, grant token verify, grant/task
reads, scope check, Cedar, the decision's audit write, the upstream call, the effect's audit write
and the observation of the result (after the answer).

The paths take turns call by call, so each call finds its processes' code and data pushed out of
the CPU's caches by the other paths' processes (on this 2-core machine that costs a gateway about
as much CPU again as its work). ``--block N`` has each path make N calls in a row before the next
path's turn: still interleaved, still paired call by call, but a path's processes stay warm as
they do when one gateway serves its agents' calls back to back. Quote both.

Prints, per path, p50/p95/p99, the added latency (the median of the paired differences: each
call minus the direct call to the same kind of upstream made in the same round), the ratio of
the medians and the proxy process's CPU per call (``/proc``, every thread: less sensitive to a
loaded machine than latency; for the remote path the gateway's, with serve's printed below the
table). Then the layers timed alone, in this process: the decision (``Authorizer.enforce``), the
effect write, and shaping the result for the agent. Quote figures measured in one run, with the
load average printed beside them.

To compare with another checkout in the same run, ``--baseline-src`` names its ``src``
directory (``git archive main src | tar -x -C /tmp/main``): its lean gateways are measured
beside this tree's, interleaved, and so is its remote-decision pair (its serve and its gateway,
on the same data directory). ``--lean-only`` leaves out the SDK paths, the bare proxy and the
remote pairs; ``--remote-only`` measures only the HTTP upstream direct and the remote pairs.
``--profile DIR`` has each lean gateway write a cProfile ``pstats`` of its whole life (start
included) to DIR when it stops, timed in its event loop thread's CPU time (nearly all of a
gateway's CPU: wall time would charge a socket write for the other processes it lets run); for
where the CPU goes without cProfile's own cost, sample a gateway (or serve) with ``py-spy record
--pid`` instead.

    .venv/bin/python bench/mcp_gateway.py [--calls 1000] [--warmup 100] [--block 1]
        [--mode auto|legacy] [--lean-only | --remote-only] [--baseline-src DIR] [--profile DIR]
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
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from pathlib import Path
from shutil import copytree
from typing import Any

import anyio
import httpx2
import yaml
from _servers import free_port, processes_cpu, stop
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from tether.core.identity import Workload
from tether.core.ids import DecisionId
from tether.core.scope import ActionKind, Scope
from tether.core.secret import Secret
from tether.core.task import Intent
from tether.credentials.secrets import SecretStore
from tether.runtime import Runtime, RuntimeConfig, dev_issuer, open_runtime, packaged_policies

TOKEN = "bench-upstream-token"
#: Where a gateway process writes its profile (pstats), when set (``--profile``).
PROFILE_ENV = "TETHER_BENCH_PROFILE"


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


def echo_server() -> Any:
    """The upstream: one ``echo`` tool answering its ``text``."""
    import mcp_types as types
    from mcp.server import Server, ServerRequestContext

    on_list_tools = echo_listing("echo")

    async def on_call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        text = str((params.arguments or {}).get("text", ""))
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

    return Server("bench", on_list_tools=on_list_tools, on_call_tool=on_call_tool)


def serve_upstream(port: int) -> None:
    import uvicorn

    app = echo_server().streamable_http_app(json_response=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def serve_stdio_upstream() -> None:
    from mcp.server.stdio import stdio_server

    server = echo_server()

    async def run() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(run)


def _exit_quietly(*_: object) -> None:
    raise SystemExit(0)


def serve_gateway(port: int, config: str, data: str, policies: str, lean: bool) -> None:
    """A gateway as ``tether mcp-gateway`` runs one (its app and uvicorn settings), on its
    lean path or with every request through the SDK's transport. With ``PROFILE_ENV`` set, the
    process's calls are profiled (cProfile) and written there as pstats when it stops."""
    import uvicorn

    profile_to = os.environ.get(PROFILE_ENV, "")
    profiler = None
    if profile_to:
        import cProfile
        import signal

        # uvicorn raises the SIGTERM it caught again once shut down: end in ``finally`` then.
        signal.signal(signal.SIGTERM, _exit_quietly)
        # The event loop thread's CPU time, not wall time (see the module docstring).
        profiler = cProfile.Profile(time.thread_time)
        profiler.enable()

    from tether.logs import configure_logging
    from tether.mcp import http_app, load_config, open_gateway

    # As `tether mcp-gateway` logs by default: a line per decision at info, written off the loop.
    configure_logging("info", json=True, capture_stdlib=True, queued=True)

    env = {k: v for k, v in os.environ.items() if k != "TETHER_ENV"}
    runtime = open_runtime(
        RuntimeConfig(data_dir=Path(data), policy_dir=Path(policies), environ=env)
    )
    try:
        # As `tether mcp-gateway`: the heap kept out of full collections (tether.heap). A
        # baseline's gateway may predate that.
        kept = {"heap": heap_freezer()} if _takes_heap(open_gateway) else {}
        gateway = open_gateway(load_config(Path(config)), runtime, lean=lean, **kept)
        uvicorn.run(
            http_app(gateway, lean=lean),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            log_config=None,
            access_log=False,
        )
    finally:
        runtime.close()
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile_to)


def heap_freezer() -> Any:
    from tether.heap import HeapFreezer

    return HeapFreezer()


def _takes_heap(open_gateway: Callable[..., Any]) -> bool:
    import inspect

    return "heap" in inspect.signature(open_gateway).parameters


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


def serve_forward(port: int, upstream_url: str) -> None:
    """The floor of any gateway on this stack: uvicorn reads the agent's HTTP request and the
    lean channel's client (:mod:`tether.mcp.lean_http`) sends it on, as it came, nothing parsed
    or decided; the upstream's answer goes back as it came."""
    import uvicorn

    from tether.mcp.lean_http import LeanHttp

    lean: list[LeanHttp] = []
    other = httpx2.AsyncClient(timeout=30)
    passed = (b"content-type", b"content-length", b"mcp-session-id", b"mcp-protocol-version")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()  # startup
            lean.append(LeanHttp(upstream_url))
            await send({"type": "lifespan.startup.complete"})
            await receive()  # shutdown
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in scope["headers"]
            if k not in (b"host", b"content-length", b"connection")
        }
        if scope["method"] == "POST":
            answer = await lean[0].post(headers, body)
        else:
            request = other.build_request(scope["method"], upstream_url, headers=headers)
            answer = await other.send(request, stream=True)
        content = await answer.aread()
        await answer.aclose()
        out = [(k.encode(), v.encode()) for k, v in answer.headers.items() if k.encode() in passed]
        out = [h for h in out if h[0] != b"content-length"]
        out.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": answer.status_code, "headers": out})
        await send({"type": "http.response.body", "body": content})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- the run -------------------------------------------------------------------------------------


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 300  # six servers start at once, on a machine maybe loaded
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


@dataclass(frozen=True)
class Path_:
    """One measured path: where its client connects, the tool it calls, the process whose CPU
    it costs (``None``: none between), the direct path it is compared with, and the decision
    service it asks (``None``: it decides in process)."""

    label: str
    tool: str
    url: str | None  # None: the stdio upstream, started by this client
    grant: str | None  # the agent's grant, sent with its SVID; None: no agent credentials
    pid: int | None
    baseline: int
    serve_pid: int | None = None


async def measure(
    paths: list[Path_],
    svid: str,
    calls: int,
    warmup: int,
    mode: str,
    block: int = 1,
) -> tuple[list[list[float]], list[float | None], list[float | None], list[str]]:
    """Times per path (ms), then CPU per call (ms) of each path's proxy and of its decision
    service, and the protocol revision of each session. Each path makes ``block`` calls in a
    row before the next path's turn (1: the paths take turns call by call)."""
    upstream = {"Authorization": f"Bearer {TOKEN}"}
    async with AsyncExitStack() as stack:
        clients: list[Client] = []
        for path in paths:
            if path.url is None:
                params = StdioServerParameters(
                    command=sys.executable, args=[__file__, "--serve-stdio-upstream"]
                )
                transport: Any = stdio_client(params)
            else:
                headers = (
                    upstream
                    if path.grant is None
                    else {"Authorization": f"Bearer {svid}", "X-Tether-Grant": path.grant}
                )
                http = await stack.enter_async_context(
                    httpx2.AsyncClient(headers=headers, timeout=30)
                )
                transport = streamable_http_client(path.url, http_client=http)
            client = Client(transport, cache=None, mode=mode)
            clients.append(await stack.enter_async_context(client))
        for path, client in zip(paths, clients, strict=True):
            if path.grant is not None:
                assert [t.name for t in (await client.list_tools()).tools] == [path.tool]
        versions = [client.protocol_version for client in clients]
        times: list[list[float]] = [[] for _ in paths]
        pids = [p.pid for p in paths] + [p.serve_pid for p in paths]
        cpu_start: list[float | None] = []
        for first in range(0, warmup + calls, block):
            if first == warmup:
                cpu_start = [None if pid is None else processes_cpu([pid]) for pid in pids]
            for n, (path, client) in enumerate(zip(paths, clients, strict=True)):
                for i in range(first, min(first + block, warmup + calls)):
                    args = {"text": f"call {i}"}
                    start = time.perf_counter()
                    result = await client.call_tool(path.tool, args)
                    elapsed = time.perf_counter() - start
                    if result.is_error or result.content[0].text != args["text"]:  # type: ignore[union-attr]
                        raise SystemExit(f"{path.label}: call failed: {result.content}")
                    if i >= warmup:
                        times[n].append(elapsed * 1000)
        cpu_end = [None if pid is None else processes_cpu([pid]) for pid in pids]
        cpu = [
            None if a is None or b is None else (b - a) * 1000 / calls
            for a, b in zip(cpu_start, cpu_end, strict=True)
        ]
        return times, cpu[: len(paths)], cpu[len(paths) :], versions


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


def start(stack: ExitStack, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``command``; its log (stderr) goes to a file of its own, as a server's would, not
    to this terminal."""
    log = stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115 (closed by the stack)
    process = subprocess.Popen(command, env=env, stderr=log)
    stack.callback(stop, process)
    return process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument(
        "--block",
        type=int,
        default=1,
        help="calls each path makes in a row before the next path's turn (default 1: the paths "
        "take turns call by call, so each call finds its processes' caches cooled by the others)",
    )
    parser.add_argument(
        "--mode",
        choices=("auto", "legacy"),
        default="auto",
        help="the client's protocol: auto (2026-07-28) or legacy (2025-11-25 sessions)",
    )
    parser.add_argument(
        "--lean-only",
        action="store_true",
        help="measure only the direct paths and the gateways' lean paths (and the baseline's)",
    )
    parser.add_argument(
        "--remote-only",
        action="store_true",
        help="measure only the HTTP upstream direct and the remote-decision pairs",
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="a checkout's src directory (e.g. `git archive main src`): its gateway's lean path "
        "is measured beside this tree's, in the same run",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="a directory: each lean gateway writes its cProfile pstats there when it stops",
    )
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-stdio-upstream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--serve-forward", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--serve-gateway", nargs=5, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.block < 1 or options.warmup % options.block:
        parser.error("--block must be at least 1 and divide --warmup")
    if options.serve_upstream:
        serve_upstream(options.serve_upstream)
        return
    if options.serve_stdio_upstream:
        serve_stdio_upstream()
        return
    if options.serve_bare:
        serve_bare(int(options.serve_bare[0]), options.serve_bare[1])
        return
    if options.serve_forward:
        serve_forward(int(options.serve_forward[0]), options.serve_forward[1])
        return
    if options.serve_gateway:
        port, config, data_dir, policy_dir, lean = options.serve_gateway
        serve_gateway(int(port), config, data_dir, policy_dir, lean != "sdk")
        return

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        root = Path(tmp)
        data = root / "data"
        env = {k: v for k, v in os.environ.items() if k != "TETHER_ENV"}
        # The example policies permit nothing on the echo tools: add one policy for them.
        policies = root / "policies"
        copytree(packaged_policies(), policies)
        (policies / "bench.cedar").write_text(
            "".join(
                f'@id("bench-{name}")\npermit (principal, action == Action::"read", '
                f'resource == Tool::"{name}.echo");\n'
                for name in ("bench", "local")
            )
        )
        config = RuntimeConfig(data_dir=data, policy_dir=policies, environ=env)
        runtime = open_runtime(config)
        svid = dev_issuer(config).mint_svid("bench", audience="tether", now=runtime.clock.now())
        workload = runtime.verifier.verify(svid, runtime.clock.now())
        scopes = [
            Scope.from_json({"tool": tool, "actions": ["read"]})
            for tool in ("bench.echo", "local.echo")
        ]
        intent = Intent("bench", "measure gateway overhead", "user:bench")
        grant = runtime.tasks.open_task(workload, intent, scopes, 3600).token
        # A task of its own for the layers, so their decisions do not touch the measured one.
        alone = runtime.tasks.open_task(workload, intent, scopes, 3600).token
        # The remote-decision path: a task of its own, and the gateway's own identity.
        remote_grant = runtime.tasks.open_task(workload, intent, scopes, 3600).token
        base_remote_grant = runtime.tasks.open_task(workload, intent, scopes, 3600).token
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

        up_port, bare_port = free_port(), free_port()
        direct_url = f"http://127.0.0.1:{up_port}/mcp"
        upstream = start(stack, [sys.executable, __file__, "--serve-upstream", str(up_port)], env)
        wait_for_port(up_port, upstream, "the upstream")
        forward_port = free_port()
        forward = start(
            stack, [sys.executable, __file__, "--serve-forward", str(forward_port), direct_url], env
        )
        bare = None
        if not options.lean_only and not options.remote_only:
            bare = start(
                stack, [sys.executable, __file__, "--serve-bare", str(bare_port), direct_url], env
            )
        # The echo tool never changes: descriptors are re-read when the upstream says so
        # (pin_check on_change), as for any upstream declaring tools.listChanged; an upstream
        # checked each_call costs one more tools/list round trip per call.
        fronted = {
            "bench": {
                "url": direct_url,
                "credential": {"secret": "bench-token"},
                "pin_check": "on_change",
            },
            "local": {
                "command": sys.executable,
                "args": [__file__, "--serve-stdio-upstream"],
                "pin_check": "on_change",
            },
        }
        gateways: dict[tuple[str, str], tuple[int, subprocess.Popen[bytes]]] = {}
        ways = ["lean"] if options.lean_only else ["sdk", "lean"]
        if options.remote_only:
            ways = []
        elif options.baseline_src is not None:
            ways.append("base")

        def gateway_env(name: str, way: str) -> dict[str, str]:
            """The gateway's environment: the baseline's source first on the path for
            ``base``; where to write its profile when asked."""
            own = dict(env)
            if way == "base":
                src = str(options.baseline_src.resolve())
                own["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
            if options.profile is not None and way != "sdk":
                options.profile.mkdir(parents=True, exist_ok=True)
                own[PROFILE_ENV] = str(options.profile.resolve() / f"{name}-{way}.pstats")
            return own

        for name, upstream_config in fronted.items():
            config_file = root / f"gateway-{name}.yaml"
            config_file.write_text(
                yaml.safe_dump(
                    {
                        "upstreams": {name: upstream_config},
                        "tools": {f"{name}.echo": {"action": "read"}},
                    }
                )
            )
            for way in ways:
                port = free_port()
                serve = (str(port), str(config_file), str(data), str(policies), way)
                command = [sys.executable, __file__, "--serve-gateway", *serve]
                gateways[name, way] = port, start(stack, command, gateway_env(name, way))
        # The remote-decision pair: serve on the same data directory, and a gateway (lean, its
        # default) in front of the HTTP upstream with a data directory of its own.
        # With --baseline-src, the baseline's own pair beside it (its serve on the same data).
        pairs: dict[str, tuple[int, subprocess.Popen[bytes], subprocess.Popen[bytes]]] = {}
        if not options.lean_only:
            if bare is not None:
                wait_for_port(bare_port, bare, "the bare proxy")
            for way in ["lean", "base"] if options.baseline_src is not None else ["lean"]:
                serve_port, remote_port = free_port(), free_port()
                tether_serve = [
                    *(sys.executable, "-m", "tether", "serve"),
                    *("--data-dir", str(data), "--policies", str(policies)),
                    *("--port", str(serve_port), "--log-level", "warning"),
                    *("--gateway-ids", gateway_id),
                ]
                pdp_server = start(stack, tether_serve, gateway_env("serve", way))
                remote_gateway = [
                    *(sys.executable, "-m", "tether", "mcp-gateway"),
                    *("--gateway-config", str(root / "gateway-bench.yaml")),
                    *("--data-dir", str(remote_data)),
                    *("--pdp-url", f"http://127.0.0.1:{serve_port}"),
                    *("--gateway-svid-file", str(root / "gateway.jwt")),
                    *("--port", str(remote_port), "--log-level", "warning"),
                ]
                remote = start(stack, remote_gateway, gateway_env("remote", way))
                wait_for_port(serve_port, pdp_server, "tether serve")
                wait_for_port(remote_port, remote, "the remote-decision gateway")
                pairs[way] = remote_port, remote, pdp_server
        for (name, way), (port, process) in gateways.items():
            wait_for_port(port, process, f"the gateway ({name}, {way})")

        def through(label: str, name: str, way: str, baseline: int) -> Path_:
            port, process = gateways[name, way]
            url = f"http://127.0.0.1:{port}/mcp"
            return Path_(label, f"{name}.echo", url, grant, process.pid, baseline)

        def gateways_for(name: str, baseline: int) -> list[Path_]:
            measured = (
                [] if options.lean_only else [through("gateway, SDK path", name, "sdk", baseline)]
            )
            measured.append(through("gateway, lean path", name, "lean", baseline))
            if options.baseline_src is not None:
                measured.append(through("  baseline's lean path", name, "base", baseline))
            return measured

        wait_for_port(forward_port, forward, "the HTTP forward")
        forward_url = f"http://127.0.0.1:{forward_port}/mcp"
        http_paths = [
            Path_("HTTP upstream, direct", "echo", direct_url, None, None, 0),
            Path_("HTTP forward, no MCP", "echo", forward_url, None, forward.pid, 0),
        ]
        if bare is not None:
            bare_url = f"http://127.0.0.1:{bare_port}/mcp"
            http_paths.append(
                Path_("bare forward, no tether", "bench.echo", bare_url, None, bare.pid, 0)
            )
        if ways:
            http_paths.extend(gateways_for("bench", 0))
        for way, (remote_port, remote, pdp_server) in pairs.items():
            http_paths.append(
                Path_(
                    "gateway, decided by serve" if way == "lean" else "  baseline's, by serve",
                    "bench.echo",
                    f"http://127.0.0.1:{remote_port}/mcp",
                    remote_grant if way == "lean" else base_remote_grant,
                    remote.pid,
                    0,
                    serve_pid=pdp_server.pid,
                )
            )
        stdio = len(http_paths)
        paths = http_paths
        if ways:
            paths = [
                *http_paths,
                Path_("stdio upstream, direct", "echo", None, None, None, stdio),
                *gateways_for("local", stdio),
            ]
        load = os.getloadavg()[0]
        times, cpu, serve_cpu, versions = anyio.run(
            measure, paths, svid, options.calls, options.warmup, options.mode, options.block
        )
        load = max(load, os.getloadavg()[0])

    print(
        f"tools/call on a trivial tool, loopback, {options.calls} calls per path, interleaved "
        f"{'call by call' if options.block == 1 else f'in blocks of {options.block}'}; "
        f"protocol {', '.join(sorted(set(versions)))}; {os.cpu_count()} cores, load "
        f"average up to {load:.1f} during the run"
    )
    print(
        f"{'path':<26}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'added p50':>11}{'ratio':>8}"
        f"{'proxy CPU ms/call':>19}"
    )
    for n, (path, values) in enumerate(zip(paths, times, strict=True)):
        direct = times[path.baseline]
        line = (
            f"{path.label:<26}{statistics.median(values):>9.3f}"
            f"{percentile(values, 0.95):>9.3f}{percentile(values, 0.99):>9.3f}"
        )
        if n != path.baseline:
            added = [v - d for v, d in zip(values, direct, strict=True)]
            ratio = statistics.median(values) / statistics.median(direct)
            line += f"{statistics.median(added):>11.3f}{ratio:>7.2f}x"
        else:
            line += " " * 19
        used = cpu[n]
        print(line + (f"{used:>19.3f}" if used is not None else ""))
    for path, used in zip(paths, serve_cpu, strict=True):
        if used is not None:
            print(f"  tether serve's CPU per call, {path.label.strip()}: {used:.3f} ms")
    print("layers timed alone in this process (median per call):")
    for name, spent in alone_us.items():
        print(f"  {name:<40}{spent / 1000:>8.3f} ms")


if __name__ == "__main__":
    main()
