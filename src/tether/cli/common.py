"""What every command shares: options, the data directory, and one-line errors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from tether.cli.exits import ExitCode, exit_code_for
from tether.core.errors import TetherError

console = Console()
err_console = Console(stderr=True)

DEFAULT_DATA_DIR = Path(os.environ.get("TETHER_DATA_DIR", ".tether"))

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        "-d",
        help="tether's data directory (store, keys). Env: TETHER_DATA_DIR.",
        envvar="TETHER_DATA_DIR",
        file_okay=False,
    ),
]

PolicyDir = Annotated[
    Path | None,
    typer.Option(
        "--policies",
        "-p",
        help="Policy directory (*.cedar, schema.cedarschema, catalog.yaml). "
        "Default: the bundled example policies (refused when TETHER_ENV=production).",
        file_okay=False,
        exists=True,
    ),
]


def fail(message: str, code: str = "error", exit_code: int = ExitCode.USAGE) -> NoReturn:
    """Print one line that says what was wrong and what to do, then exit with ``exit_code`` (an
    :class:`~tether.cli.exits.ExitCode`)."""
    err_console.print(
        f"[bold red]error[/] [dim]({code})[/]: {escape(message)}", highlight=False, soft_wrap=True
    )
    raise typer.Exit(exit_code)


@contextmanager
def tether_errors() -> Iterator[None]:
    """Turn tether's own errors into one-line messages with their stable code and exit status."""
    try:
        yield
    except TetherError as error:
        fail(error.message, error.code.value, exit_code_for(error))


#: ``--store-url``'s help, here and on serve, mcp-gateway and proxy (tether.cli.config_schema).
STORE_URL_HELP = (
    "The store's database, e.g. postgresql://tether:PASSWORD@db:5432/tether: every replica "
    "names the same one and shares the data directory's keys. Prefer the env var (a command "
    "line is visible to other users). Default: SQLite in the data directory."
)

StoreUrl = Annotated[
    str | None,
    typer.Option("--store-url", envvar="TETHER_DATABASE_URL", help=STORE_URL_HELP),
]


def store_url_of(value: str | None) -> str | None:
    """The ``--store-url`` given, or ``None`` (SQLite in the data directory) when it is empty."""
    if value is None:
        return None
    return value.strip() or None
