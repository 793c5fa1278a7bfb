"""``tether agents``: the kill switch (OWASP ASI10), run by an operator on the server's store."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated

import typer

from tether.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    StoreUrl,
    console,
    open_existing_store,
    tether_errors,
)
from tether.cli.output import AsJson, Column, instant, print_json, print_table
from tether.core.ids import IdFactory
from tether.runtime import audit_mac
from tether.service.agents import AgentService
from tether.service.clock import SystemClock
from tether.service.recording import Recorder
from tether.store import SqlStore

app = typer.Typer(help="Revoke an agent everywhere at once (the kill switch), or restore it.")


def _service(path: Path, store_url: str | None) -> tuple[AgentService, SqlStore]:
    store, _ = open_existing_store(path, store_url)
    key_file = path / "keys" / "audit-hmac.key"
    key = key_file.read_bytes() if key_file.exists() else os.urandom(32)
    recorder = Recorder(IdFactory(os.urandom), audit_mac(key), frozenset())
    return AgentService(store=store, clock=SystemClock(), recorder=recorder), store


def operator_name() -> str:
    try:
        return f"operator:{getpass.getuser()}"
    except (KeyError, OSError):
        return "operator:unknown"


@app.command("revoke")
def revoke(
    agent: Annotated[str, typer.Argument(help="The agent's SPIFFE ID (or OIDC issuer#subject).")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why; kept in the audit log.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    store_url: StoreUrl = None,
    as_json: AsJson = False,
) -> None:
    """End every task the agent holds, and refuse it any new one, until restored."""
    with tether_errors():
        service, store = _service(data_dir, store_url)
        try:
            ended = service.revoke(agent, reason, operator_name())
        finally:
            store.close()
    if as_json:
        print_json({"agent": agent, "revoked": True, "tasks_ended": ended})
        return
    console.print(f"[bold red]revoked[/] {agent}: {ended} open task(s) ended", highlight=False)


@app.command("restore")
def restore(
    agent: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    store_url: StoreUrl = None,
    as_json: AsJson = False,
) -> None:
    """Let a revoked agent open tasks again."""
    with tether_errors():
        service, store = _service(data_dir, store_url)
        try:
            service.restore(agent, operator_name())
        finally:
            store.close()
    if as_json:
        print_json({"agent": agent, "revoked": False})
        return
    console.print(f"restored {agent}", highlight=False)


@app.command("list")
def list_revoked(
    data_dir: DataDir = DEFAULT_DATA_DIR, store_url: StoreUrl = None, as_json: AsJson = False
) -> None:
    """Revoked agents."""
    with tether_errors():
        service, store = _service(data_dir, store_url)
        try:
            rows = service.revoked()
        finally:
            store.close()
    if as_json:
        print_json([{"agent": a, "revoked_at": at, "by": by, "reason": r} for a, at, r, by in rows])
        return
    print_table(
        "revoked agents",
        [Column("agent", key=True), Column("revoked at"), Column("by"), Column("reason")],
        ([agent, instant(at), by, reason] for agent, at, reason, by in rows),
    )
