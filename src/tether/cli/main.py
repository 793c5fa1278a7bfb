"""The ``tether`` command: every entry point of tether in one place."""

from __future__ import annotations

import typer

from tether.cli import agents, approvals, audit, breakglass, demo, dev, leases
from tether.cli import db as db_cli
from tether.cli import mcp as mcp_cli
from tether.cli import policy as policy_cli
from tether.cli import proxy as proxy_cli
from tether.cli import report as report_cli
from tether.cli import secrets as secrets_cli
from tether.cli.serve import serve
from tether.logs import configure_logging

app = typer.Typer(
    name="tether",
    help="Request-time least privilege for AI agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _quiet_logs() -> None:
    """Commands log warnings and errors only (to stderr); ``serve`` sets its own level."""
    configure_logging("warning", json=False)


app.command("serve")(serve)
app.command("demo")(demo.demo)
app.command("mcp-gateway")(mcp_cli.mcp_gateway)
app.command("proxy")(proxy_cli.proxy)
app.add_typer(dev.app, name="dev")
app.add_typer(policy_cli.app, name="policy")
app.add_typer(audit.app, name="audit")
app.add_typer(mcp_cli.app, name="mcp")
app.add_typer(approvals.approvers_app, name="approvers")
app.add_typer(approvals.approvals_app, name="approvals")
app.add_typer(breakglass.app, name="breakglass")
app.add_typer(secrets_cli.app, name="secrets")
app.add_typer(report_cli.app, name="report")
app.add_typer(agents.app, name="agents")
app.add_typer(leases.app, name="leases")
app.add_typer(db_cli.app, name="db")


def main() -> None:
    app()
