"""``tether mcp-gateway`` and ``tether mcp``: run the MCP gateway, review pins, hold secrets."""

from __future__ import annotations

import getpass
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import anyio
import typer
import uvicorn

from tether.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    PolicyDir,
    StoreUrl,
    console,
    err_console,
    fail,
    store_url_of,
    tether_errors,
)
from tether.cli.exits import ExitCode
from tether.cli.output import AsJson, Column, print_json, print_table
from tether.cli.serve import LogFormat
from tether.core.audit import AuditKind
from tether.core.ids import IdFactory
from tether.core.secret import Secret
from tether.credentials.secrets import SecretStore
from tether.logs import configure_logging, get_logger, wants_json
from tether.mcp.callers import GrantReader, stdio_caller
from tether.mcp.config import load_config
from tether.mcp.pins import PinStore
from tether.mcp.recording import GatewayAudit, pinned_body
from tether.mcp.server import MCP_PATH, default_pins_path, http_app, open_gateway, serve_stdio
from tether.runtime import RuntimeConfig, open_runtime, open_store, packaged_policies
from tether.service.clock import SystemClock

log = get_logger("tether.mcp")
app = typer.Typer(help="The MCP gateway's tool pins and upstream secrets.", no_args_is_help=True)
pins_app = typer.Typer(help="Pinned MCP tool descriptors (OWASP ASI04).", no_args_is_help=True)
secrets_app = typer.Typer(help="Secrets the gateway injects into upstreams.", no_args_is_help=True)
app.add_typer(pins_app, name="pins")
app.add_typer(secrets_app, name="secrets")

MAX_SECRET_INPUT = 16 * 1024

PinsFile = Annotated[
    Path | None,
    typer.Option(
        "--pins", help="The pins file (default: <data-dir>/mcp-pins.json).", dir_okay=False
    ),
]


class Transport(StrEnum):
    HTTP = "http"
    STDIO = "stdio"


def mcp_gateway(
    config: Annotated[
        Path,
        typer.Option("--config", "-c", help="Gateway config (YAML).", exists=True, dir_okay=False),
    ],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    policies: PolicyDir = None,
    transport: Annotated[
        Transport,
        typer.Option(
            "--transport",
            "-t",
            help="http: streamable HTTP at /mcp, agents send 'Authorization: Bearer <SVID>' "
            "and 'X-Tether-Grant: <grant>'. stdio: one agent, TETHER_SVID and TETHER_GRANT "
            "from the environment.",
        ),
    ] = Transport.HTTP,
    host: Annotated[str, typer.Option(help="Address to listen on (http).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (http).")] = 8471,
    pins: PinsFile = None,
    trust_bundle: Annotated[
        Path | None,
        typer.Option(help="SPIFFE JWT trust bundle (JWKS) to verify agent SVIDs.", dir_okay=False),
    ] = None,
    oidc_issuer: Annotated[
        str | None, typer.Option(help="Accept OIDC tokens from this issuer.")
    ] = None,
    oidc_jwks: Annotated[
        str | None, typer.Option(help="The OIDC issuer's JWKS file or URL.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
    log_format: Annotated[
        LogFormat,
        typer.Option(
            help="json (one object per line), console, or auto: json unless stderr is a terminal."
        ),
    ] = LogFormat.AUTO,
    metrics: Annotated[
        bool, typer.Option(help="Serve GET /metrics (http; Prometheus text, no credentials).")
    ] = True,
    store_url: StoreUrl = None,
) -> None:
    """Front MCP servers: filter tools/list, decide every tools/call, record effects."""
    json_logs = wants_json(log_format.value)
    # To stderr: with --transport stdio, stdout is the MCP channel.
    configure_logging(log_level, json=json_logs, capture_stdlib=True)
    _run_gateway(
        config,
        data_dir,
        policies,
        transport,
        host,
        port,
        pins,
        trust_bundle,
        oidc_issuer,
        oidc_jwks,
        store_url_of(store_url),
        json_logs=json_logs,
        metrics=metrics,
    )


def _run_gateway(
    config: Path,
    data_dir: Path,
    policies: Path | None,
    transport: Transport,
    host: str,
    port: int,
    pins: Path | None,
    trust_bundle: Path | None,
    oidc_issuer: str | None,
    oidc_jwks: str | None,
    store_url: str | None = None,
    *,
    json_logs: bool = False,
    metrics: bool = True,
) -> None:
    with tether_errors():
        gateway_config = load_config(config)
        runtime = open_runtime(
            RuntimeConfig(
                data_dir=data_dir,
                policy_dir=policies or packaged_policies(),
                environ=dict(os.environ),
                trust_bundle=trust_bundle,
                oidc_issuer=oidc_issuer,
                oidc_jwks=oidc_jwks,
                store_url=store_url,
                metrics=metrics,
            )
        )
    try:
        with tether_errors():
            gateway = open_gateway(gateway_config, runtime, pins=pins)
            if transport is Transport.STDIO:
                caller = stdio_caller(
                    os.environ,
                    runtime.verifier,
                    GrantReader(runtime.signer, runtime.store, runtime.clock),
                )
        if transport is Transport.STDIO:
            # stdout is the MCP channel: everything else goes to stderr.
            err_console.print(
                f"tether MCP gateway on stdio for {caller.workload.id}", highlight=False
            )
            anyio.run(serve_stdio, gateway, caller)
            return
        upstreams = ", ".join(u.name for u in gateway_config.upstreams)
        if json_logs:  # stderr stays one JSON object per line
            log.info(
                "gateway_listening",
                url=f"http://{host}:{port}{MCP_PATH}",
                upstreams=upstreams,
                pins=str(gateway.pins.path),
            )
        else:
            err_console.print(
                f"tether MCP gateway on http://{host}:{port}{MCP_PATH}  upstreams "
                f"{upstreams}  pins {gateway.pins.path}",
                highlight=False,
            )
        uvicorn.run(
            http_app(gateway, host=host),
            host=host,
            port=port,
            log_level="warning",
            log_config=None,
            access_log=False,
        )
    finally:
        runtime.close()


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


@pins_app.command("approve")
def pins_approve(
    tool: Annotated[str, typer.Argument(help="The tool, as <upstream>.<tool>.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    pins: PinsFile = None,
) -> None:
    """Re-pin a tool whose descriptor changed, after reviewing it; the gateway serves it again."""
    clock = SystemClock()
    with tether_errors():
        old, new = _pin_store(data_dir, pins).approve(tool, clock.now())
        if (data_dir / "tether.db").exists():
            store = open_store(data_dir)
            try:
                GatewayAudit(store, clock, IdFactory(os.urandom)).append(
                    AuditKind.TOOL_PINNED, pinned_body(tool, new, "operator_approved", old)
                )
            finally:
                store.close()
    console.print(f"approved {tool}: pinned {new[:16]} (was {old[:16]})", highlight=False)


# -- secrets ------------------------------------------------------------------------------------


def _read_secret() -> Secret:
    if sys.stdin.isatty():
        value = getpass.getpass("secret value (not echoed): ")
    else:
        value = sys.stdin.read(MAX_SECRET_INPUT + 1)
        if len(value) > MAX_SECRET_INPUT:
            fail(f"a secret is at most {MAX_SECRET_INPUT} bytes", "invalid_field")
        value = value.rstrip("\r\n")
    if not value:
        fail("no secret value on standard input", "invalid_field")
    return Secret(value)


@secrets_app.command("set")
def secrets_set(
    name: Annotated[
        str, typer.Argument(help="The secret's name, as the config's credential.secret.")
    ],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Store a secret read from standard input (never from the command line), encrypted."""
    value = _read_secret()
    with tether_errors():
        SecretStore(data_dir).set(name, value)
    console.print(f"stored secret {name!r}", highlight=False)


@secrets_app.command("list")
def secrets_list(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: AsJson = False) -> None:
    """Show the names of stored secrets (never their values)."""
    with tether_errors():
        store = SecretStore(data_dir)
        rows = [[name, store.updated_at(name) or ""] for name in store.names()]
    if as_json:
        print_json([{"name": name, "updated_at": at} for name, at in rows])
        return
    print_table(
        f"secrets ({store.path})",
        [Column("name", key=True), Column("updated at")],
        ([name, at[:19]] for name, at in rows),
    )


@secrets_app.command("delete")
def secrets_delete(
    name: Annotated[str, typer.Argument(help="The secret's name.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Remove a secret."""
    with tether_errors():
        removed = SecretStore(data_dir).delete(name)
    if not removed:
        fail(f"no secret named {name!r}", "not_found", ExitCode.NOT_FOUND)
    console.print(f"deleted secret {name!r}", highlight=False)
