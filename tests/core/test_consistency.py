"""Consistency between two checkpoints of every partition, in pure code: one RFC 6962 proof per
partition the older checkpoint signs, both signatures, and what it catches (a partition
rewritten, cut back or dropped; a forged signature; a proof moved to another partition)."""

from __future__ import annotations

import copy
import hashlib
import hmac
from collections.abc import Sequence

from tether.core.audit import LEGACY_PARTITION, AuditKind, AuditRecord, ChainHead, seal
from tether.core.checkpoint import Checkpoint, Signer
from tether.core.consistency import (
    check_partitions,
    consistency_document,
    verify_consistency_document,
    verify_proof_document,
)
from tether.core.merkle import Frontier, consistency_proof, leaf_hash

_KEY = b"k" * 32
AT = "2026-01-02T00:00:00+00:00"


def _sign(message: bytes) -> bytes:
    return hmac.new(_KEY, message, hashlib.sha256).digest()


def _verify(checkpoint: Checkpoint) -> bool:
    return hmac.compare_digest(_sign(checkpoint.message()), checkpoint.signature_bytes())


SIGNER = Signer("test", _sign)


def _chain(partition: str, bodies: Sequence[int]) -> list[AuditRecord]:
    out: list[AuditRecord] = []
    for i, n in enumerate(bodies):
        head = ChainHead(out[-1].seq, out[-1].hash) if out else None
        out.append(
            seal(
                head,
                record_id=f"aud_{partition}_{i}",
                at="2026-01-01T00:00:00+00:00",
                kind=AuditKind.DECISION,
                agent=None,
                task_id=None,
                body={"n": n},
                partition=partition,
            )
        )
    return out


def _leaves(records: Sequence[AuditRecord]) -> list[bytes]:
    return [leaf_hash(r.leaf()) for r in records]


def _signed(log: dict[str, list[AuditRecord]], at: str = AT) -> Checkpoint:
    heads = {
        name: (Frontier().extend(_leaves(records)), records[-1].hash)
        for name, records in log.items()
    }
    return SIGNER.checkpoint_all(log[next(iter(log))][0].format, heads, at)


def _proofs(older: Checkpoint, log: dict[str, list[AuditRecord]]) -> dict[str, list[bytes]]:
    """What ``tether audit consistency`` builds: a proof per partition the older signs, from
    the newer log's records, where one can exist."""
    out = {}
    for name, view in older.views().items():
        if name in log and len(log[name]) >= view.size:
            out[name] = consistency_proof(view.size, _leaves(log[name]))
    return out


def _document(
    old_log: dict[str, list[AuditRecord]], new_log: dict[str, list[AuditRecord]]
) -> dict[str, object]:
    older, newer = _signed(old_log), _signed(new_log, "2026-01-03T00:00:00+00:00")
    return consistency_document(older, newer, _proofs(older, new_log))


OLD = {"a": _chain("a", range(3)), "b": _chain("b", range(5))}


def test_a_log_that_only_grew_verifies_partition_by_partition() -> None:
    grown = {"a": _chain("a", range(7)), "b": _chain("b", range(5)), "c": _chain("c", range(2))}
    document = _document(OLD, grown)
    problem, steps = verify_consistency_document(document, _verify)
    assert problem is None
    assert [(s.partition, s.ok) for s in steps] == [("a", True), ("b", True), ("c", True)]
    sizes = [(s.older and s.older.size, s.newer and s.newer.size) for s in steps]
    assert sizes == [(3, 7), (5, 5), (None, 2)]  # c is new: nothing was promised about it
    assert len(steps[0].proof) > 0 and steps[1].proof == ()  # b did not move: equal roots
    assert verify_proof_document(document, _verify) == (problem, steps)


def test_a_rewritten_record_in_one_partition_is_caught() -> None:
    rewritten = {"a": _chain("a", [0, 99, 2, 3, 4]), "b": _chain("b", range(6))}
    problem, steps = verify_consistency_document(_document(OLD, rewritten), _verify)
    assert problem is not None and "partition a" in problem and "rewritten" in problem
    assert [s.ok for s in steps] == [False, True]


def test_a_partition_cut_back_is_caught() -> None:
    cut = {"a": _chain("a", range(3)), "b": _chain("b", range(2))}
    problem, steps = verify_consistency_document(_document(OLD, cut), _verify)
    assert problem == "partition b shrank from 5 to 2 records: it was cut back"
    assert [s.ok for s in steps] == [True, False]


def test_a_dropped_partition_is_caught() -> None:
    dropped = {"a": _chain("a", range(9))}
    document = _document(OLD, dropped)
    problem, steps = verify_consistency_document(document, _verify)
    assert problem is not None and "partition b" in problem and "dropped" in problem
    assert steps[1].newer is None
    # Leaving the partition's proof out of the document does not help either.
    document["partitions"] = [p for p in document["partitions"] if p["partition"] == "a"]  # type: ignore[attr-defined,index]
    assert verify_consistency_document(document, _verify)[0] == problem


def test_a_forged_or_swapped_signature_is_refused() -> None:
    grown = {"a": _chain("a", range(4)), "b": _chain("b", range(5))}
    document = _document(OLD, grown)
    for side in ("older", "newer"):
        forged = copy.deepcopy(document)
        forged[side]["signature"] = "QUJD"  # type: ignore[index]
        problem, steps = verify_consistency_document(forged, _verify)
        assert problem == f"the {side} checkpoint's signature is not good under this public key"
        assert steps == []
    # A checkpoint re-signed over a changed list by someone without the key: the list is
    # bound by the signed root, so changing a partition's root breaks the checkpoint itself.
    moved = copy.deepcopy(document)
    moved["newer"]["partitions"][0]["root"] = "ab" * 32  # type: ignore[index]
    assert verify_consistency_document(moved, _verify)[0] is not None


def test_a_proof_given_for_another_partition_does_not_hold() -> None:
    grown = {"a": _chain("a", range(6)), "b": _chain("b", range(9))}
    document = _document(OLD, grown)
    parts = document["partitions"]
    assert isinstance(parts, list)
    parts[0]["proof"], parts[1]["proof"] = parts[1]["proof"], parts[0]["proof"]
    assert verify_consistency_document(document, _verify)[0] is not None
    unknown = _document(OLD, grown)
    unknown["partitions"].append({"partition": "zz", "proof": []})  # type: ignore[attr-defined]
    assert "does not sign partition zz" in str(verify_consistency_document(unknown, _verify)[0])
    twice = _document(OLD, grown)
    twice["partitions"].append(twice["partitions"][0])  # type: ignore[attr-defined,index]
    assert "two proofs" in str(verify_consistency_document(twice, _verify)[0])


def test_a_log_that_moved_to_partitions_is_checked_from_its_legacy_checkpoint() -> None:
    legacy = _chain(LEGACY_PARTITION, range(4))
    older = SIGNER.checkpoint(
        legacy[0].format, Frontier().extend(_leaves(legacy)), legacy[-1].hash, AT
    )
    assert not older.partitions
    grown = {LEGACY_PARTITION: _chain(LEGACY_PARTITION, range(6)), "r1": _chain("r1", range(2))}
    newer = _signed(grown, "2026-01-03T00:00:00+00:00")
    document = consistency_document(older, newer, _proofs(older, grown))
    problem, steps = verify_proof_document(document, _verify)
    assert problem is None and [s.partition for s in steps] == [LEGACY_PARTITION, "r1"]
    replaced = {LEGACY_PARTITION: _chain(LEGACY_PARTITION, [7, 1, 2, 3, 4])}
    newer = _signed(replaced, "2026-01-03T00:00:00+00:00")
    steps = check_partitions(older, newer, _proofs(older, replaced))
    assert not steps[0].ok
