"""Signed checkpoints over the stored chain: what a writer of the database can no longer hide.

Each attack here passes the hash chain's own check (``verify_chain`` against the stored head), as
it did before checkpoints; the checkpoints catch it.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tether.cli.main import app
from tether.core.audit import AuditKind, ChainHead, canonical_json, seal, verify_chain
from tether.core.checkpoint import Checkpoint, consistent
from tether.core.errors import Unavailable
from tether.core.logcheck import verify_log
from tether.core.merkle import Frontier, consistency_proof, leaf_hash
from tether.identity.audit_key import CheckpointKey
from tether.notify.witness import FileWitness, WebhookWitness
from tether.service.checkpoints import Checkpointer, CheckpointSchedule, Witness
from tether.service.clock import ManualClock
from tether.store import SqlStore
from tether.store.checkpoints import SqlCheckpointStore

from .conftest import Backend, Make

runner = CliRunner()


@pytest.fixture
def key(tmp_path: Path) -> CheckpointKey:
    return CheckpointKey.load_or_create(tmp_path / "keys" / "audit-checkpoint.pem")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def _checkpointer(
    store: SqlStore,
    key: CheckpointKey,
    clock: ManualClock,
    witnesses: tuple[Witness, ...] = (),
    failures: list[str] | None = None,
) -> Checkpointer:
    return Checkpointer(
        log=store,
        checkpoints=SqlCheckpointStore(store),
        signer=key.signer(),
        verify=key.public().verifies,
        clock=clock,
        schedule=CheckpointSchedule(every_records=10, every_seconds=60),
        witnesses=witnesses,
        on_witness_error=None if failures is None else lambda w, e: failures.append(w.name),
    )


def _append(store: SqlStore, make: Make, n: int) -> None:
    for i in range(n):
        decision = "allow" if i % 2 == 0 else "deny"
        store.append_audit(make.entry(AuditKind.DECISION, body={"verdict": {"decision": decision}}))


def _report(store: SqlStore, key: CheckpointKey) -> tuple[bool, str | None, int]:
    report = verify_log(
        store.audit_records(),
        SqlCheckpointStore(store).all(),
        key.public().verifies,
        head=store.chain_head(),
    )
    return report.ok, report.problem, report.unanchored


def _old_check(store: SqlStore) -> bool:
    """What ``tether audit verify`` checked before checkpoints: links and the stored head."""
    return verify_chain(store.audit_records(), store.chain_head()).ok


def _rewrite_from(backend: Backend, store: SqlStore, seq: int, body: dict[str, object]) -> None:
    """The attacker with write access: replace record ``seq``'s body and recompute every later
    hash and the head, as tether itself would have sealed them."""
    records = list(store.audit_records())
    head = None if seq == 1 else ChainHead(records[seq - 2].seq, records[seq - 2].hash)
    for record in records[seq - 1 :]:
        new = seal(
            head,
            record_id=record.record_id,
            at=record.at,
            kind=record.kind,
            agent=record.agent,
            task_id=record.task_id,
            body=body if record.seq == seq else record.body,  # type: ignore[arg-type]
            format=record.format,
        )
        backend.execute(
            "UPDATE audit SET body = :b, prev_hash = :p, hash = :h WHERE seq = :s",
            b=canonical_json(new.body).decode(),
            p=new.prev_hash,
            h=new.hash,
            s=new.seq,
        )
        head = ChainHead(new.seq, new.hash)
    assert head is not None
    backend.execute("UPDATE audit_head SET seq = :s, hash = :h", s=head.seq, h=head.hash)


def test_a_checkpoint_every_n_records_or_t_seconds(
    store: SqlStore, make: Make, key: CheckpointKey, clock: ManualClock
) -> None:
    checkpointer = _checkpointer(store, key, clock)
    assert checkpointer.tick() is None  # an empty log: nothing to sign
    _append(store, make, 3)
    first = checkpointer.tick()  # the first record ever makes one at once
    assert first is not None and first.size == 3 and key.public().verifies(first)
    _append(store, make, 4)
    assert checkpointer.tick() is None  # 4 records and no time: not due
    assert _report(store, key) == (True, None, 4)  # reported, not a failure
    clock.advance(61)
    second = checkpointer.tick()
    assert second is not None and second.size == 7
    _append(store, make, 10)
    third = checkpointer.tick()  # 10 records: due at once
    assert third is not None and third.size == 17
    assert [c.size for c in SqlCheckpointStore(store).all()] == [3, 7, 17]
    assert _report(store, key) == (True, None, 0)
    _append(store, make, 1)
    assert checkpointer.tick(force=True) is not None  # shutdown anchors the rest
    assert _report(store, key) == (True, None, 0)


def test_successive_checkpoints_prove_the_log_only_grew(
    store: SqlStore, make: Make, key: CheckpointKey, clock: ManualClock
) -> None:
    checkpointer = _checkpointer(store, key, clock)
    _append(store, make, 5)
    older = checkpointer.tick()
    _append(store, make, 6)
    newer = checkpointer.tick(force=True)
    assert older is not None and newer is not None
    leaves = [leaf_hash(r.leaf()) for r in store.audit_records()]
    proof = consistency_proof(older.size, leaves)
    assert consistent(older, newer, proof, key.public().verifies)
    assert not consistent(newer, older, proof, key.public().verifies)
    forged = Checkpoint.from_json(older.to_json() | {"root": "ab" * 32})
    assert not consistent(forged, newer, proof, key.public().verifies)


def test_truncating_the_tail_and_moving_the_head_back_is_caught(
    backend: Backend, store: SqlStore, make: Make, key: CheckpointKey, clock: ManualClock
) -> None:
    _append(store, make, 8)
    assert _checkpointer(store, key, clock).tick() is not None
    records = list(store.audit_records())
    backend.execute("DELETE FROM audit WHERE seq > 5")
    backend.execute("UPDATE audit_head SET seq = 5, hash = :h", h=records[4].hash)
    assert _old_check(store)  # the hole: the chain alone looks whole
    ok, problem, _ = _report(store, key)
    assert not ok and problem is not None
    assert "ends at record 5" in problem and "covers 8 records" in problem
    with pytest.raises(Unavailable, match="behind its last checkpoint"):
        _checkpointer(store, key, clock).tick()


def test_turning_an_allow_into_a_deny_and_rehashing_is_caught(
    backend: Backend, store: SqlStore, make: Make, key: CheckpointKey, clock: ManualClock
) -> None:
    _append(store, make, 4)
    checkpointer = _checkpointer(store, key, clock)
    assert checkpointer.tick() is not None
    _append(store, make, 4)
    assert checkpointer.tick(force=True) is not None  # checkpoints at 4 and 8
    allowed = list(store.audit_records())[4]
    assert allowed.body == {"verdict": {"decision": "allow"}}
    _rewrite_from(backend, store, 5, {"verdict": {"decision": "deny"}})
    assert _old_check(store)
    ok, problem, _ = _report(store, key)
    assert not ok and problem is not None
    # Narrowed to the records between the last good checkpoint and the first bad one.
    assert "records 5..8" in problem and "changed" in problem


def test_a_rewrite_of_records_another_process_wrote_is_unanchored_but_never_signed(
    backend: Backend, store: SqlStore, make: Make, key: CheckpointKey, clock: ManualClock
) -> None:
    _append(store, make, 3)
    _checkpointer(store, key, clock).tick()
    _append(store, make, 3)
    backend.execute("UPDATE audit SET body = :b WHERE seq = 5", b='{"forged":true}')
    # A process that did not write records 4..6 (a restarted server, another replica) reads
    # them back and checks their chain before it signs.
    with pytest.raises(Unavailable, match="broken at record 5"):
        _checkpointer(backend.open(), key, clock).tick(force=True)
    assert [c.size for c in SqlCheckpointStore(store).all()] == [3]


def test_the_writer_signs_the_records_it_sealed_not_a_rewrite_of_them(
    backend: Backend, store: SqlStore, make: Make, key: CheckpointKey, clock: ManualClock
) -> None:
    checkpointer = _checkpointer(store, key, clock)
    _append(store, make, 3)
    assert checkpointer.tick() is not None
    _append(store, make, 3)
    sealed = list(store.audit_records())
    backend.execute("UPDATE audit SET body = :b WHERE seq = 5", b='{"forged":true}')
    # The writer does not read its own records back: it signs them as it sealed them, so the
    # rewrite is no longer unanchored but contradicts a signed checkpoint.
    made = checkpointer.tick(force=True)
    assert made is not None and made.size == 6
    tree = Frontier().extend(leaf_hash(r.leaf()) for r in sealed)
    assert made.root == tree.root().hex() and made.head == sealed[-1].hash
    ok, problem, _ = _report(store, key)
    assert not ok
    assert problem is not None and "changed" in problem


def test_records_the_writer_sealed_cannot_be_rehashed_into_a_checkpoint(
    backend: Backend, store: SqlStore, make: Make, key: CheckpointKey, clock: ManualClock
) -> None:
    checkpointer = _checkpointer(store, key, clock)
    _append(store, make, 3)
    assert checkpointer.tick() is not None
    _append(store, make, 3)
    assert list(store.audit_records())[4].body == {"verdict": {"decision": "deny"}}
    _rewrite_from(backend, store, 5, {"verdict": {"decision": "allow"}})
    assert _old_check(store)  # rehashed and the head moved: the chain alone looks whole
    with pytest.raises(Unavailable, match="record 5 of partition '0' is not the record"):
        checkpointer.tick(force=True)
    assert [c.size for c in SqlCheckpointStore(store).all()] == [3]


def test_records_another_process_adds_to_the_partition_are_read_and_signed(
    backend: Backend, store: SqlStore, make: Make, key: CheckpointKey, clock: ManualClock
) -> None:
    checkpointer = _checkpointer(store, key, clock)
    _append(store, make, 2)
    _append(backend.open(), make, 2)  # a CLI command on the same database and partition
    _append(store, make, 2)
    made = checkpointer.tick(force=True)
    assert made is not None and made.size == 6
    tree = Frontier().extend(leaf_hash(r.leaf()) for r in store.audit_records())
    assert made.root == tree.root().hex()
    assert _report(store, key)[:2] == (True, None)


def test_a_forged_or_foreign_checkpoint_is_refused(
    store: SqlStore, make: Make, key: CheckpointKey, clock: ManualClock, tmp_path: Path
) -> None:
    _append(store, make, 3)
    _checkpointer(store, key, clock).tick()
    other = CheckpointKey.load_or_create(tmp_path / "other.pem")
    ok, problem, _ = _report(store, other)
    assert not ok and problem is not None and "signature" in problem
    # A checkpoint by another key is not extended either.
    _append(store, make, 1)
    with pytest.raises(Unavailable, match="not signed by this audit key"):
        _checkpointer(store, other, clock).tick(force=True)


def test_the_store_keeps_only_newer_checkpoints_of_the_log_as_it_is(
    store: SqlStore, make: Make, key: CheckpointKey, clock: ManualClock
) -> None:
    _append(store, make, 4)
    made = _checkpointer(store, key, clock).tick()
    assert made is not None
    stored = SqlCheckpointStore(store)
    latest = stored.latest()
    assert latest is not None and latest[0] == made and latest[1]["0"].root().hex() == made.root
    assert not stored.add(made, latest[1])  # not newer
    # A second handle (another replica) on the same database sees it and makes no duplicate.
    assert _checkpointer(store, key, clock).tick(force=True) is None


def test_witnesses_get_each_new_checkpoint_and_a_failed_one_is_retried(
    store: SqlStore, make: Make, key: CheckpointKey, clock: ManualClock, tmp_path: Path
) -> None:
    late = tmp_path / "not-yet" / "witness.jsonl"
    failures: list[str] = []
    checkpointer = _checkpointer(store, key, clock, (FileWitness(late),), failures)
    _append(store, make, 2)
    made = checkpointer.tick()
    assert made is not None and failures == [str(late)]
    late.parent.mkdir()
    assert checkpointer.tick() is None  # nothing new to sign, but the witness catches up
    lines = [json.loads(x) for x in late.read_text().splitlines()]
    assert lines == [{"type": "tether.audit.checkpoint", "checkpoint": made.to_json()}]
    checkpointer.tick()
    assert len(late.read_text().splitlines()) == 1  # told once


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, object]]]]:
    got: list[dict[str, object]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/witness?token=s3cret", got
    server.shutdown()
    server.server_close()


def test_a_webhook_witness_receives_the_checkpoint_as_json(
    store: SqlStore,
    make: Make,
    key: CheckpointKey,
    clock: ManualClock,
    receiver: tuple[str, list[dict[str, object]]],
) -> None:
    url, got = receiver
    witness = WebhookWitness(url)
    assert "s3cret" not in witness.name
    _append(store, make, 2)
    made = _checkpointer(store, key, clock, (witness,)).tick()
    assert made is not None
    assert got == [{"type": "tether.audit.checkpoint", "checkpoint": made.to_json()}]


def test_the_cli_checks_checkpoints_in_the_database_store_url_names(
    backend: Backend, store: SqlStore, make: Make, clock: ManualClock, tmp_path: Path
) -> None:
    data_dir = tmp_path / "shared"
    key = CheckpointKey.load_or_create(CheckpointKey.path_in(data_dir))
    _append(store, make, 4)
    assert _checkpointer(store, key, clock).tick() is not None
    where = ["-d", str(data_dir), "--store-url", backend.url]
    verified = runner.invoke(app, ["audit", "verify", *where])
    assert verified.exit_code == 0 and "records 1..4 signed" in verified.output, verified.output
    exported = runner.invoke(
        app, ["audit", "export", "-d", str(tmp_path / "no-keys"), "--store-url", backend.url]
    )
    assert exported.exit_code == 2 and "public_key_missing" in exported.output
    records = list(store.audit_records())
    backend.execute("DELETE FROM audit WHERE seq > 2")
    backend.execute("UPDATE audit_head SET seq = 2, hash = :h", h=records[1].hash)
    broken = runner.invoke(app, ["audit", "verify", *where])
    assert broken.exit_code == 1 and "covers 4 records" in " ".join(broken.output.split())
    assert backend.url not in broken.output
