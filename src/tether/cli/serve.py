"""``tether serve``: the HTTP API, on the embedded SQLite store or, for several replicas, on one
PostgreSQL database (``--store-url`` / ``TETHER_DATABASE_URL``)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from tether.api.app import create_app
from tether.cli.common import DEFAULT_DATA_DIR, DataDir, PolicyDir, console, tether_errors
from tether.logs import configure_logging, get_logger
from tether.runtime import Runtime, RuntimeConfig, open_runtime, packaged_policies

log = get_logger("tether.serve")

StoreUrl = Annotated[
    str | None,
    typer.Option(
        "--store-url",
        envvar="TETHER_DATABASE_URL",
        help="The store's database, e.g. postgresql://tether:PASSWORD@db:5432/tether: every "
        "replica names the same one and shares the data directory's keys. Prefer the env var "
        "(a command line is visible to other users). Default: SQLite in the data directory.",
    ),
]


def store_url_of(value: str | None) -> str | None:
    """The ``--store-url`` given, or ``None`` (SQLite in the data directory) when it is empty."""
    if value is None:
        return None
    return value.strip() or None


class Housekeeping:
    """Background work of a server: reap expired tasks, pick up changed policies."""

    def __init__(self, runtime: Runtime, interval: float) -> None:
        self._runtime = runtime
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tether-housekeeping", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._runtime.policy.check_for_changes()
                ended = self._runtime.tasks.reap_expired()
                if ended:
                    log.info("tasks_expired", count=ended)
            except Exception as error:  # keep the server alive; the next sweep retries
                log.error("housekeeping_failed", error_type=type(error).__name__)


def serve(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    policies: PolicyDir = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8470,
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
    approval_webhook: Annotated[
        str | None, typer.Option(help="POST pending approvals to this URL (a chat bridge).")
    ] = None,
    approver_oidc_issuer: Annotated[
        str | None,
        typer.Option(help="Approvers sign in with this OIDC issuer (aud tether-approver)."),
    ] = None,
    approver_oidc_jwks: Annotated[
        str | None, typer.Option(help="That issuer's JWKS file or https URL.")
    ] = None,
    public_url: Annotated[
        str | None, typer.Option(help="This server's public URL, for links in notifications.")
    ] = None,
    housekeeping_interval: Annotated[
        float, typer.Option(min=0.2, help="Seconds between sweeps.")
    ] = 2.0,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
    store_url: StoreUrl = None,
) -> None:
    """Run the tether HTTP API (embedded SQLite unless --store-url; dev identity issuer unless
    production)."""
    configure_logging(log_level)
    with tether_errors():
        config = RuntimeConfig(
            data_dir=data_dir,
            policy_dir=policies or packaged_policies(),
            environ=dict(os.environ),
            trust_bundle=trust_bundle,
            oidc_issuer=oidc_issuer,
            oidc_jwks=oidc_jwks,
            approval_webhook=approval_webhook,
            approver_oidc_issuer=approver_oidc_issuer,
            approver_oidc_jwks=approver_oidc_jwks,
            public_url=public_url,
            store_url=store_url_of(store_url),
        )
        runtime = open_runtime(config)
    chores = Housekeeping(runtime, housekeeping_interval)
    chores.start()
    console.print(
        f"tether listening on http://{host}:{port}  policies {config.policy_dir} "
        f"(revision {runtime.policy.revision[:12]})  data {data_dir}  "
        f"store {runtime.store.backend}",
        highlight=False,
    )
    try:
        uvicorn.run(
            create_app(runtime.api_deps),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
        )
    finally:
        chores.stop()
        runtime.close()
