"""The partitioned audit log: a chain per writer, checkpoints over every head, and what
verification catches in any partition (a deleted record, a reordered pair, a record moved between
partitions, a partition cut back or dropped whole).

Two handles with different partitions on one database play two replicas. Each attack is made
the way a writer of the database would make it, in SQL, after a checkpoint signed the log.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tether.cli.main import app
from tether.core.audit import LEGACY_PARTITION, AuditKind
from tether.core.checkpoint import Checkpoint
from tether.core.logcheck import LogReport, verify_log
from tether.core.merkle import Frontier, leaf_hash
from tether.identity.audit_key import CheckpointKey
from tether.service.checkpoints import Checkpointer
from tether.service.clock import ManualClock
from tether.store import SqlStore
from tether.store.checkpoints import SqlCheckpointStore

from .conftest import Backend, Make

runner = CliRunner()


@pytest.fixture
def key(tmp_path: Path) -> CheckpointKey:
    return CheckpointKey.load_or_create(tmp_path / "keys" / "audit-checkpoint.pem")


def _checkpoint(store: SqlStore, key: CheckpointKey) -> Checkpoint:
    made = Checkpointer(
        log=store,
        checkpoints=SqlCheckpointStore(store),
        signer=key.signer(),
        verify=key.public().verifies,
        clock=ManualClock(),
    ).tick(force=True)
    assert made is not None
    return made


def _write(stores: list[SqlStore], make: Make, rounds: int) -> None:
    for n in range(rounds):
        for store in stores:
            store.append_audit(make.entry(AuditKind.DECISION, body={"n": n}))


def _verify(store: SqlStore, key: CheckpointKey) -> LogReport:
    return verify_log(
        store.audit_records(),
        SqlCheckpointStore(store).all(),
        key.public().verifies,
        heads=store.chain_heads(),
        format=store.chain_format,
    )


@pytest.fixture
def pair(backend: Backend) -> list[SqlStore]:
    return [backend.open(partition="a"), backend.open(partition="b")]


def test_each_writer_appends_to_a_chain_of_its_own(pair: list[SqlStore], make: Make) -> None:
    a, b = pair
    _write(pair, make, 3)
    heads = a.chain_heads()
    assert heads["a"] is not None and heads["a"].seq == 3
    assert heads["b"] is not None and heads["b"].seq == 3
    assert a.chain_head() == heads["a"] and b.chain_head() == heads["b"]
    records = list(a.audit_records())
    for name in ("a", "b"):
        mine = [r for r in records if r.partition == name]
        assert [r.seq for r in mine] == [1, 2, 3]
        assert mine[0].prev_hash == "0" * 64
        assert all(r.to_json()["partition"] == name for r in mine)  # inside what is hashed
    # The log's order is stable: by time, then partition, then seq (the records share a time).
    assert records == list(b.audit_records())
    assert [(r.partition, r.seq) for r in records] == sorted((r.partition, r.seq) for r in records)
    assert list(a.audit_records(1, partition="b")) == [r for r in records if r.partition == "b"][1:]


def test_a_checkpoint_signs_every_partition_head_and_the_log_verifies(
    pair: list[SqlStore], make: Make, key: CheckpointKey
) -> None:
    a, _ = pair
    _write(pair, make, 3)
    first = _checkpoint(a, key)
    assert [(p.partition, p.size) for p in first.partitions] == [("a", 3), ("b", 3)]
    assert first.size == 6 and key.public().verifies(first)
    assert Checkpoint.from_json(first.to_json()) == first
    _write(pair[1:], make, 2)
    second = _checkpoint(pair[1], key)  # made by the other replica, extending the first
    assert [(p.partition, p.size) for p in second.partitions] == [("a", 3), ("b", 5)]
    report = _verify(a, key)
    assert report.ok, report.problem
    assert (report.records, report.checkpoints, report.anchored) == (8, 2, 8)


def test_a_deleted_record_in_one_partition_is_caught(
    backend: Backend, pair: list[SqlStore], make: Make, key: CheckpointKey
) -> None:
    a, _ = pair
    _write(pair, make, 4)
    _checkpoint(a, key)
    backend.execute("DELETE FROM audit WHERE partition_id = 'b' AND seq = 2")
    report = _verify(a, key)
    assert not report.ok and report.partition == "b" and report.first_bad_seq == 3
    assert report.problem is not None and "deleted" in report.problem


def test_a_reordered_pair_in_one_partition_is_caught(
    backend: Backend, pair: list[SqlStore], make: Make, key: CheckpointKey
) -> None:
    a, _ = pair
    _write(pair, make, 4)
    _checkpoint(a, key)
    # Records 2 and 3 of b swap places (their seq), each keeping its own links and hash.
    for old, new in ((2, 100), (3, 2), (100, 3)):
        backend.execute(
            "UPDATE audit SET seq = :new WHERE partition_id = 'b' AND seq = :old", old=old, new=new
        )
    report = _verify(a, key)
    assert not report.ok and report.partition == "b" and report.first_bad_seq == 2


def test_a_record_moved_to_another_partition_is_caught(
    backend: Backend, pair: list[SqlStore], make: Make
) -> None:
    a, _ = pair
    _write(pair, make, 2)
    # b's last record is re-filed as a's third, and a's head moved to match it.
    moved = [r for r in a.audit_records(partition="b")][-1]
    backend.execute(
        "UPDATE audit SET partition_id = 'a', seq = 3 WHERE partition_id = 'b' AND seq = 2"
    )
    backend.execute(
        "UPDATE audit_head SET seq = 3, hash = :h WHERE partition_id = 'a'", h=moved.hash
    )
    backend.execute(
        "UPDATE audit_head SET seq = 1, hash = :h WHERE partition_id = 'b'", h=moved.prev_hash
    )
    report = verify_log(a.audit_records(), [], lambda _: False, heads=a.chain_heads())
    assert not report.ok and report.partition == "a" and report.first_bad_seq == 3


def test_a_dropped_partition_is_caught_by_the_checkpoint(
    backend: Backend, pair: list[SqlStore], make: Make, key: CheckpointKey
) -> None:
    a, _ = pair
    _write(pair, make, 3)
    _checkpoint(a, key)
    backend.execute("DELETE FROM audit WHERE partition_id = 'b'")
    backend.execute("DELETE FROM audit_head WHERE partition_id = 'b'")
    # The heads and the records that are left agree: only the checkpoint remembers b.
    assert verify_log(a.audit_records(), [], lambda _: False, heads=a.chain_heads()).ok
    report = _verify(a, key)
    assert not report.ok and report.partition == "b"
    assert report.problem is not None and "dropped" in report.problem


def test_a_partition_cut_back_with_its_head_is_caught_by_the_checkpoint(
    backend: Backend, pair: list[SqlStore], make: Make, key: CheckpointKey
) -> None:
    a, _ = pair
    _write(pair, make, 3)
    _checkpoint(a, key)
    kept = next(iter(a.audit_records(partition="a")))
    backend.execute("DELETE FROM audit WHERE partition_id = 'a' AND seq > 1")
    backend.execute(
        "UPDATE audit_head SET seq = 1, hash = :h WHERE partition_id = 'a'", h=kept.hash
    )
    report = _verify(a, key)
    assert not report.ok and report.partition == "a" and report.first_bad_seq == 2
    assert report.problem is not None and "removed from the end" in report.problem
    # The checkpointer refuses to sign over it.
    with pytest.raises(Exception, match="behind its last checkpoint"):
        _checkpoint(a, key)


def test_a_later_checkpoint_that_drops_a_partition_fails_verification(
    pair: list[SqlStore], make: Make, key: CheckpointKey
) -> None:
    a, _ = pair
    _write(pair, make, 2)
    first = _checkpoint(a, key)
    _write([a], make, 3)
    # A larger checkpoint, signed with the key, over a alone (as a rewriter holding it might).
    records = list(a.audit_records(partition="a"))
    only_a = key.signer().checkpoint_all(
        a.chain_format,
        {"a": (Frontier().extend(leaf_hash(r.leaf()) for r in records), records[-1].hash)},
        "2026-12-31T00:00:00+00:00",
    )
    assert only_a.size > first.size
    report = verify_log(a.audit_records(), [first, only_a], key.public().verifies)
    assert not report.ok and report.partition == "b"
    assert "dropped or cut back" in str(report.problem)


def test_the_legacy_partition_keeps_verifying_beside_new_ones(
    backend: Backend, make: Make, key: CheckpointKey
) -> None:
    legacy = backend.open()  # partition 0: a single process, or a store from before partitions
    _write([legacy], make, 3)
    before = _checkpoint(legacy, key)
    assert not before.partitions and before.size == 3  # signed as before partitions
    assert all("partition" not in r.to_json() for r in legacy.audit_records())
    replica = backend.open(partition="r1")
    _write([replica], make, 2)
    after = _checkpoint(replica, key)
    assert [(p.partition, p.size) for p in after.partitions] == [(LEGACY_PARTITION, 3), ("r1", 2)]
    report = _verify(legacy, key)
    assert report.ok and report.checkpoints == 2 and report.anchored == 5


def test_audit_verify_names_the_broken_partition(
    backend: Backend, pair: list[SqlStore], make: Make, key: CheckpointKey, tmp_path: Path
) -> None:
    a, _ = pair
    _write(pair, make, 3)
    _checkpoint(a, key)
    args = ["audit", "verify", "--data-dir", str(tmp_path), "--store-url", backend.url]
    ok = runner.invoke(app, args)
    assert ok.exit_code == 0, ok.output
    assert "6 records, chain intact" in ok.output and "2 partitions" in ok.output
    backend.execute("DELETE FROM audit WHERE partition_id = 'b' AND seq = 2")
    broken = runner.invoke(app, args)
    assert broken.exit_code == 1
    assert "record 3 of partition 'b'" in broken.output


def _consistency(backend: Backend, data: Path, *extra: str) -> tuple[int, str, str]:
    args = ["audit", "consistency", "--data-dir", str(data), "--store-url", backend.url, *extra]
    result = runner.invoke(app, args)
    return result.exit_code, result.stdout, result.stderr


def _verify_proof(document: object, data: Path, *extra: str) -> tuple[int, str]:
    path = data / "consistency.json"
    path.write_text(json.dumps(document))
    result = runner.invoke(
        app, ["audit", "verify-proof", str(path), "--data-dir", str(data), *extra]
    )
    return result.exit_code, result.output


def test_consistency_between_checkpoints_of_every_partition_verifies_offline(
    backend: Backend, pair: list[SqlStore], make: Make, key: CheckpointKey, tmp_path: Path
) -> None:
    a, b = pair
    _write(pair, make, 3)
    older = _checkpoint(a, key)
    _write([b], make, 2)
    _write([backend.open(partition="c")], make, 1)  # a replica started since
    newer = _checkpoint(b, key)
    code, out, err = _consistency(backend, tmp_path)
    assert code == 0, err
    document = json.loads(out)
    assert document["type"] == "tether.audit.consistency"
    assert (document["older"]["size"], document["newer"]["size"]) == (older.size, newer.size)
    assert [p["partition"] for p in document["partitions"]] == ["a", "b"]
    # The table of partitions goes to stderr, so stdout stays one JSON document.
    assert "partitions from the checkpoint of 6 records" in err
    for row in ("a\t3\t3\t0\textends", "b\t3\t5\t", "c\t-\t1\t0\tnew"):
        assert row in err, err
    code, out = _verify_proof(document, tmp_path)
    assert code == 0, out
    assert "ok: every partition of the log of 9 records extends the log of 6 records" in out
    assert "b\t3\t5\t" in out
    code, out = _verify_proof(document, tmp_path, "--json")
    verdict = json.loads(out)
    assert verdict["ok"] is True and [p["ok"] for p in verdict["partitions"]] == [True] * 3
    # A signature forged on either checkpoint is refused.
    document["newer"]["signature"] = document["older"]["signature"]
    code, out = _verify_proof(document, tmp_path)
    assert code == 1 and "newer checkpoint's signature is not good" in out


def test_consistency_catches_a_partition_rewritten_under_a_later_checkpoint(
    backend: Backend, pair: list[SqlStore], make: Make, key: CheckpointKey, tmp_path: Path
) -> None:
    a, _ = pair
    _write(pair, make, 3)
    older = _checkpoint(a, key)
    _write(pair, make, 1)
    # A rewriter of the database holding the key: record 2 of b replaced, and a larger
    # checkpoint signed over what the store now holds.
    backend.execute(
        "UPDATE audit SET body = :body WHERE partition_id = 'b' AND seq = 2", body='{"n":99}'
    )
    rewritten = _resign(a, key, "2026-12-31T00:00:00+00:00")
    assert SqlCheckpointStore(a).add(rewritten[0], rewritten[1])
    code, out, err = _consistency(backend, tmp_path)
    assert code == 1 and out == ""  # no proof printed
    assert "not_consistent" in err and "partition b" in err and "rewritten" in err
    assert "a\t3\t4\t" in err and "extends" in err
    assert older.size == 6


def test_consistency_catches_a_partition_cut_back_or_dropped(
    backend: Backend, pair: list[SqlStore], make: Make, key: CheckpointKey, tmp_path: Path
) -> None:
    a, b = pair
    _write(pair, make, 3)
    _checkpoint(a, key)
    _write([a], make, 4)
    # b cut back to one record and its head moved back, a checkpoint signed over that.
    kept = next(iter(b.audit_records(partition="b")))
    backend.execute("DELETE FROM audit WHERE partition_id = 'b' AND seq > 1")
    backend.execute(
        "UPDATE audit_head SET seq = 1, hash = :h WHERE partition_id = 'b'", h=kept.hash
    )
    # tether never stores a checkpoint that shrinks: the rewriter writes the row itself.
    assert not SqlCheckpointStore(a).add(*_resign(a, key, "2026-12-30T00:00:00+00:00"))
    _insert(backend, _resign(a, key, "2026-12-30T00:00:00+00:00"))
    code, out, err = _consistency(backend, tmp_path)
    assert code == 1 and out == ""
    assert "partition b shrank from 3 to 1 records: it was cut back" in err
    # b dropped whole, and a larger checkpoint signed without it.
    backend.execute("DELETE FROM audit WHERE partition_id = 'b'")
    backend.execute("DELETE FROM audit_head WHERE partition_id = 'b'")
    _write([a], make, 2)
    dropped = _resign(a, key, "2026-12-31T00:00:00+00:00")
    assert [p.partition for p in dropped[0].partitions] == ["a"]
    _insert(backend, dropped)
    older = SqlCheckpointStore(a).all()[0].size
    code, out, err = _consistency(backend, tmp_path, "--older", str(older))
    assert code == 1 and out == ""
    assert "partition b (3 records in the older checkpoint) is missing" in err
    assert "dropped" in err


def _resign(store: SqlStore, key: CheckpointKey, at: str) -> tuple[Checkpoint, dict[str, Frontier]]:
    """A checkpoint over what the store holds now, signed with the key (as a rewriter holding
    it would), and its frontiers."""
    frontiers: dict[str, Frontier] = {}
    heads: dict[str, tuple[Frontier, str]] = {}
    for name in sorted(store.audit_partitions()):
        records = list(store.audit_records(partition=name))
        if records:
            frontiers[name] = Frontier().extend(leaf_hash(r.leaf()) for r in records)
            heads[name] = (frontiers[name], records[-1].hash)
    return key.signer().checkpoint_all(store.chain_format, heads, at), frontiers


def _insert(backend: Backend, signed: tuple[Checkpoint, dict[str, Frontier]]) -> None:
    """Store a checkpoint row in SQL, past the checks tether's own writes make."""
    checkpoint, frontiers = signed
    row = {k: v for k, v in checkpoint.to_json().items() if k != "partitions"}
    backend.execute(
        "INSERT INTO audit_checkpoints (size, format, root, head, at, key_id, signature, "
        "frontier, partitions) VALUES (:size, :format, :root, :head, :at, :key_id, :signature, "
        ":frontier, :partitions)",
        **row,
        frontier=json.dumps({n: [h.hex() for h in f.hashes] for n, f in frontiers.items()}),
        partitions=json.dumps([p.to_json() for p in checkpoint.partitions]),
    )
