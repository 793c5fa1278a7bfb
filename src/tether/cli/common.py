"""What every command shares: options, the data directory, and one-line errors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from tether.cli.exits import ExitCode, exit_code_for
from tether.core.errors import TetherError

if TYPE_CHECKING:
    from tether.store import SqlStore

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


def open_existing_store(data_dir: Path, store_url: str | None) -> tuple[SqlStore, str]:
    """The store of ``--store-url``, or the data directory's, which must exist: a command run on
    a mistyped ``--data-dir`` exits 4 rather than reading (or revoking in) a new empty store.
    Also the store's name for messages: never the URL, which may hold a password."""
    from tether.runtime import STORE_FILE, open_store  # here: the server's imports are heavy

    url = store_url_of(store_url)
    if url is None:
        if not (data_dir / STORE_FILE).exists():
            fail(
                f"no tether store in {data_dir}; pass --data-dir of a directory `tether serve` "
                "used, or --store-url",
                "store_not_found",
                ExitCode.NOT_FOUND,
            )
        return open_store(data_dir), str(data_dir)
    store = open_store(data_dir, url)
    return store, f"{store.backend} store"
