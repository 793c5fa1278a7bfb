"""``tether db``: the store's schema revision, and applying pending migrations (Alembic).

``tether serve`` applies pending migrations itself on start, one replica at a time. These
commands are for doing it ahead of a rollout, or as the database's owner when replicas connect
with a runtime role that cannot create tables (see ``tether.store``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from tether.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    StoreUrl,
    console,
    fail,
    store_url_of,
    tether_errors,
)
from tether.cli.exits import ExitCode
from tether.cli.output import AsJson, print_json
from tether.runtime import STORE_FILE, sqlite_file
from tether.store import SqlStore
from tether.store.migrate import Revision, SchemaState

app = typer.Typer(help="The store's schema: its revision, and applying migrations.")


def _open(data_dir: Path, store_url: str | None, *, create: bool) -> tuple[SqlStore, str]:
    """A handle that leaves the schema as it is, and the store's name in messages (never the
    URL, which may hold a password)."""
    url = store_url_of(store_url)
    if url is not None:
        store = SqlStore(url, migrate=False)
        return store, f"{store.backend} store"
    path = data_dir / STORE_FILE
    if not create and not path.exists():
        fail(
            f"no tether store in {data_dir}; pass --data-dir of a directory `tether serve` used, "
            "or --store-url",
            "store_not_found",
            ExitCode.NOT_FOUND,
        )
    return SqlStore.sqlite(sqlite_file(data_dir), migrate=False), str(data_dir)


def _revisions(revisions: tuple[Revision, ...]) -> list[dict[str, str]]:
    return [{"id": r.id, "title": r.title} for r in revisions]


def _state(state: SchemaState) -> dict[str, object]:
    return {
        "revision": state.revision,
        "head": state.head,
        "up_to_date": state.up_to_date,
        "pending": _revisions(state.pending),
        "legacy_version": state.legacy_version,
    }


def _list(heading: str, revisions: tuple[Revision, ...]) -> None:
    console.print(heading, highlight=False)
    for revision in revisions:
        console.print(f"  {revision.id}  {escape(revision.title)}", highlight=False)


@app.command("current")
def current(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    store_url: StoreUrl = None,
    check: Annotated[
        bool, typer.Option("--check", help="Exit with status 1 when migrations are pending.")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Show the database's schema revision and whether it is up to date."""
    with tether_errors():
        store, where = _open(data_dir, store_url, create=False)
        try:
            state = store.schema_state()
        finally:
            store.close()
    if as_json:
        print_json({"store": where, **_state(state)})
        if check and not state.up_to_date:
            raise typer.Exit(ExitCode.CHECK_FAILED)
        return
    console.print(f"{escape(where)}: revision {escape(state.describe())}", highlight=False)
    if state.up_to_date:
        console.print(f"up to date (head {state.head})", highlight=False)
        return
    if state.pending:
        _list(f"{len(state.pending)} migration(s) pending:", state.pending)
    console.print(
        f"not up to date (head {state.head}): run `tether db upgrade`, or start `tether serve`",
        highlight=False,
    )
    if check:
        raise typer.Exit(ExitCode.CHECK_FAILED)


@app.command("upgrade")
def upgrade(
    data_dir: DataDir = DEFAULT_DATA_DIR, store_url: StoreUrl = None, as_json: AsJson = False
) -> None:
    """Apply pending migrations, in one transaction, while replicas starting wait."""
    with tether_errors():
        store, where = _open(data_dir, store_url, create=True)
        try:
            done = store.upgrade_schema()
        finally:
            store.close()
    if as_json:
        print_json(
            {
                "store": where,
                "before": _state(done.before),
                "after": _state(done.after),
                "applied": _revisions(done.applied),
            }
        )
        return
    if done.before.up_to_date:
        console.print(
            f"{escape(where)}: already at {done.after.head}; nothing to do", highlight=False
        )
        return
    console.print(
        f"{escape(where)}: upgraded {escape(done.before.describe())} → {done.after.revision}",
        highlight=False,
    )
    if done.applied:
        _list("applied:", done.applied)
