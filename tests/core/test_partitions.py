"""The partitioned audit log in pure code: records carry their partition inside what is hashed
(except the legacy partition's, whose hashes predate partitions), the log's order across
partitions is stable, and a checkpoint signs every partition's head."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from tether.core.audit import (
    LEGACY_PARTITION,
    AuditKind,
    AuditRecord,
    ChainFormat,
    ChainHead,
    check_partition,
    seal,
    verify_chain,
)
from tether.core.checkpoint import (
    Checkpoint,
    Signer,
    inclusion_document,
    verify_inclusion_document,
)
from tether.core.logcheck import sign_log, verify_log
from tether.core.merkle import Frontier, inclusion_proof, leaf_hash
from tether.core.partitions import log_order

_KEY = b"k" * 32


def _sign(message: bytes) -> bytes:
    return hmac.new(_KEY, message, hashlib.sha256).digest()


def _verify(checkpoint: Checkpoint) -> bool:
    return hmac.compare_digest(_sign(checkpoint.message()), checkpoint.signature_bytes())


SIGNER = Signer("test", _sign)


def _chain(partition: str, n: int, at: str = "2026-01-01T00:00:00+00:00") -> list[AuditRecord]:
    out: list[AuditRecord] = []
    for i in range(n):
        head = ChainHead(out[-1].seq, out[-1].hash) if out else None
        out.append(
            seal(
                head,
                record_id=f"aud_{partition}_{i}",
                at=at,
                kind=AuditKind.DECISION,
                agent=None,
                task_id=None,
                body={"n": i},
                partition=partition,
            )
        )
    return out


def test_a_partition_is_named_by_a_short_safe_word() -> None:
    assert check_partition("web-1.eu_west") == "web-1.eu_west"
    for bad in ("", "-x", "a b", "a/b", "x" * 65, "é"):
        with pytest.raises(ValueError):
            check_partition(bad)


def test_the_partition_is_hashed_except_the_legacy_ones() -> None:
    legacy, other = _chain(LEGACY_PARTITION, 1)[0], _chain("r1", 1)[0]
    assert "partition" not in legacy.to_json() and other.to_json()["partition"] == "r1"
    assert AuditRecord.from_json(other.to_json()) == other
    assert AuditRecord.from_json(legacy.to_json()) == legacy
    # Moved to another partition, a record no longer hashes to its own hash.
    moved = AuditRecord(**{**_fields(other), "partition": "r2"})
    assert not verify_chain([moved]).ok
    with pytest.raises(ValueError):
        AuditRecord.from_json({**legacy.to_json(), "partition": LEGACY_PARTITION})


def _fields(record: AuditRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in AuditRecord.__slots__}


def test_the_log_order_is_by_time_then_partition_then_seq_and_keeps_each_partition() -> None:
    a = _chain("a", 2, at="2026-01-01T00:00:01+00:00")
    b = _chain("b", 2, at="2026-01-01T00:00:00+00:00")
    merged = list(log_order([a, b]))
    assert [(r.partition, r.seq) for r in merged] == [("b", 1), ("b", 2), ("a", 1), ("a", 2)]
    assert merged == list(log_order([b, a]))


def test_a_checkpoint_of_every_partition_round_trips_and_rejects_a_changed_list() -> None:
    a, b = _chain("a", 3), _chain("b", 2)
    report = verify_log(log_order([a, b]), [], _verify)
    assert report.ok and report.frontier is None  # two partitions: not a v1 checkpoint
    signed = sign_log(SIGNER, report, "2026-01-02T00:00:00+00:00")
    assert [(p.partition, p.size) for p in signed.partitions] == [("a", 3), ("b", 2)]
    assert _verify(signed) and Checkpoint.from_json(signed.to_json()) == signed
    raw = signed.to_json()
    listed = raw["partitions"]
    assert isinstance(listed, list)
    for changed in (listed[:1], listed[::-1], [listed[0], {**listed[1], "size": 1}]):  # type: ignore[dict-item]
        with pytest.raises(ValueError):
            Checkpoint.from_json({**raw, "partitions": changed})
    assert verify_log(log_order([a, b]), [signed], _verify).anchored == 5
    # A partition the checkpoint covers, missing from what is read, is a dropped partition.
    dropped = verify_log(iter(a), [signed], _verify)
    assert not dropped.ok and dropped.partition == "b" and "dropped" in str(dropped.problem)


def test_a_record_proves_its_place_in_its_partition_under_a_checkpoint_of_all() -> None:
    a, b = _chain("a", 3), _chain("b", 5)
    signed = sign_log(SIGNER, verify_log(log_order([a, b]), [], _verify), "2026-01-02T00:00:00Z")
    leaves = [leaf_hash(r.leaf()) for r in b]
    document = inclusion_document(b[3], signed, inclusion_proof(3, leaves))
    assert verify_inclusion_document(document, _verify) is None
    # The same path does not lead from a record of the other partition.
    forged = inclusion_document(a[2], signed, inclusion_proof(3, leaves))
    assert verify_inclusion_document(forged, _verify) is not None
    assert Frontier().extend(leaves).root().hex() == signed.views()["b"].root


def test_format_one_chains_carry_the_partition_too() -> None:
    record = seal(
        None,
        record_id="aud_1",
        at="2026-01-01T00:00:00+00:00",
        kind=AuditKind.DECISION,
        agent=None,
        task_id=None,
        body={},
        format=ChainFormat.LEGACY,
        partition="r1",
    )
    assert record.content()["partition"] == "r1" and verify_chain([record]).ok
