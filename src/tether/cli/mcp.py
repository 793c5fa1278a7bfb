"""``tether mcp-gateway`` and ``tether mcp pins``: run the MCP gateway, review its tool pins.

The upstreams' secrets are ``tether secrets`` (:mod:`tether.cli.secrets`), one store for the
gateway and the egress proxy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import anyio
import typer

from tether.cli.common import console, err_console, fail, tether_errors
from tether.cli.config_schema import Transport, option, redact_url
from tether.cli.output import AsJson, Column, print_json, print_table
from tether.cli.server_options import (
    DEFAULT_DATA_DIR,
    DataDir,
    Shared,
    blank_is_none,
    with_shared_options,
)
from tether.core.audit import AuditKind
from tether.core.ids import IdFactory
from tether.core.scope import JSONValue
from tether.heap import HeapFreezer
from tether.logs import configure_logging, flush_logs, get_logger
from tether.mcp.callers import stdio_caller
from tether.mcp.config_file import load_config
from tether.mcp.gateway import Gateway
from tether.mcp.pdp_remote import DEFAULT_TIMEOUT_SECONDS, RemoteDecisionPoint, remote_deps
from tether.mcp.pdp_remote import svid_file as svid
from tether.mcp.pins import PinStore
from tether.mcp.recording import GatewayAudit, pinned_body
from tether.mcp.server import MCP_PATH, default_pins_path, http_app, open_gateway, serve_stdio
from tether.runtime import Runtime, open_runtime, open_store
from tether.service.clock import SystemClock

log = get_logger("tether.mcp")
app = typer.Typer(help="The MCP gateway's tool pins.", no_args_is_help=True)
pins_app = typer.Typer(help="Pinned MCP tool descriptors (OWASP ASI04).", no_args_is_help=True)
app.add_typer(pins_app, name="pins")

PinsFile = Annotated[Path | None, option("mcp_gateway.pins", "--pins", dir_okay=False)]


@with_shared_options
def mcp_gateway(
    shared: Shared,
    gateway_config: Annotated[
        Path | None,
        option("mcp_gateway.gateway_config", "--gateway-config", "-g", dir_okay=False),
    ] = None,
    transport: Annotated[
        Transport, option("mcp_gateway.transport", "--transport", "-t")
    ] = Transport.HTTP,
    host: Annotated[str, option("mcp_gateway.host", "--host")] = "127.0.0.1",
    port: Annotated[int, option("mcp_gateway.port", "--port")] = 8471,
    pins: PinsFile = None,
    metrics: Annotated[bool, option("mcp_gateway.metrics", "--metrics/--no-metrics")] = True,
    pdp_url: Annotated[
        str | None, option("mcp_gateway.pdp_url", "--pdp-url", show_default=False)
    ] = None,
    pdp_timeout: Annotated[
        float, option("mcp_gateway.pdp_timeout", "--pdp-timeout")
    ] = DEFAULT_TIMEOUT_SECONDS,
    gateway_svid_file: Annotated[
        Path | None,
        option("mcp_gateway.gateway_svid_file", "--gateway-svid-file", dir_okay=False),
    ] = None,
) -> None:
    """Front MCP servers: filter tools/list, decide every tools/call, record effects."""
    if gateway_config is None:
        fail(
            "which upstreams? give the gateway's file with --gateway-config FILE (or "
            "TETHER_GATEWAY_CONFIG, or mcp_gateway.gateway_config in tether.yaml)",
            "configuration_error",
        )
    json_logs = shared.json_logs
    # To stderr: with --transport stdio, stdout is the MCP channel.
    configure_logging(shared.log_level.value, json=json_logs, capture_stdlib=True, queued=True)
    pdp = blank_is_none(pdp_url)
    if pdp is not None and gateway_svid_file is None:
        fail(
            "deciding through tether serve, the gateway records its own audit events there "
            "under its own identity: give its SVID with --gateway-svid-file FILE (and list its "
            "SPIFFE ID in tether serve --gateway-ids)",
            "configuration_error",
        )
    remote = (pdp, pdp_timeout, gateway_svid_file) if pdp is not None else None
    _run_gateway(
        gateway_config,
        shared,
        transport,
        host,
        port,
        pins,
        json_logs=json_logs,
        metrics=metrics,
        remote=remote,
    )


def _run_gateway(
    config: Path,
    shared: Shared,
    transport: Transport,
    host: str,
    port: int,
    pins: Path | None,
    *,
    json_logs: bool = False,
    metrics: bool = True,
    remote: tuple[str, float, Path | None] | None = None,
) -> None:
    runtime: Runtime | None = None
    with tether_errors():
        gateway_config = load_config(config)
        if remote is None:
            runtime = open_runtime(shared.runtime_config(metrics=metrics))
    try:
        with tether_errors():
            if runtime is not None:
                gateway = open_gateway(gateway_config, runtime, pins=pins, heap=HeapFreezer())
            else:
                # Deciding through tether serve: no store, no keys; the data directory holds
                # only the upstreams' secrets and the pins.
                assert remote is not None
                url, timeout, svid = remote
                assert svid is not None  # required with --pdp-url (checked above)
                clock = SystemClock()
                deps = remote_deps(
                    url, shared.data_dir, os.environ, clock, svid, timeout=timeout, metrics=metrics
                )
                pins_path = pins or default_pins_path(shared.data_dir)
                gateway = Gateway(gateway_config, deps, PinStore(pins_path), heap=HeapFreezer())
        if transport is Transport.STDIO:
            with tether_errors():
                anyio.run(_serve_stdio, gateway)
            return
        upstreams = ", ".join(u.name for u in gateway_config.upstreams)
        decided = "in process" if remote is None else f"by {redact_url(remote[0])}"
        if json_logs:  # stderr stays one JSON object per line
            log.info(
                "gateway_listening",
                url=f"http://{host}:{port}{MCP_PATH}",
                upstreams=upstreams,
                pins=str(gateway.pins.path),
                decisions=decided,
            )
        else:
            err_console.print(
                f"tether MCP gateway on http://{host}:{port}{MCP_PATH}  upstreams "
                f"{upstreams}  pins {gateway.pins.path}  decisions {decided}",
                highlight=False,
            )
        import uvicorn  # only over HTTP: a stdio gateway starts without it

        uvicorn.run(
            http_app(gateway, host=host),
            host=host,
            port=port,
            log_level="warning",
            log_config=None,
            access_log=False,
        )
    finally:
        if runtime is not None:
            runtime.close()
        flush_logs()  # a signal may end the process before atexit runs


async def _serve_stdio(gateway: Gateway) -> None:
    """Check the one agent's SVID and grant (``TETHER_SVID``, ``TETHER_GRANT``), then serve it."""
    pdp = gateway.deps.pdp
    caller = await stdio_caller(os.environ, pdp.verify, pdp.grant)
    # stdout is the MCP channel: everything else goes to stderr.
    err_console.print(f"tether MCP gateway on stdio for {caller.workload.id}", highlight=False)
    await serve_stdio(gateway, caller)


# -- pins ---------------------------------------------------------------------------------------


def _pin_store(data_dir: Path, pins: Path | None) -> PinStore:
    return PinStore(pins or default_pins_path(data_dir))


@pins_app.command("list")
def pins_list(
    data_dir: DataDir = DEFAULT_DATA_DIR, pins: PinsFile = None, as_json: AsJson = False
) -> None:
    """Show each pinned tool, and any changed descriptor waiting for approval."""
    with tether_errors():
        store = _pin_store(data_dir, pins)
        entries = store.entries()
    if as_json:
        print_json(
            [
                {
                    "tool": e.tool,
                    "state": "pinned" if e.pending_sha256 is None else "changed",
                    "sha256": e.sha256,
                    "pinned_at": e.pinned_at,
                    "pending_sha256": e.pending_sha256,
                    "pending_description": e.pending_description,
                }
                for e in entries
            ]
        )
        return
    if not entries:
        console.print(f"no pinned tools in {store.path}")
        return
    print_table(
        f"MCP tool pins ({store.path})",
        [
            Column("tool", key=True),
            Column("state"),
            Column("pinned sha256"),
            Column("pinned at"),
            Column("pending sha256"),
            Column("pending description"),
        ],
        (
            [
                e.tool,
                "pinned" if e.pending_sha256 is None else "changed: withheld",
                e.sha256[:16],
                e.pinned_at[:19],
                (e.pending_sha256 or "")[:16],
                (e.pending_description or "")[:60],
            ]
            for e in entries
        ),
        loud=[e.pending_sha256 is not None for e in entries],
    )


PdpUrl = Annotated[str | None, option("mcp_gateway.pdp_url", "--pdp-url", show_default=False)]
GatewaySvidFile = Annotated[
    Path | None, option("mcp_gateway.gateway_svid_file", "--gateway-svid-file", dir_okay=False)
]


@pins_app.command("approve")
def pins_approve(
    tool: Annotated[str, typer.Argument(help="The tool, as <upstream>.<tool>.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    pins: PinsFile = None,
    pdp_url: PdpUrl = None,
    gateway_svid_file: GatewaySvidFile = None,
) -> None:
    """Re-pin a tool whose descriptor changed, after reviewing it; the gateway serves it again.
    With --pdp-url (a gateway deciding through tether serve) the approval is recorded in
    serve's audit chain, under the gateway's SVID, before the pin changes."""
    clock = SystemClock()
    pdp = blank_is_none(pdp_url)
    with tether_errors():
        store_pins = _pin_store(data_dir, pins)
        if pdp is not None:
            if gateway_svid_file is None:
                fail("with --pdp-url, give the gateway's SVID with --gateway-svid-file FILE")
            entry = next((e for e in store_pins.entries() if e.tool == tool), None)
            if entry is not None and entry.pending_sha256 is not None:
                body = pinned_body(tool, entry.pending_sha256, "operator_approved", entry.sha256)
                anyio.run(_record_remotely, pdp, gateway_svid_file, clock, body)
        old, new = store_pins.approve(tool, clock.now())
        if pdp is None and (data_dir / "tether.db").exists():
            store = open_store(data_dir)
            try:
                GatewayAudit(store, clock, IdFactory(os.urandom)).append(
                    AuditKind.TOOL_PINNED, pinned_body(tool, new, "operator_approved", old)
                )
            finally:
                store.close()
    console.print(f"approved {tool}: pinned {new[:16]} (was {old[:16]})", highlight=False)


async def _record_remotely(
    url: str, svid_file: Path, clock: SystemClock, body: dict[str, JSONValue]
) -> None:
    """Post one gateway record to tether serve now; raise if it is not taken."""
    pdp = RemoteDecisionPoint(url, clock, svid(svid_file))
    try:
        event = {
            "event_id": IdFactory(os.urandom).gateway_event(),
            "kind": AuditKind.TOOL_PINNED.value,
            "agent": None,
            "body": body,
        }
        await pdp.call("POST", "/v1/gateway/events", svid(svid_file)(), 201, event)
    finally:
        await pdp.aclose()
