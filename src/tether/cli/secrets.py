"""``tether secrets set|list|delete``: the standing secrets tether injects into upstream calls.

One encrypted store (``<data-dir>/secrets.json``) that the egress proxy and the MCP gateway both
read; ``put`` is a hidden alias of ``set``, its name before the two were one group.
A value is read from standard input (or typed without echo at a terminal), never from the
command line where shell history and ``ps`` would keep it, and it is never printed back.
"""

from __future__ import annotations

import getpass
import sys
from typing import Annotated, Final

import typer

from tether.cli.common import DEFAULT_DATA_DIR, DataDir, console, fail, tether_errors
from tether.cli.exits import ExitCode
from tether.cli.output import AsJson, Column, print_json, print_table
from tether.core.secret import Secret
from tether.credentials.secrets import MAX_SECRET_BYTES, SecretStore

app = typer.Typer(
    help="Standing secrets tether injects into upstream calls (values never shown).",
    no_args_is_help=True,
)

_PROMPT: Final = "secret value (not echoed): "


def read_secret_value() -> Secret:
    """One secret value from standard input, without its trailing newline."""
    if sys.stdin.isatty():
        value = getpass.getpass(_PROMPT)
    else:
        value = sys.stdin.read(MAX_SECRET_BYTES + 2)
        value = value.removesuffix("\n").removesuffix("\r")
    if len(value.encode()) > MAX_SECRET_BYTES:
        fail(f"a secret is at most {MAX_SECRET_BYTES} bytes", "invalid_field")
    if not value:
        fail(
            'no secret value on standard input (pipe it in: printf %s "$VALUE" | …)',
            "invalid_field",
        )
    return Secret(value)


@app.command("set")
@app.command("put", hidden=True)
def set_(
    name: Annotated[
        str,
        typer.Argument(
            help="The secret's name, as gateway.yaml's credential.secret or proxy.yaml's "
            "secret.name."
        ),
    ],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Store (or replace) a secret read from standard input, encrypted at rest."""
    value = read_secret_value()
    with tether_errors():
        store = SecretStore(data_dir)
        replaced = name in store.names()
        store.set(name, value)
    console.print(f"{'replaced' if replaced else 'stored'} secret {name!r}", highlight=False)


@app.command("list")
def list_(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: AsJson = False) -> None:
    """Show the names of stored secrets and when each was set (never their values)."""
    with tether_errors():
        store = SecretStore(data_dir)
        rows = [[name, store.updated_at(name) or ""] for name in store.names()]
    if as_json:
        print_json([{"name": name, "updated_at": at} for name, at in rows])
        return
    if not rows:
        console.print(f"no secrets in {store.path}", highlight=False)
        return
    print_table(
        f"secrets ({store.path})",
        [Column("name", key=True), Column("updated at")],
        ([name, at[:19]] for name, at in rows),
    )


@app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="The secret's name.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Remove a secret; upstreams that need it fail closed until it is set again."""
    with tether_errors():
        removed = SecretStore(data_dir).delete(name)
    if not removed:
        fail(
            f"no secret named {name!r}; see `tether secrets list`", "not_found", ExitCode.NOT_FOUND
        )
    console.print(f"deleted secret {name!r}", highlight=False)
