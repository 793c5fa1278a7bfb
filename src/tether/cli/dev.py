"""``tether dev``: the development identity issuer of the embedded default.

Imports stay light (no runtime, no store): ``tether dev svid`` runs in scripts and must start fast.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from tether.cli.common import DEFAULT_DATA_DIR, DataDir, tether_errors
from tether.identity.dev_issuer import DEFAULT_AUDIENCE, DEFAULT_TRUST_DOMAIN, open_dev_issuer
from tether.service.clock import SystemClock

app = typer.Typer(help="Development helpers (refused when TETHER_ENV=production).")


@app.command("svid")
def svid(
    agent: Annotated[str, typer.Option("--agent", "-a", help="Agent name, e.g. analyst.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    ttl: Annotated[int, typer.Option(min=60, max=86400, help="Lifetime in seconds.")] = 3600,
    trust_domain: Annotated[str, typer.Option(help="SPIFFE trust domain.")] = DEFAULT_TRUST_DOMAIN,
    audience: Annotated[str, typer.Option(help="Audience the server expects.")] = DEFAULT_AUDIENCE,
) -> None:
    """Print an ES256 JWT-SVID for spiffe://<trust-domain>/agent/NAME."""
    with tether_errors():
        issuer = open_dev_issuer(data_dir, trust_domain=trust_domain, environ=os.environ)
        typer.echo(
            issuer.mint_svid(agent, audience=audience, now=SystemClock().now(), ttl_seconds=ttl)
        )
