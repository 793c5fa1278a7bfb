"""``tether audit``: export, verify and tail the hash-chained audit log, in the data directory's
SQLite store or in the database ``--store-url`` names (every replica's partition), and prove
a record's place in it (:mod:`tether.cli.audit_proofs`); ``tail`` is :mod:`tether.cli.audit_tail`.

Checkpoints (:mod:`tether.core.checkpoint`) are signed with the data directory's
``keys/audit-checkpoint.pem``; a reader without the data directory verifies with its public half
(``tether audit public-key``) given as ``--public-key``.

An export is the records as JSON lines in the log's stable order (every partition in ``seq``
order, merged by time, then partition, then seq: :func:`tether.core.partitions.log_order`), then
one line ``{"checkpoint": {...}}`` signed at export time over every record before it (every
partition's head): cutting the file anywhere, or dropping a partition's lines, removes or
contradicts that line. ``verify`` checks every partition, its stored head and every checkpoint
(:mod:`tether.core.logcheck`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn

from tether.cli.audit_proofs import (
    PublicKeyFile,
    consistency,
    prove,
    public_key,
    public_key_of,
    verify_proof,
)
from tether.cli.audit_tail import tail
from tether.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    StoreUrl,
    console,
    fail,
    open_existing_store,
    store_url_of,
    tether_errors,
)
from tether.cli.exits import ExitCode, exit_code_for
from tether.cli.output import print_json
from tether.core.audit import GENESIS_HASH, LEGACY_PARTITION, AuditRecord, canonical_json
from tether.core.checkpoint import Checkpoint, is_export_checkpoint
from tether.core.errors import Unavailable
from tether.core.logcheck import LogReport, sign_log, verify_log
from tether.identity.audit_key import CheckpointKey, CheckpointPublicKey
from tether.notify.witness import read_witness_file
from tether.store import SqlStore
from tether.store.checkpoints import SqlCheckpointStore

app = typer.Typer(help="Export, verify and read the audit log.")

MAX_LINE_BYTES = 4 * 1024 * 1024


_open = open_existing_store


@app.command("export")
def export(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    store_url: StoreUrl = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (stdout by default).")
    ] = None,
) -> None:
    """Write the whole chain as JSON lines, oldest first, ending with a checkpoint signed now.

    The chain is checked against its stored checkpoints as it is read: a log that no longer
    matches them is written out (it is evidence) but not signed, and the command exits 1."""
    with tether_errors():
        key_path = CheckpointKey.path_in(data_dir)
        if store_url_of(store_url) is not None and not key_path.exists():
            # Another database's checkpoints are signed with its servers' key: never a new one.
            fail(
                f"no audit checkpoint key in {data_dir}/keys: pass --data-dir of the data "
                "directory the servers of this database share",
                "public_key_missing",
            )
        store, _ = _open(data_dir, store_url)
        key = CheckpointKey.load_or_create(key_path)
        try:
            if output is None:
                report = _export(store, key, sys.stdout.write)
            else:
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

                    def write(line: str) -> None:
                        handle.write(line)
                        bar.update(job, description="exporting")

                    report = _export(store, key, write)
                console.print(f"exported {report.records} records to {output}")
        finally:
            store.close()


def _export(store: SqlStore, key: CheckpointKey, write: Callable[[str], object]) -> LogReport:
    def records() -> Iterator[AuditRecord]:
        for record in store.audit_records():
            write(canonical_json(record.to_json()).decode() + "\n")
            yield record

    stream = records()
    stored = SqlCheckpointStore(store).all()
    report = verify_log(stream, stored, key.public().verifies, format=store.chain_format)
    for _ in stream:  # a broken chain is still written out in full
        pass
    if not report.ok:
        fail(
            f"not signing the export: chain broken at record {report.first_bad_seq}"
            f"{_of_partition(report)}: {report.problem}",
            "chain_broken",
            ExitCode.CHECK_FAILED,
        )
    signed = sign_log(key.signer(), report, datetime.now(UTC).isoformat())
    write(canonical_json({"checkpoint": signed.to_json()}).decode() + "\n")
    return report


def _lines(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
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
            except ValueError as error:
                fail(
                    f"line {number} of {path} is not JSON: {error}",
                    "malformed_export",
                    ExitCode.CHECK_FAILED,
                )
            if not isinstance(data, dict):
                fail(
                    f"line {number} of {path} is not a JSON object",
                    "malformed_export",
                    ExitCode.CHECK_FAILED,
                )
            yield number, data


def _export_checkpoint(path: Path) -> tuple[int, Checkpoint] | None:
    """The checkpoint an export ends with, and its line; ``None`` when the last line is none."""
    last: tuple[int, dict[str, object]] | None = None
    for last in _lines(path):  # noqa: B007 - the last line is what counts
        pass
    if last is None or not is_export_checkpoint(last[1]):
        return None
    try:
        return last[0], Checkpoint.from_json(last[1]["checkpoint"])
    except ValueError as error:
        fail(
            f"line {last[0]} of {path} is not a checkpoint: {error}",
            "malformed_export",
            ExitCode.CHECK_FAILED,
        )


def _read_file(path: Path, end: int | None) -> Iterator[AuditRecord]:
    """The records of an export, up to (not including) line ``end``, its checkpoint."""
    for number, data in _lines(path):
        if end is not None and number >= end:
            return
        if is_export_checkpoint(data):
            fail(
                f"line {number} of {path} is a checkpoint before the end of the export",
                "malformed_export",
                ExitCode.CHECK_FAILED,
            )
        try:
            yield AuditRecord.from_json(data)
        except ValueError as error:
            fail(
                f"line {number} of {path} is not an audit record: {error}",
                "malformed_export",
                ExitCode.CHECK_FAILED,
            )


def _report(report: LogReport, source: str, *, live: bool, as_json: bool) -> None:
    if as_json:  # the document first, also for a broken chain: the exit status says which
        print_json(
            {
                "ok": report.ok,
                "source": source,
                "records": report.records,
                "first_bad_seq": report.first_bad_seq,
                "problem": report.problem,
                "checkpoints": report.checkpoints,
                "anchored": report.anchored,
                "unanchored": report.unanchored,
                "head": report.head,
                "partition": report.partition,
                "heads": dict(report.heads),
            }
        )
    if not report.ok:
        fail(
            f"chain broken at record {report.first_bad_seq}{_of_partition(report)}: "
            f"{report.problem} ({source})",
            "chain_broken",
            ExitCode.CHECK_FAILED,
        )
    if as_json:
        return
    parts = sum(1 for head in report.heads.values() if head != GENESIS_HASH)
    anchored = (
        f"{report.checkpoints} checkpoint(s) verified, records 1..{report.anchored} signed"
        if report.checkpoints and parts <= 1
        else f"{report.checkpoints} checkpoint(s) verified, {report.anchored} records signed"
        if report.checkpoints
        else "no checkpoint"
    )
    if parts > 1:
        anchored = f"{parts} partitions; " + anchored
    unanchored = f"; {report.unanchored} record(s) after the last checkpoint (unanchored)"
    console.print(
        f"[green]ok[/]: {report.records} records, chain intact; {anchored}"
        + (unanchored if live and report.unanchored else "")
        + f" ({escape(source)})",
        highlight=False,
        soft_wrap=True,
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
    public_key_file: PublicKeyFile = None,
    witness: Annotated[
        Path | None,
        typer.Option(
            "--witness",
            help="Also check the live store against the checkpoints a witness file kept (the "
            "server's --audit-witness): catches checkpoints deleted from the database.",
            dir_okay=False,
            exists=True,
        ),
    ] = None,
    allow_unsigned: Annotated[
        bool,
        typer.Option(
            "--allow-unsigned",
            help="With --file: accept an export without its closing checkpoint (made before "
            "tether signed exports), checking the chain alone. A cut file then passes.",
        ),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the result as one JSON document (ok, records, first_bad_seq, problem, "
            "checkpoints, anchored, unanchored, head), a broken chain's too.",
        ),
    ] = False,
) -> None:
    """Check the hash chain and its signed checkpoints; exit 1 naming the first bad record.

    On a live store, also fails when the tail was cut below a checkpoint, and reports records
    after the last checkpoint as unanchored. On an export, fails unless the export ends with a
    checkpoint, signed by the audit key, over exactly the records before it."""
    with tether_errors():
        key = public_key_of(data_dir, public_key_file)
        if file is not None:
            _verify_file(file, key, allow_unsigned, as_json)
            return
        store, source = _open(data_dir, store_url)
        try:
            checkpoints = _with_witness(SqlCheckpointStore(store).all(), witness)
            if checkpoints and key is None:
                fail(
                    f"the store holds {len(checkpoints)} signed checkpoint(s) and there is no "
                    f"audit key in {data_dir}/keys: pass --public-key FILE",
                    "public_key_missing",
                )
            report = verify_log(
                store.audit_records(),
                checkpoints,
                _verifier(key),
                heads=store.chain_heads(),
                format=store.chain_format,
            )
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
        _report(report, source, live=True, as_json=as_json)


def _with_witness(stored: list[Checkpoint], witness: Path | None) -> list[Checkpoint]:
    if witness is None:
        return stored
    try:
        kept = read_witness_file(witness)
    except (ValueError, OSError) as error:
        fail(f"cannot read the witness file: {error}", "malformed_witness", ExitCode.CHECK_FAILED)
    seen = {json.dumps(c.to_json(), sort_keys=True) for c in stored}
    return stored + [c for c in kept if json.dumps(c.to_json(), sort_keys=True) not in seen]


def _verifier(key: CheckpointPublicKey | None) -> Callable[[Checkpoint], bool]:
    return (lambda _: False) if key is None else key.verifies


def _verify_file(
    file: Path, key: CheckpointPublicKey | None, allow_unsigned: bool, as_json: bool
) -> None:
    if not file.exists():
        fail(f"{file} does not exist", "file_not_found", ExitCode.NOT_FOUND)
    found = _export_checkpoint(file)
    if found is None:
        if not allow_unsigned:
            fail(
                f"{file} does not end with a signed checkpoint: it was cut short, or made "
                "before tether signed exports (--allow-unsigned checks the chain alone)",
                "chain_broken",
                ExitCode.CHECK_FAILED,
            )
        report = verify_log(_read_file(file, None), [], _verifier(key))
        _report(report, f"{file}, unsigned: a cut would not show", live=False, as_json=as_json)
        return
    line, checkpoint = found
    if key is None:
        fail(
            f"no audit key to check {file}'s checkpoint with: pass --public-key FILE (from "
            "`tether audit public-key`) or --data-dir of the tether that exported it",
            "public_key_missing",
        )
    report = verify_log(_read_file(file, line), [checkpoint], key.verifies)
    if report.ok and report.records != checkpoint.size:
        report = replace(
            report,
            ok=False,
            first_bad_seq=min(report.records, checkpoint.size) + 1,
            problem=f"the file holds {report.records} records but its checkpoint signs "
            f"{checkpoint.size}: records were added after it was signed",
        )
    _report(report, str(file), live=False, as_json=as_json)


def _of_partition(report: LogReport) -> str:
    if report.partition is None or report.partition == LEGACY_PARTITION:
        return ""
    return f" of partition {report.partition!r}"


def _reachable(store: SqlStore) -> bool:
    try:
        store.ping()
    except Unavailable:
        return False
    return True


app.command("tail")(tail)
app.command("prove")(prove)
app.command("consistency")(consistency)
app.command("verify-proof")(verify_proof)
app.command("public-key")(public_key)
