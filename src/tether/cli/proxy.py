"""``tether proxy``: the egress proxy for legacy HTTP systems (secret injection after an allow)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from tether.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    PolicyDir,
    StoreUrl,
    err_console,
    store_url_of,
    tether_errors,
)
from tether.logs import configure_logging
from tether.proxy import load_config, open_proxy
from tether.runtime import RuntimeConfig, open_runtime, packaged_policies


def proxy(
    config: Annotated[
        Path,
        typer.Option("--config", "-c", help="Proxy config (YAML).", exists=True, dir_okay=False),
    ],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    policies: PolicyDir = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port.")] = 8472,
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
    store_url: StoreUrl = None,
) -> None:
    """Forward agents' HTTP calls to legacy services: authorize each one, inject the service's
    secret, record the effect. Agents call http://HOST:PORT/<upstream>/<path> with
    'Authorization: Bearer <SVID>' and 'X-Tether-Grant: <grant>'."""
    configure_logging(log_level)
    with tether_errors():
        proxy_config = load_config(config)
        runtime = open_runtime(
            RuntimeConfig(
                data_dir=data_dir,
                policy_dir=policies or packaged_policies(),
                environ=dict(os.environ),
                trust_bundle=trust_bundle,
                oidc_issuer=oidc_issuer,
                oidc_jwks=oidc_jwks,
                store_url=store_url_of(store_url),
            )
        )
    try:
        with tether_errors():
            _, app = open_proxy(proxy_config, runtime)
        err_console.print(
            f"tether egress proxy on http://{host}:{port}/<upstream>/<path>  upstreams "
            f"{', '.join(sorted(proxy_config.upstreams))}  routes {len(proxy_config.routes)}",
            highlight=False,
        )
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        runtime.close()
