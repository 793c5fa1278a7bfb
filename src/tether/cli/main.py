"""The ``tether`` command: every entry point of tether in one place.

Subcommands are listed here by name and summary and imported only when run (see
:mod:`tether.cli.lazy`): ``tether --help`` must not wait for the server, the gateway and the policy
engine to import. Keep heavy imports out of this module.
"""

from __future__ import annotations

import typer

from tether.cli.exits import exit_status_help
from tether.cli.lazy import LazyGroup, Subcommand
from tether.cli.output import configure_output


class _Root(LazyGroup):
    subcommands = (
        Subcommand("serve", "tether.cli.serve:serve", "Run the tether HTTP API."),
        Subcommand(
            "demo",
            "tether.cli.demo:demo",
            "Run a scripted agent against a real server on loopback; verify the audit log.",
        ),
        Subcommand(
            "mcp-gateway",
            "tether.cli.mcp:mcp_gateway",
            "Front MCP servers: filter tools/list, decide every tools/call.",
        ),
        Subcommand(
            "proxy",
            "tether.cli.proxy:proxy",
            "Forward agents' HTTP calls to legacy services, authorizing each one.",
        ),
        Subcommand(
            "dev",
            "tether.cli.dev:app",
            "Development helpers (refused when TETHER_ENV=production).",
            logs=False,  # `dev svid` runs in scripts: it must start fast
        ),
        Subcommand("policy", "tether.cli.policy:app", "Validate, test and format Cedar policies."),
        Subcommand("audit", "tether.cli.audit:app", "Export, verify and read the audit log."),
        Subcommand("mcp", "tether.cli.mcp:app", "The MCP gateway's tool pins."),
        Subcommand("approvers", "tether.cli.approvals:approvers_app", "Manage who may approve."),
        Subcommand(
            "approvals", "tether.cli.approvals:approvals_app", "List, read and decide approvals."
        ),
        Subcommand(
            "breakglass",
            "tether.cli.breakglass:app",
            "Emergency elevation, approved by two humans.",
        ),
        Subcommand(
            "secrets", "tether.cli.secrets:app", "Standing secrets tether injects upstream."
        ),
        Subcommand(
            "report", "tether.cli.report:app", "Privileges, risks, controls, observe-mode flips."
        ),
        Subcommand("agents", "tether.cli.agents:app", "Revoke an agent everywhere, or restore it."),
        Subcommand("leases", "tether.cli.leases:app", "Just-in-time downstream credentials."),
        Subcommand("db", "tether.cli.db:app", "The store's schema revision and migrations."),
        Subcommand(
            "config", "tether.cli.config:app", "tether.yaml: effective options and their sources."
        ),
    )


app = typer.Typer(
    name="tether",
    cls=_Root,
    help="Request-time least privilege for AI agents.",
    epilog=exit_status_help(),
    # click's plain help: at 80 columns it wraps descriptions but never cuts an option or
    # environment variable name, which rich's help panels do.
    rich_markup_mode=None,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _setup(ctx: typer.Context) -> None:
    """Commands log warnings and errors only (to stderr); ``serve`` sets its own level. Output
    to a pipe or a file is not wrapped."""
    configure_output()
    if all(sub.logs for sub in _Root.subcommands if sub.name == ctx.invoked_subcommand):
        from tether.logs import configure_logging

        configure_logging("warning", json=False)


def main() -> None:
    app()
