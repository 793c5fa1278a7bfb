"""``tether audit``: export, verify and tail the hash-chained audit log, in the data directory's
SQLite store or in the database ``--store-url`` names (the one chain of all replicas)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn

from tether.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    StoreUrl,
    console,
    fail,
    store_url_of,
    tether_errors,
)
from tether.cli.exits import ExitCode, exit_code_for
from tether.cli.output import Column, print_json_line, print_rows, print_table
from tether.core.audit import AuditRecord, ChainReport, canonical_json, verify_chain
from tether.core.errors import Unavailable
from tether.runtime import open_store
from tether.store import SqlStore

app = typer.Typer(help="Export, verify and read the audit log.")

MAX_LINE_BYTES = 4 * 1024 * 1024


def _require_store(data_dir: Path) -> Path:
    db = data_dir / "tether.db"
    if not db.exists():
        fail(
            f"no tether store in {data_dir}; pass --data-dir of a directory `tether serve` used",
            "store_not_found",
            ExitCode.NOT_FOUND,
        )
    return data_dir


def _open(data_dir: Path, store_url: str | None) -> tuple[SqlStore, str]:
    """The store to read, and its name in messages: never the URL, which may hold a password."""
    url = store_url_of(store_url)
    if url is None:
        return open_store(_require_store(data_dir)), str(data_dir)
    store = open_store(data_dir, url)
    return store, f"{store.backend} store"


@app.command("export")
def export(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    store_url: StoreUrl = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (stdout by default).")
    ] = None,
) -> None:
    """Write the whole chain as JSON lines, oldest first."""
    with tether_errors():
        store, _ = _open(data_dir, store_url)
        try:
            if output is None:
                for record in store.audit_records():
                    sys.stdout.write(canonical_json(record.to_json()).decode() + "\n")
                return
            count = 0
            with (
                output.open("w", encoding="utf-8") as handle,
                Progress(
                    SpinnerColumn(),
                    TextColumn("{task.description}"),
                    console=console,
                    disable=not console.is_terminal,  # never a spinner in a pipe or a file
                ) as bar,
            ):
                job = bar.add_task("exporting", total=None)
                for record in store.audit_records():
                    handle.write(canonical_json(record.to_json()).decode() + "\n")
                    count += 1
                    if count % 1000 == 0:
                        bar.update(job, description=f"exported {count} records")
            console.print(f"exported {count} records to {output}")
        finally:
            store.close()


def _read_file(path: Path) -> Iterator[AuditRecord]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if len(raw) > MAX_LINE_BYTES:
                fail(
                    f"line {number} of {path} is larger than 4 MiB",
                    "malformed_export",
                    ExitCode.CHECK_FAILED,
                )
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
                yield AuditRecord.from_json(data)
            except ValueError as error:
                fail(
                    f"line {number} of {path} is not an audit record: {error}",
                    "malformed_export",
                    ExitCode.CHECK_FAILED,
                )


def _report(report: ChainReport, source: str) -> None:
    if report.ok:
        console.print(f"[green]ok[/]: {report.records} records, chain intact ({source})")
        return
    fail(
        f"chain broken at record {report.first_bad_seq}: {report.problem} ({source})",
        "chain_broken",
        ExitCode.CHECK_FAILED,
    )


@app.command("verify")
def verify(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", help="Verify an exported JSON-lines file instead.", dir_okay=False
        ),
    ] = None,
    store_url: StoreUrl = None,
) -> None:
    """Check the hash chain; exit 1 naming the first bad record on any break."""
    with tether_errors():
        if file is not None:
            if not file.exists():
                fail(f"{file} does not exist", "file_not_found", ExitCode.NOT_FOUND)
            _report(verify_chain(_read_file(file)), str(file))
            return
        store, source = _open(data_dir, store_url)
        try:
            report = verify_chain(store.audit_records(), store.chain_head())
        except Unavailable as error:
            if not _reachable(store):  # a server that went away mid-read proves nothing
                fail(
                    f"the store stopped answering: {error.message} ({source})",
                    error.code.value,
                    exit_code_for(error),
                )
            # A record the store cannot even read back is a break in the chain, not an outage.
            fail(
                f"chain unreadable: {error.message} ({source})",
                "chain_broken",
                ExitCode.CHECK_FAILED,
            )
        finally:
            store.close()
        _report(report, source)


def _reachable(store: SqlStore) -> bool:
    try:
        store.ping()
    except Unavailable:
        return False
    return True


def _summary(record: AuditRecord) -> str:
    body = record.body
    call = body.get("call")
    verdict = body.get("verdict")
    if isinstance(call, dict) and isinstance(verdict, dict):
        reasons = verdict.get("reasons")
        code = ""
        if isinstance(reasons, list) and reasons and isinstance(reasons[0], dict):
            code = f" ({reasons[0].get('code')})"
        return f"{call.get('action')} {call.get('tool')} → {verdict.get('decision')}{code}"
    if isinstance(call, dict):
        return f"{call.get('action')} {call.get('tool')}: {body.get('status')}"
    intent = body.get("intent")
    if isinstance(intent, dict):
        return f"workflow {intent.get('workflow')}"
    # Everything else: the ids and facts that say what happened, in a stable order.
    keys = ("approval_id", "breakglass_id", "tool", "upstream", "state", "approver", "reason")
    shown = [f"{k}={body[k]}" for k in keys if isinstance(body.get(k), str | int | bool)]
    return " ".join(shown)[:160]


@app.command("tail")
def tail(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, max=10000)] = 20,
    store_url: StoreUrl = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new records (Ctrl-C stops).")
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.05, max=60, help="Seconds between reads with --follow.")
    ] = 1.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Each record whole, as one JSON object a line.")
    ] = False,
) -> None:
    """Show the most recent records; with --follow, then every new one as it is written."""
    with tether_errors():
        store, _ = _open(data_dir, store_url)
        try:
            head = store.chain_head()
            after = max(0, (head.seq if head else 0) - lines)
            after = _print_records(store, after, as_json, table=not follow)
            while follow:
                time.sleep(interval)
                after = _print_records(store, after, as_json, table=False)
        except KeyboardInterrupt:
            pass  # --follow ends on Ctrl-C
        finally:
            store.close()


_TAIL_COLUMNS = [
    Column("seq"),
    Column("at"),
    Column("kind"),
    Column("agent", key=True),
    Column("what"),
]


def _print_records(store: SqlStore, after: int, as_json: bool, *, table: bool) -> int:
    """Print the records after seq ``after``; returns the last seq printed (or ``after``).

    As one table, or (``table`` false, for --follow) as lines written as they arrive."""
    records = list(store.audit_records(after_seq=after))
    if as_json:
        for record in records:
            print_json_line(record.to_json())
    else:
        rows = [[str(r.seq), r.at[:19], r.kind.value, r.agent or "", _summary(r)] for r in records]
        loud = [r.kind.value.startswith("breakglass") for r in records]
        if table:
            print_table("audit log", _TAIL_COLUMNS, rows, loud=loud)
        else:
            print_rows(rows, loud=loud)
    sys.stdout.flush()
    return records[-1].seq if records else after
