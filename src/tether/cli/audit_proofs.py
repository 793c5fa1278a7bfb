"""``tether audit prove | consistency | verify-proof | public-key``: Merkle proofs of the audit log
against its signed checkpoints (RFC 6962 / RFC 9162, :mod:`tether.core.merkle`).

``prove DECISION_ID`` prints (JSON) the decision's audit record, its audit path and the newest
stored checkpoint; ``consistency`` prints the proof that one checkpoint's log extends another's:
for checkpoints of every partition, one proof per partition (:mod:`tether.core.consistency`),
with a table of the partitions on stderr. ``verify-proof FILE`` checks either document offline
with nothing but the public key, as does :func:`tether.core.consistency.verify_proof_document`
from Python.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from tether.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    StoreUrl,
    console,
    err_console,
    fail,
    open_existing_store,
    tether_errors,
)
from tether.cli.exits import ExitCode
from tether.cli.output import print_json, print_rich_table
from tether.core.audit import LEGACY_PARTITION, AuditKind, AuditRecord
from tether.core.checkpoint import Checkpoint, consistency_document, inclusion_document
from tether.core.consistency import PartitionStep, check_partitions, verify_proof_document
from tether.core.consistency import consistency_document as partitions_document
from tether.core.merkle import consistency_proof, inclusion_proof, leaf_hash, tree_hash
from tether.identity.audit_key import CheckpointKey, CheckpointPublicKey
from tether.store import SqlStore
from tether.store.checkpoints import SqlCheckpointStore

MAX_PROOF_BYTES = 1024 * 1024
_DECISION_KINDS = (AuditKind.DECISION, AuditKind.BREAKGLASS_DECISION)

PublicKeyFile = Annotated[
    Path | None,
    typer.Option(
        "--public-key",
        help="The audit key's public half (PEM, from `tether audit public-key`). Default: the "
        "data directory's key.",
        dir_okay=False,
    ),
]


def public_key_of(data_dir: Path, file: Path | None) -> CheckpointPublicKey | None:
    """The key ``--public-key`` names, else the data directory's (never created here)."""
    if file is not None:
        if not file.exists():
            fail(f"{file} does not exist", "file_not_found", ExitCode.NOT_FOUND)
        return CheckpointPublicKey.from_file(file)
    path = CheckpointKey.path_in(data_dir)
    return CheckpointKey.load(path).public() if path.exists() else None


def _print(document: object) -> None:
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def _leaves(store: SqlStore, size: int, partition: str = LEGACY_PARTITION) -> list[bytes]:
    leaves = []
    for record in store.audit_records(partition=partition):
        if record.seq > size:
            break
        leaves.append(leaf_hash(record.leaf()))
    return leaves


def _matching(
    store: SqlStore, checkpoint: Checkpoint, leaves: list[bytes], partition: str = LEGACY_PARTITION
) -> None:
    """Refuse to prove anything from a partition that no longer hashes to the checkpoint."""
    view = checkpoint.views()[partition]
    if len(leaves) != view.size or tree_hash(leaves).hex() != view.root:
        fail(
            f"the stored records 1..{view.size} of partition {partition!r} no longer hash to "
            f"the checkpoint signed {checkpoint.at}: run `tether audit verify`",
            "chain_broken",
            ExitCode.CHECK_FAILED,
        )


def prove(
    decision_id: Annotated[
        str | None, typer.Argument(help="The decision id an authorize call returned.")
    ] = None,
    seq: Annotated[
        int | None, typer.Option("--seq", min=1, help="Prove the record at this seq instead.")
    ] = None,
    partition: Annotated[
        str, typer.Option("--partition", help="With --seq: the partition (replica) it is in.")
    ] = LEGACY_PARTITION,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    store_url: StoreUrl = None,
) -> None:
    """Print (JSON) an inclusion proof of a decision's audit record (in its partition's tree)
    against the newest checkpoint; check it offline with `tether audit verify-proof`."""
    if (decision_id is None) == (seq is None):
        fail("name a decision id or --seq N (one of the two)", "usage")
    with tether_errors():
        store, _ = open_existing_store(data_dir, store_url)
        try:
            record = _find(store, decision_id, seq, partition)
            checkpoints = SqlCheckpointStore(store).all()
            newest = checkpoints[-1] if checkpoints else None
            view = None if newest is None else newest.views().get(record.partition)
            if newest is None or view is None or view.size < record.seq:
                covered = 0 if view is None else view.size
                fail(
                    f"record {record.seq} is not anchored yet: the newest checkpoint covers "
                    f"records 1..{covered} of its partition; the server signs the next one "
                    "within its checkpoint interval",
                    "not_anchored",
                    ExitCode.CHECK_FAILED,
                )
            leaves = _leaves(store, view.size, record.partition)
        finally:
            store.close()
        _matching(store, newest, leaves, record.partition)
        _print(inclusion_document(record, newest, inclusion_proof(record.seq - 1, leaves)))


def _find(store: SqlStore, decision_id: str | None, seq: int | None, partition: str) -> AuditRecord:
    if seq is not None:
        records = store.audit_records(seq - 1, partition=partition)
    else:
        records = store.audit_records()  # every partition: a decision is in its replica's
    for record in records:
        if seq is not None:
            if record.seq == seq:
                return record
            break
        if record.kind in _DECISION_KINDS and record.body.get("decision_id") == decision_id:
            return record
    what = f"record {seq}" if seq is not None else f"decision {decision_id}"
    fail(f"no audit record of {what}", "not_found", ExitCode.NOT_FOUND)


def consistency(
    older: Annotated[
        int | None,
        typer.Option(min=0, help="The older checkpoint's size (default: second newest)."),
    ] = None,
    newer: Annotated[
        int | None, typer.Option(min=0, help="The newer checkpoint's size (default: newest).")
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    store_url: StoreUrl = None,
) -> None:
    """Print (JSON) the proof that one stored checkpoint's log extends an older one's: the log
    only grew in between."""
    with tether_errors():
        store, _ = open_existing_store(data_dir, store_url)
        try:
            checkpoints = {c.size: c for c in SqlCheckpointStore(store).all()}
            sizes = sorted(checkpoints)
            new = newer if newer is not None else (sizes[-1] if sizes else None)
            old = older if older is not None else (sizes[-2] if len(sizes) > 1 else None)
            if old is None or new is None or old not in checkpoints or new not in checkpoints:
                fail(
                    f"name two stored checkpoints by size (stored: {sizes or 'none'})",
                    "not_found",
                    ExitCode.NOT_FOUND,
                )
            if old > new:
                fail("--older must not be larger than --newer", "usage")
            if checkpoints[old].partitions or checkpoints[new].partitions:
                _partitions_consistency(store, checkpoints[old], checkpoints[new])
                return
            leaves = _leaves(store, new)
        finally:
            store.close()
        _matching(store, checkpoints[new], leaves)
        proof = consistency_proof(old, leaves)
        _print(consistency_document(checkpoints[old], checkpoints[new], proof))


def _partitions_consistency(store: SqlStore, older: Checkpoint, newer: Checkpoint) -> None:
    """Print (JSON) one consistency proof per partition the older checkpoint signs, built from
    the stored records, and a table of the partitions on stderr; fail, printing no proof, when
    the newer checkpoint dropped or cut back a partition or the records were rewritten."""
    proofs: dict[str, list[bytes]] = {}
    after = newer.views()
    try:
        for name, view in older.views().items():
            new = after.get(name)
            if new is None or new.size < view.size:
                continue  # no proof can exist: the step says why
            leaves = _leaves(store, new.size, name)
            _matching(store, newer, leaves, name)
            proofs[name] = consistency_proof(view.size, leaves)
    finally:
        store.close()
    steps = check_partitions(older, newer, proofs)
    print_rich_table(err_console, _steps_table(older, newer, steps))
    failed = next((s for s in steps if not s.ok), None)
    if failed is not None:
        fail(
            f"the newer checkpoint does not extend the older one: {failed.problem}",
            "not_consistent",
            ExitCode.CHECK_FAILED,
        )
    _print(partitions_document(older, newer, proofs))


def _steps_table(older: Checkpoint, newer: Checkpoint, steps: list[PartitionStep]) -> Table:
    table = Table(
        title=f"partitions from the checkpoint of {older.size} records ({older.at}) to the one "
        f"of {newer.size} ({newer.at})"
    )
    for header in ("partition", "older size", "newer size", "proof hashes", "result"):
        table.add_column(header, no_wrap=header == "partition")
    for step in steps:
        result = "[green]extends[/]" if step.older is not None else "[green]new[/]"
        if step.problem is not None:
            result = f"[red]{escape(step.problem)}[/]"
        table.add_row(
            escape(step.partition),
            "-" if step.older is None else str(step.older.size),
            "-" if step.newer is None else str(step.newer.size),
            str(len(step.proof)),
            result,
        )
    return table


def verify_proof(
    file: Annotated[
        Path, typer.Argument(help="A proof `prove` or `consistency` printed.", dir_okay=False)
    ],
    public_key_file: PublicKeyFile = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the result as one JSON document (ok, type, and statement or problem).",
        ),
    ] = False,
) -> None:
    """Check an inclusion or consistency proof offline, with the public key alone."""
    with tether_errors():
        key = public_key_of(data_dir, public_key_file)
        if key is None:
            fail("pass --public-key FILE (from `tether audit public-key`)", "public_key_missing")
        if not file.exists():
            fail(f"{file} does not exist", "file_not_found", ExitCode.NOT_FOUND)
        raw = file.read_bytes()[: MAX_PROOF_BYTES + 1]
        if len(raw) > MAX_PROOF_BYTES:
            fail(f"{file} is larger than 1 MiB", "malformed_proof", ExitCode.CHECK_FAILED)
        try:
            document = json.loads(raw)
        except ValueError as error:
            fail(f"{file} is not JSON: {error}", "malformed_proof", ExitCode.CHECK_FAILED)
        if not isinstance(document, dict):
            fail(f"{file} is not a JSON object", "malformed_proof", ExitCode.CHECK_FAILED)
        problem, steps = verify_proof_document(document, key.verifies)
        if as_json:
            result: dict[str, object] = {"ok": problem is None, "type": document.get("type")}
            if steps:
                result["partitions"] = [_step_json(step) for step in steps]
            print_json(
                result | ({"problem": problem} if problem else {"statement": _describe(document)})
            )
        elif steps:
            older, newer = (Checkpoint.from_json(document[k]) for k in ("older", "newer"))
            print_rich_table(console, _steps_table(older, newer, steps))
        if problem is not None:
            fail(f"proof does not hold: {problem}", "proof_invalid", ExitCode.CHECK_FAILED)
        if not as_json:
            console.print(f"[green]ok[/]: {_describe(document)}", highlight=False, soft_wrap=True)


def _step_json(step: PartitionStep) -> dict[str, object]:
    return {
        "partition": step.partition,
        "older_size": None if step.older is None else step.older.size,
        "newer_size": None if step.newer is None else step.newer.size,
        "ok": step.ok,
        "problem": step.problem,
    }


def _describe(document: dict[str, object]) -> str:
    if document.get("type") == "tether.audit.consistency":
        older, newer = document["older"], document["newer"]
        assert isinstance(older, dict) and isinstance(newer, dict)
        what = "every partition of " if "partitions" in document else ""
        return (
            f"{what}the log of {newer['size']} records extends the log of {older['size']} records"
        )
    record, checkpoint = document["record"], document["checkpoint"]
    assert isinstance(record, dict) and isinstance(checkpoint, dict)
    where = f" of partition {record['partition']}" if "partition" in record else ""
    return (
        f"record {record['seq']}{where} is in the log of {checkpoint['size']} records signed "
        f"{checkpoint['at']}"
    )


def public_key(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Print the audit key's public half (PEM): what auditors and witnesses verify with."""
    with tether_errors():
        key = public_key_of(data_dir, None)
        if key is None:
            fail(
                f"no audit checkpoint key in {data_dir}/keys: `tether serve` creates it on start",
                "public_key_missing",
                ExitCode.NOT_FOUND,
            )
        sys.stdout.write(key.pem())
