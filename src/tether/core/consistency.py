"""Consistency between two signed checkpoints of the partitioned audit log: every partition the
older one signs is a prefix of the same partition in the newer one (RFC 6962 §2.1.2 / RFC 9162
§2.1.4, one proof per partition).

A checkpoint of every partition (``v2``, :mod:`tether.core.checkpoint`) signs the list of
(partition, size, head, root); its signature and its own ``root`` over that list bind each
partition's Merkle root. Between an older and a newer checkpoint, for each partition the older
one lists:

- the partition must still be listed in the newer one (else it was *dropped*);
- its size must not have shrunk (else it was *cut back*);
- an RFC 6962 consistency proof must lead from its old (size, root) to its new (size, root)
  (else records 1..old size were *rewritten*, reordered or replaced).

Partitions that appear only in the newer checkpoint (a replica that started since) are fine:
the older one promised nothing about them. An older checkpoint signed before partitions (``v1``)
is read as its legacy partition ``0`` alone, so a log that moved to partitions in between is
checked too. :func:`consistency_document` is what ``tether audit consistency`` prints;
:func:`verify_proof_document` checks it (or any proof ``tether audit prove`` and
``consistency`` print) offline, with the public key alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tether.core.checkpoint import (
    Checkpoint,
    PartitionHead,
    Verifier,
    proof_hashes,
    verify_inclusion_document,
)
from tether.core.merkle import verify_consistency
from tether.core.scope import JSONValue

CONSISTENCY_TYPE = "tether.audit.consistency"


@dataclass(frozen=True, slots=True)
class PartitionStep:
    """One partition between two checkpoints, and whether the newer one extends the older."""

    partition: str
    older: PartitionHead | None
    """``None``: the partition appears only in the newer checkpoint."""
    newer: PartitionHead | None
    """``None``: the partition is missing from the newer checkpoint."""
    proof: tuple[bytes, ...]
    problem: str | None
    """``None`` when the step holds; else what is wrong, in words."""

    @property
    def ok(self) -> bool:
        return self.problem is None


def check_partitions(
    older: Checkpoint, newer: Checkpoint, proofs: Mapping[str, Sequence[bytes]]
) -> list[PartitionStep]:
    """Each partition of either checkpoint (in partition order), checked as the module says.
    Signatures are not checked here (:func:`verify_consistency_document` does)."""
    before, after = older.views(), newer.views()
    steps = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        proof = tuple(proofs.get(name, ()))
        steps.append(PartitionStep(name, old, new, proof, _problem(name, old, new, proof)))
    return steps


def _problem(
    name: str, old: PartitionHead | None, new: PartitionHead | None, proof: Sequence[bytes]
) -> str | None:
    if old is None:
        return None  # new since the older checkpoint: nothing was promised about it
    if new is None:
        return (
            f"partition {name} ({old.size} records in the older checkpoint) is missing from "
            "the newer one: it was dropped"
        )
    if new.size < old.size:
        return f"partition {name} shrank from {old.size} to {new.size} records: it was cut back"
    if not verify_consistency(
        old.size, new.size, bytes.fromhex(old.root), bytes.fromhex(new.root), proof
    ):
        return (
            f"records 1..{old.size} of partition {name} are not the first {old.size} of its "
            f"{new.size} records in the newer checkpoint: they were rewritten or replaced"
        )
    return None


def consistency_document(
    older: Checkpoint, newer: Checkpoint, proofs: Mapping[str, Sequence[bytes]]
) -> dict[str, JSONValue]:
    """What ``tether audit consistency`` prints for checkpoints of every partition: both
    checkpoints and, for each partition the older one signs, its proof."""
    return {
        "type": CONSISTENCY_TYPE,
        "older": older.to_json(),
        "newer": newer.to_json(),
        "partitions": [
            {"partition": name, "proof": [p.hex() for p in proofs.get(name, ())]}
            for name in sorted(older.views())
        ],
    }


def _proofs(raw: object) -> dict[str, list[bytes]]:
    if not isinstance(raw, list):
        raise ValueError("partitions must be a list of {partition, proof}")
    out: dict[str, list[bytes]] = {}
    for item in raw:
        if not isinstance(item, Mapping) or not isinstance(item.get("partition"), str):
            raise ValueError("each partition's proof names its partition")
        name = str(item["partition"])
        if name in out:
            raise ValueError(f"partition {name} has two proofs")
        out[name] = proof_hashes(item.get("proof"))
    return out


def verify_consistency_document(
    document: Mapping[str, object], verify: Verifier
) -> tuple[str | None, list[PartitionStep]]:
    """Check a consistency document of :func:`consistency_document`'s shape offline: both
    signatures, one chain format, and every partition step. ``(None, steps)`` when it holds,
    else ``(what is wrong, the steps checked so far)``."""
    try:
        older = Checkpoint.from_json(document.get("older"))
        newer = Checkpoint.from_json(document.get("newer"))
        proofs = _proofs(document.get("partitions"))
    except ValueError as error:
        return str(error), []
    if not verify(older):
        return "the older checkpoint's signature is not good under this public key", []
    if not verify(newer):
        return "the newer checkpoint's signature is not good under this public key", []
    if older.format is not newer.format:
        return "the two checkpoints are of different chain formats", []
    unknown = sorted(proofs.keys() - older.views().keys())
    if unknown:
        return f"the older checkpoint does not sign partition {unknown[0]}", []
    steps = check_partitions(older, newer, proofs)
    failed = next((s for s in steps if not s.ok), None)
    return (None if failed is None else failed.problem), steps


def verify_proof_document(
    document: Mapping[str, object], verify: Verifier
) -> tuple[str | None, list[PartitionStep]]:
    """Any proof ``tether audit prove`` or ``consistency`` prints, checked offline: a
    consistency proof per partition (this module), else a record's inclusion or a consistency
    proof of the legacy partition (:func:`tether.core.checkpoint.verify_inclusion_document`)."""
    if document.get("type") == CONSISTENCY_TYPE and "partitions" in document:
        return verify_consistency_document(document, verify)
    return verify_inclusion_document(document, verify), []


__all__ = [
    "CONSISTENCY_TYPE",
    "PartitionStep",
    "check_partitions",
    "consistency_document",
    "verify_consistency_document",
    "verify_proof_document",
]
