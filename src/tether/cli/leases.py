"""``tether leases``: list just-in-time credentials and end one, run by an operator."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from tether.cli.agents import operator_name
from tether.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    PolicyDir,
    StoreUrl,
    console,
    open_existing_store,
    tether_errors,
)
from tether.cli.output import AsJson, Column, instant, print_json, print_table
from tether.core.errors import ErrorCode, InvalidRequest
from tether.core.ids import IdFactory
from tether.core.lease import LeaseState, is_lease_id
from tether.credentials.downstream import load_downstreams
from tether.credentials.jwt_lease import ScopedJwtIssuer
from tether.identity.keys import SigningKey
from tether.runtime import (
    RuntimeConfig,
    audit_mac,
    lease_issuer_name,
    packaged_policies,
)
from tether.service.clock import SystemClock
from tether.service.leases import LeaseService
from tether.service.recording import Recorder
from tether.store.leases import SqlLeaseStore

app = typer.Typer(help="Just-in-time downstream credentials (leases): list, revoke.")


@contextmanager
def _service(
    data_dir: Path, policies: Path | None, store_url: str | None
) -> Iterator[LeaseService]:
    config = RuntimeConfig(data_dir=data_dir, policy_dir=policies or packaged_policies())
    store, _ = open_existing_store(data_dir, store_url)
    try:
        key_file = data_dir / "keys" / "audit-hmac.key"
        key = key_file.read_bytes() if key_file.exists() else os.urandom(32)
        lease_key = SigningKey.load_or_create(data_dir / "keys" / "lease-signing.pem")
        yield LeaseService(
            store=SqlLeaseStore(store),
            issuers=load_downstreams(
                config.policy_dir,
                signer=ScopedJwtIssuer(lease_key, lease_issuer_name(config)),
                environ=config.environ,
            ),
            clock=SystemClock(),
            recorder=Recorder(IdFactory(os.urandom), audit_mac(key), frozenset()),
            random_bytes=os.urandom,
            on_error=lambda event, lease, error: console.print(
                f"[yellow]{event}[/]: {error.message}", highlight=False
            ),
        )
    finally:
        store.close()


@app.command("list")
def list_leases(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    policies: PolicyDir = None,
    task: Annotated[str | None, typer.Option(help="Only this task's leases.")] = None,
    active: Annotated[bool, typer.Option("--active", help="Only active leases.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 100,
    as_json: AsJson = False,
    store_url: StoreUrl = None,
) -> None:
    """Leases, newest first (never the credentials themselves)."""
    with tether_errors(), _service(data_dir, policies, store_url) as leases:
        now = SystemClock().now()
        rows = (
            leases.for_task(task)
            if task
            else leases.recent(limit, LeaseState.ACTIVE if active else None)
        )
        shown = [x for x in rows if not active or x.state_at(now) is LeaseState.ACTIVE]
        if as_json:
            print_json([{**x.to_json(), "state": x.state_at(now).value} for x in shown])
            return
        table_rows: list[list[str]] = []
        for lease in shown:
            scope = f"{'/'.join(sorted(a.value for a in lease.scope.actions))} {lease.scope.tool}"
            table_rows.append(
                [
                    lease.lease_id,
                    lease.task_id,
                    lease.issuer_name,
                    scope + "".join(f" [{d}]" for d in sorted(lease.scope.datasets)),
                    lease.state_at(now).value,
                    instant(lease.expires_at.isoformat()),
                ]
            )
        print_table(
            "leases",
            [
                Column("lease", key=True),
                Column("task", key=True),
                Column("issuer"),
                Column("scope"),
                Column("state"),
                Column("expires"),
            ],
            table_rows,
        )


@app.command("revoke")
def revoke(
    lease_id: Annotated[str, typer.Argument(help="The lease id (lse_…).")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why; kept in the audit log.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    policies: PolicyDir = None,
    store_url: StoreUrl = None,
    as_json: AsJson = False,
) -> None:
    """End a lease now and remove its credential downstream (a database role is dropped)."""
    with tether_errors():
        if not is_lease_id(lease_id):
            raise InvalidRequest("not a tether lease id (lse_…)", code=ErrorCode.INVALID_FIELD)
        if not reason.strip() or len(reason) > 2000:
            raise InvalidRequest("give a reason of 1 to 2000 characters")
        with _service(data_dir, policies, store_url) as leases:
            ended = leases.revoke(lease_id, by=operator_name(), reason=reason)
    if as_json:
        print_json(ended.to_json())
        return
    console.print(f"lease {ended.lease_id}: {ended.state.value}", highlight=False)
