"""Signed audit checkpoints end to end: `tether audit export | verify | prove | consistency |
verify-proof | public-key` and the server's housekeeping.

The attacks are those of issue 14 item 5. Each passed `tether audit verify` before checkpoints.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from support import Agent
from tether.cli.main import app
from tether.cli.serve import Housekeeping
from tether.core.audit import AuditRecord, ChainHead, canonical_json, seal
from tether.core.checkpoint import verify_inclusion_document
from tether.identity.audit_key import CheckpointKey
from tether.notify.witness import FileWitness
from tether.runtime import Runtime
from tether.store.checkpoints import SqlCheckpointStore

runner = CliRunner()

SCOPES = [{"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}]


def _decide(analyst: Agent, n: int = 3) -> list[str]:
    """A task, ``n`` allowed reads and the close: records task_opened, n decisions, task_closed."""
    task = analyst.open_task(SCOPES).json()
    ids = []
    for _ in range(n):
        verdict = analyst.authorize(task["grant"], tool="crm.query", action="read", dataset="crm")
        assert verdict.json()["decision"] == "allow"
        ids.append(verdict.json()["decision_id"])
    analyst.close(task["task_id"])
    return ids


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def _export(runtime: Runtime, path: Path) -> tuple[list[str], str]:
    code, out = _cli("audit", "export", "-d", str(runtime.config.data_dir), "-o", str(path))
    assert code == 0, out
    *records, checkpoint = path.read_text().splitlines()
    return records, checkpoint


def _resealed(records: list[AuditRecord], seq: int, decision: str) -> list[AuditRecord]:
    """The records with ``seq``'s verdict changed and every later hash recomputed."""
    out = records[: seq - 1]
    head = ChainHead(out[-1].seq, out[-1].hash) if out else None
    for record in records[seq - 1 :]:
        body = json.loads(json.dumps(record.body))
        if record.seq == seq:
            body["verdict"]["decision"] = decision
        new = seal(
            head,
            record_id=record.record_id,
            at=record.at,
            kind=record.kind,
            agent=record.agent,
            task_id=record.task_id,
            body=body,
            format=record.format,
        )
        out.append(new)
        head = ChainHead(new.seq, new.hash)
    return out


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _verify_file(runtime: Runtime, path: Path) -> tuple[int, str]:
    return _cli("audit", "verify", "--file", str(path), "-d", str(runtime.config.data_dir))


# -- exports -------------------------------------------------------------------------------------


def test_an_export_cut_to_its_first_records_or_to_nothing_fails(
    analyst: Agent, runtime: Runtime, tmp_path: Path
) -> None:
    _decide(analyst)
    records, checkpoint = _export(runtime, tmp_path / "audit.jsonl")
    assert _verify_file(runtime, tmp_path / "audit.jsonl")[0] == 0
    for k in range(len(records)):
        code, out = _verify_file(runtime, _write(tmp_path / "cut.jsonl", records[:k]))
        assert code == 1 and "does not end with a signed checkpoint" in out, (k, out)
        # Keeping the signed line does not help: it names records that are gone.
        code, out = _verify_file(
            runtime, _write(tmp_path / "cut.jsonl", [*records[:k], checkpoint])
        )
        assert code == 1 and f"ends at record {k}" in out, (k, out)
    code, out = _verify_file(runtime, _write(tmp_path / "empty.jsonl", []))
    assert code == 1 and "does not end with a signed checkpoint" in out


def test_an_export_with_a_deny_for_an_allow_and_every_hash_recomputed_fails(
    analyst: Agent, runtime: Runtime, tmp_path: Path
) -> None:
    _decide(analyst)
    lines, checkpoint = _export(runtime, tmp_path / "audit.jsonl")
    records = [AuditRecord.from_json(json.loads(x)) for x in lines]
    forged = [canonical_json(r.to_json()).decode() for r in _resealed(records, 2, "deny")]
    # The chain alone holds: it is the signature that no longer matches.
    unsigned = _write(tmp_path / "unsigned.jsonl", forged)
    code, out = _cli("audit", "verify", "--file", str(unsigned), "--allow-unsigned")
    assert code == 0 and "a cut would not show" in out, out
    path = _write(tmp_path / "forged.jsonl", [*forged, checkpoint])
    code, out = _verify_file(runtime, path)
    assert code == 1 and "checkpoint of size 5" in out and "changed" in out, out
    # Nor can the forger sign a new checkpoint without the key.
    fake = json.loads(checkpoint)
    fake["checkpoint"]["root"] = "00" * 32
    code, out = _verify_file(runtime, _write(path, [*forged, json.dumps(fake)]))
    assert code == 1 and "signature" in out


def test_an_export_verifies_offline_with_the_public_key_alone(
    analyst: Agent, runtime: Runtime, tmp_path: Path
) -> None:
    _decide(analyst)
    _export(runtime, tmp_path / "audit.jsonl")
    code, pem = _cli("audit", "public-key", "-d", str(runtime.config.data_dir))
    assert code == 0 and "BEGIN PUBLIC KEY" in pem
    key_file = tmp_path / "audit-key.pub"
    key_file.write_text(
        runner.invoke(app, ["audit", "public-key", "-d", str(runtime.config.data_dir)]).output
    )
    elsewhere = tmp_path / "elsewhere"
    code, out = _cli(
        "audit", "verify", "--file", str(tmp_path / "audit.jsonl"),
        "--public-key", str(key_file), "-d", str(elsewhere),
    )  # fmt: skip
    assert code == 0 and "5 records" in out, out
    other = CheckpointKey.load_or_create(tmp_path / "other.pem")
    (tmp_path / "other.pub").write_text(other.public().pem())
    code, out = _cli(
        "audit", "verify", "--file", str(tmp_path / "audit.jsonl"),
        "--public-key", str(tmp_path / "other.pub"),
    )  # fmt: skip
    assert code == 1 and "signature" in out


# -- the live store ------------------------------------------------------------------------------


def _db(runtime: Runtime) -> sqlite3.Connection:
    return sqlite3.connect(runtime.config.data_dir / "tether.db")


def _verify_live(runtime: Runtime) -> tuple[int, str]:
    return _cli("audit", "verify", "-d", str(runtime.config.data_dir))


def test_a_cut_tail_with_the_head_moved_back_fails(analyst: Agent, runtime: Runtime) -> None:
    _decide(analyst)
    assert runtime.checkpoints is not None and runtime.checkpoints.tick(force=True)
    records = list(runtime.store.audit_records())
    with _db(runtime) as db:
        db.execute("DELETE FROM audit WHERE seq > 3")
        db.execute("UPDATE audit_head SET seq = 3, hash = ?", (records[2].hash,))
    code, out = _verify_live(runtime)
    assert code == 1 and "ends at record 3" in out and "covers 5 records" in out, out


def test_a_deny_for_an_allow_rehashed_in_the_store_fails(analyst: Agent, runtime: Runtime) -> None:
    _decide(analyst)
    assert runtime.checkpoints is not None and runtime.checkpoints.tick(force=True)
    forged = _resealed(list(runtime.store.audit_records()), 3, "deny")
    with _db(runtime) as db:
        for r in forged[2:]:
            db.execute(
                "UPDATE audit SET body = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (canonical_json(r.body).decode(), r.prev_hash, r.hash, r.seq),
            )
        db.execute("UPDATE audit_head SET seq = ?, hash = ?", (forged[-1].seq, forged[-1].hash))
    code, out = _verify_live(runtime)
    assert code == 1 and "records 1..5" in out and "changed" in out, out


def test_records_after_the_last_checkpoint_are_reported_unanchored(
    analyst: Agent, runtime: Runtime
) -> None:
    _decide(analyst)
    code, out = _verify_live(runtime)
    assert code == 0 and "no checkpoint" in out and "5 record(s) after the last checkpoint" in out
    assert runtime.checkpoints is not None and runtime.checkpoints.tick(force=True)
    _decide(analyst, 1)
    code, out = _verify_live(runtime)
    assert code == 0, out
    assert "1 checkpoint(s) verified, records 1..5 signed" in out
    assert "3 record(s) after the last checkpoint (unanchored)" in out


def test_housekeeping_checkpoints_and_signs_the_rest_when_it_stops(
    analyst: Agent, runtime: Runtime
) -> None:
    chores = Housekeeping(runtime, interval=3600)  # sweeps only when told to, here
    chores.start()
    _decide(analyst)
    chores.checkpoint()  # the log's first records: signed at once
    _decide(analyst, 1)
    chores.checkpoint()  # 3 more, no time passed: not due
    assert [c.size for c in SqlCheckpointStore(runtime.store).all()] == [5]
    chores.stop()
    assert [c.size for c in SqlCheckpointStore(runtime.store).all()] == [5, 8]


# -- proofs --------------------------------------------------------------------------------------


def test_a_decision_proves_offline_and_a_tampered_record_does_not(
    analyst: Agent, runtime: Runtime, tmp_path: Path
) -> None:
    ids = _decide(analyst)
    data_dir = str(runtime.config.data_dir)
    code, out = _cli("audit", "prove", ids[1], "-d", data_dir)
    assert code == 1 and "not anchored yet" in out
    assert runtime.checkpoints is not None and runtime.checkpoints.tick(force=True)
    result = runner.invoke(app, ["audit", "prove", ids[1], "-d", data_dir])
    assert result.exit_code == 0, result.output
    proof = json.loads(result.output)
    assert proof["record"]["body"]["decision_id"] == ids[1] and proof["tree_size"] == 5
    key = CheckpointKey.load(CheckpointKey.path_in(runtime.config.data_dir)).public()
    assert verify_inclusion_document(proof, key.verifies) is None
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(proof))
    code, out = _cli("audit", "verify-proof", str(path), "-d", data_dir)
    assert code == 0 and "record 3 is in the log of 5 records" in out, out

    tampered = json.loads(json.dumps(proof))
    tampered["record"]["body"]["verdict"]["decision"] = "deny"
    path.write_text(json.dumps(tampered))
    code, out = _cli("audit", "verify-proof", str(path), "-d", data_dir)
    assert code == 1 and "proof_invalid" in out, out
    # Even resealed so it hashes to itself, it is not the record the checkpoint signed.
    record = AuditRecord.from_json(tampered["record"])
    resealed = _resealed([record], 1, "deny")[0]
    forged = seal(
        ChainHead(record.seq - 1, record.prev_hash),
        record_id=record.record_id,
        at=record.at,
        kind=record.kind,
        agent=record.agent,
        task_id=record.task_id,
        body=resealed.body,
        format=record.format,
    )
    tampered["record"] = forged.to_json()
    assert "not in the log" in str(verify_inclusion_document(tampered, key.verifies))

    code, out = _cli("audit", "prove", "dec_unknown", "-d", data_dir)
    assert code == 4 and "no audit record" in out


def test_consistency_between_two_checkpoints_verifies_offline(
    analyst: Agent, runtime: Runtime, tmp_path: Path
) -> None:
    data_dir = str(runtime.config.data_dir)
    assert runtime.checkpoints is not None
    _decide(analyst)
    runtime.checkpoints.tick(force=True)
    _decide(analyst, 2)
    runtime.checkpoints.tick(force=True)
    result = runner.invoke(app, ["audit", "consistency", "-d", data_dir])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert (document["older"]["size"], document["newer"]["size"]) == (5, 9)
    path = tmp_path / "consistency.json"
    path.write_text(json.dumps(document))
    code, out = _cli("audit", "verify-proof", str(path), "-d", data_dir)
    assert code == 0 and "the log of 9 records extends the log of 5 records" in out, out
    document["older"]["root"] = "ab" * 32
    path.write_text(json.dumps(document))
    assert _cli("audit", "verify-proof", str(path), "-d", data_dir)[0] == 1


def test_a_witness_file_catches_checkpoints_deleted_with_the_tail(
    analyst: Agent, runtime: Runtime, tmp_path: Path
) -> None:
    _decide(analyst)
    assert runtime.checkpoints is not None
    made = runtime.checkpoints.tick(force=True)
    assert made is not None
    kept = tmp_path / "witness.jsonl"
    FileWitness(kept).send(made)  # what --audit-witness FILE does on each checkpoint
    records = list(runtime.store.audit_records())
    with _db(runtime) as db:  # the owner hides the cut: checkpoints, tail and head together
        db.execute("DELETE FROM audit_checkpoints")
        db.execute("DELETE FROM audit WHERE seq > 2")
        db.execute("UPDATE audit_head SET seq = 2, hash = ?", (records[1].hash,))
    code, out = _verify_live(runtime)
    assert code == 0 and "no checkpoint" in out  # the database alone cannot tell
    code, out = _cli("audit", "verify", "-d", str(runtime.config.data_dir), "--witness", str(kept))
    assert code == 1 and "ends at record 2" in out and "covers 5 records" in out, out
    kept.write_text("{oops\n")
    code, out = _cli("audit", "verify", "-d", str(runtime.config.data_dir), "--witness", str(kept))
    assert code == 1 and "malformed_witness" in out and "line 1" in out
