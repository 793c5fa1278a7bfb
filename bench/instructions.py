"""User-space instructions per decision and per MCP gateway call, counted in process by valgrind's
cachegrind: unlike time, a count does not move with the machine's load, so two versions of the
code compare on a shared machine where a change of a few percent drowns in the noise of
``bench/throughput.py`` or ``bench/mcp_gateway.py``.

Two drivers, each run as a child process of this script with the tree's ``src`` first on the path:

- ``authorize``: ``tether serve``'s ASGI app in process (as ``tether serve`` builds it, logging a
  JSON line per decision at ``info``, written off the loop), 16 tasks each sending
  ``POST /v1/authorize`` in turn as raw ASGI calls (no sockets): the hot path with its group
  commit on the event loop, on SQLite.
- ``gateway``: ``tether mcp-gateway``'s HTTP app in process (lean path), its streamable-HTTP
  upstream in a process of its own (not counted); one agent's ``tools/call`` replayed as raw ASGI
  calls, each decided, forwarded, answered, its effect and observation recorded.

Each driver runs twice, with N1 and N2 calls; the difference of the two counts over N2 - N1 is
the count per call, start-up and set-up cancelled out. Counts cover every thread of the driver's
process (the group commit's writer, the log writer, the WAL checkpointer), not the upstream's.

    .venv/bin/python bench/instructions.py [--baseline-src DIR] [--modes authorize,gateway]
        [--calls 160,960] [--gateway-calls 100,500]

Needs ``valgrind`` on the path (Debian: ``apt-get install valgrind``). A count takes a minute or
two: valgrind runs the interpreter some 50 times slower.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
CONCURRENT = 16
READ = {"tool": "crm.query", "action": "read", "dataset": "crm"}


async def asgi_call(app: Any, scope: dict[str, Any], body: bytes) -> tuple[int, bytes]:
    """One HTTP request through ``app`` as uvicorn would hand it over: its status and body."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # the client never leaves
        raise AssertionError("not reached")

    status, chunks = 0, []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def http_scope(path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    sent = {"host": "127.0.0.1:8000", "content-type": "application/json", **headers}
    sent["content-length"] = str(len(body))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in sent.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def lifespan(app: Any) -> Callable[[], Awaitable[None]]:
    """Start ``app``'s lifespan; return what stops it."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    started = await outbox.get()
    assert started["type"] == "lifespan.startup.complete", started

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task

    return stop


async def drive_authorize(calls: int, root: Path) -> None:
    from tether.cli.serve import build_app
    from tether.runtime import RuntimeConfig, dev_issuer, open_runtime

    config = RuntimeConfig(data_dir=root / "data", environ={})
    runtime = open_runtime(config)
    try:
        app = build_app(runtime)
        stop = await lifespan(app)
        svid = dev_issuer(config).mint_svid("analyst", audience="tether", now=runtime.clock.now())
        headers = {"Authorization": f"Bearer {svid}"}
        grants = []
        for _ in range(CONCURRENT):
            opened = json.dumps(
                {
                    "intent": {
                        "workflow": "support-triage",
                        "purpose": "count",
                        "on_behalf_of": "u:1",
                    },
                    "scopes": [{"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}],
                    "ttl_seconds": 3600,
                }
            ).encode()
            status, answer = await asgi_call(app, http_scope("/v1/tasks", opened, headers), opened)
            assert status == 201, answer
            grants.append(json.loads(answer)["grant"])

        async def agent(grant: str, n: int) -> None:
            body = json.dumps({"grant": grant, **READ}).encode()
            for _ in range(n):
                status, answer = await asgi_call(
                    app, http_scope("/v1/authorize", body, headers), body
                )
                assert status == 200 and b'"allow"' in answer, answer

        await asyncio.gather(*(agent(g, calls // CONCURRENT) for g in grants))
        await stop()
    finally:
        runtime.close()


async def drive_gateway(calls: int, root: Path) -> None:
    import yaml

    sys.path.insert(0, str(BENCH))
    import mcp_gateway as bench_gateway
    from _servers import free_port

    from tether.core.scope import Scope
    from tether.core.secret import Secret
    from tether.core.task import Intent
    from tether.credentials.secrets import SecretStore
    from tether.mcp import http_app, load_config, open_gateway
    from tether.runtime import RuntimeConfig, dev_issuer, open_runtime, packaged_policies

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "TETHER_ENV"}
    upstream = subprocess.Popen(
        [sys.executable, bench_gateway.__file__, "--serve-upstream", str(port)], env=env
    )
    try:
        bench_gateway.wait_for_port(port, upstream, "the upstream")
        policies = root / "policies"
        shutil.copytree(packaged_policies(), policies)
        (policies / "bench.cedar").write_text(
            '@id("bench-echo")\npermit (principal, action == Action::"read", '
            'resource == Tool::"bench.echo");\n'
        )
        config = RuntimeConfig(data_dir=root / "data", policy_dir=policies, environ=env)
        runtime = open_runtime(config)
        try:
            svid = dev_issuer(config).mint_svid("bench", audience="tether", now=runtime.clock.now())
            workload = runtime.verifier.verify(svid, runtime.clock.now())
            scopes = [Scope.from_json({"tool": "bench.echo", "actions": ["read"]})]
            grant = runtime.tasks.open_task(
                workload, Intent("bench", "count", "user:bench"), scopes, 3600
            ).token
            SecretStore(root / "data", environ=env).set("bench-token", Secret(bench_gateway.TOKEN))
            gateway_yaml = root / "gateway.yaml"
            gateway_yaml.write_text(
                yaml.safe_dump(
                    {
                        "upstreams": {
                            "bench": {
                                "url": f"http://127.0.0.1:{port}/mcp",
                                "credential": {"secret": "bench-token"},
                                "pin_check": "on_change",
                            }
                        },
                        "tools": {"bench.echo": {"action": "read"}},
                    }
                )
            )
            gateway = open_gateway(load_config(gateway_yaml), runtime, lean=True)
            app = http_app(gateway, lean=True)
            stop = await lifespan(app)
            headers = {
                "Authorization": f"Bearer {svid}",
                "X-Tether-Grant": grant,
                "Accept": "application/json, text/event-stream",
                "MCP-Protocol-Version": "2026-07-28",
                "Mcp-Method": "tools/call",
                "Mcp-Name": "bench.echo",
            }
            meta = {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "count", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {},
            }
            for n in range(calls):
                params = {"name": "bench.echo", "arguments": {"text": f"hi {n}"}, "_meta": meta}
                body = json.dumps(
                    {"jsonrpc": "2.0", "id": n + 1, "method": "tools/call", "params": params}
                ).encode()
                status, answer = await asgi_call(app, http_scope("/mcp", body, headers), body)
                assert status == 200 and f"hi {n}".encode() in answer, answer
            await stop()
        finally:
            runtime.close()
    finally:
        upstream.terminate()
        upstream.wait()


DRIVERS = {"authorize": drive_authorize, "gateway": drive_gateway}


def drive(mode: str, calls: int) -> None:
    """Run one driver in this process (the child valgrind counts)."""
    import uvloop

    from tether.logs import configure_logging

    # As `tether serve` and `tether mcp-gateway` log by default.
    configure_logging("info", json=True, capture_stdlib=True, queued=True)
    with tempfile.TemporaryDirectory() as tmp:
        uvloop.run(DRIVERS[mode](calls, Path(tmp)))


def count(src: Path, mode: str, calls: int) -> int:
    """Instructions of the whole driver process for ``calls`` calls, under cachegrind."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run(
        [
            *("valgrind", "--tool=cachegrind", "--cache-sim=no", "--trace-children=no"),
            "--cachegrind-out-file=/dev/null",
            *(sys.executable, __file__, "--drive", mode, str(calls)),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        raise SystemExit(f"{mode} ({src}) failed:\n{done.stderr[-3000:]}")
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def per_call(src: Path, mode: str, calls: tuple[int, int]) -> float:
    # Once without valgrind: the tree's bytecode compiled and cached before anything is counted.
    env = {**os.environ, "PYTHONPATH": str(src)}
    subprocess.run(
        [sys.executable, __file__, "--drive", mode, str(calls[0])],
        env=env,
        check=True,
        capture_output=True,
    )
    low, high = (count(src, mode, n) for n in calls)
    return (high - low) / (calls[1] - calls[0])


def pair(text: str) -> tuple[int, int]:
    low, high = (int(n) for n in text.split(","))
    if not 0 < low < high:
        raise argparse.ArgumentTypeError("two counts, the first smaller: N1,N2")
    return low, high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-src", type=Path, help="another tree's src directory")
    parser.add_argument("--modes", default="authorize,gateway")
    parser.add_argument("--calls", type=pair, default=(160, 960), help="authorizes: N1,N2")
    parser.add_argument("--gateway-calls", type=pair, default=(100, 500), help="calls: N1,N2")
    parser.add_argument("--drive", nargs=2, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.drive:
        drive(options.drive[0], int(options.drive[1]))
        return
    modes = [m for m in options.modes.split(",") if m]
    for mode in modes:
        if mode not in DRIVERS:
            raise SystemExit(f"unknown mode {mode!r}: choose from {', '.join(DRIVERS)}")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    trees = [("this tree", BENCH.parent / "src")]
    if options.baseline_src is not None:
        trees.append(("baseline", options.baseline_src.resolve()))
    print("user-space instructions per call (cachegrind), whole process, in process")
    print(
        f"{'':<12}"
        + "".join(f"{label:>16}" for label, _ in trees)
        + ("   ratio" if len(trees) > 1 else "")
    )
    for mode in modes:
        calls = options.calls if mode == "authorize" else options.gateway_calls
        counts = [per_call(src, mode, calls) for _, src in trees]
        line = f"{mode:<12}" + "".join(f"{c / 1e6:>15.3f}M" for c in counts)
        if len(counts) > 1:
            line += f"   {counts[0] / counts[1]:.3f}x"
        print(line, flush=True)


if __name__ == "__main__":
    main()
