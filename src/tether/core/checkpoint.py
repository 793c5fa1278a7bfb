"""Signed checkpoints of the audit log, as Certificate Transparency's signed tree heads (RFC 6962
§3.5) and the C2SP tlog-checkpoint note they inspired.

A hash chain alone proves nothing to someone who can write the store: whoever rewrites a record
can recompute every later hash and move the head, or cut the tail and move the head back. A
checkpoint is tether's signature, with a key that does not live in the database, over

    (chain format, size = seq of the last record, Merkle root of records 1..size,
     hash of record size, time)

so a reader holding the public key detects any later rewrite of records 1..size (the root and
head no longer match) and any truncation below size (the checkpoint names records that are
gone). Records after the last checkpoint are *unanchored*: intact as a chain, but not yet
covered by a signature. Checkpoints are stored beside the log and can be sent to a witness (a file
or a webhook), so deleting them from the database is also seen.

The log is partitioned (:mod:`tether.core.audit`: a chain per replica), so a checkpoint made since
signs *every* partition's head together (``v2``): the list of (partition, size, head, root) in
partition order, each ``root`` the Merkle root of that partition's records 1..size, with
``size`` their total and ``root`` the Merkle root over the partitions' entries
(:meth:`PartitionHead.leaf`). A reader then detects a rewrite, gap, fork or reorder inside any
partition up to its signed size, a partition cut below it, and a partition dropped altogether. A
checkpoint signed before partitions (``v1``, no list) covers the legacy partition ``0`` alone,
and keeps verifying as it did.

The signed message is the text :meth:`Checkpoint.message` returns; the signature (Ed25519, made
outside ``core``) is checked by a function the caller passes in, so this module stays pure.
:mod:`tether.core.logcheck` checks the log against its checkpoints; :func:`inclusion_document` and
:func:`verify_inclusion_document` carry a record's inclusion proof to an offline verifier.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tether.core.audit import (
    LEGACY_PARTITION,
    AuditRecord,
    ChainFormat,
    ChainHead,
    check_partition,
    verify_chain,
)
from tether.core.merkle import (
    Frontier,
    leaf_hash,
    root_from_inclusion,
    tree_hash,
    verify_consistency,
)
from tether.core.scope import JSONValue

NOTE_ORIGIN = "tether audit checkpoint v1"
"""The first line of a signed message over the legacy partition alone: names what it covers."""
NOTE_ORIGIN_PARTITIONS = "tether audit checkpoint v2"
"""The first line of a signed message over every partition's head."""
_MAX_PARTITIONS = 4096

_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_SIGNATURE_CHARS = 256


@dataclass(frozen=True, slots=True)
class PartitionHead:
    """One partition as a checkpoint signs it: records 1..``size`` of ``partition``."""

    partition: str
    size: int
    head: str
    """The chain hash of the partition's record ``size``; 64 zeros when it is empty."""
    root: str
    """The RFC 6962 Merkle root of the partition's records 1..size (hex)."""

    def line(self) -> str:
        return f"partition {self.partition} {self.size} {self.head} {self.root}"

    def leaf(self) -> bytes:
        """This entry's leaf in the tree over the partitions (the checkpoint's ``root``)."""
        return self.line().encode("utf-8")

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "partition": self.partition,
            "size": self.size,
            "head": self.head,
            "root": self.root,
        }

    @staticmethod
    def from_json(raw: object) -> PartitionHead:
        if not isinstance(raw, Mapping):
            raise ValueError("a checkpoint's partition is a JSON object")
        partition, size = raw.get("partition"), raw.get("size")
        head, root = raw.get("head"), raw.get("root")
        if not isinstance(partition, str):
            raise ValueError("a checkpoint's partition must name its partition")
        check_partition(partition)
        if type(size) is not int or size < 0:
            raise ValueError("a checkpoint's partition size must be a whole number")
        for name, value in (("head", head), ("root", root)):
            if not isinstance(value, str) or not _HEX64.fullmatch(value):
                raise ValueError(f"a checkpoint's partition {name} must be 64 lowercase hex digits")
        return PartitionHead(partition, size, str(head), str(root))


def partitions_root(partitions: Sequence[PartitionHead]) -> str:
    """The Merkle root over the partitions' entries (in the order given: partition order)."""
    return tree_hash([leaf_hash(p.leaf()) for p in partitions]).hex()


def partitions_digest(partitions: Sequence[PartitionHead]) -> str:
    """What a v2 checkpoint's ``head`` holds: the SHA-256 of its partition lines, in order."""
    text = "".join(p.line() + "\n" for p in partitions)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed tree head of the audit log: records 1..``size`` as tether held them at ``at``.

    With ``partitions`` (v2): every partition's head, ``size`` their total, ``root`` the tree
    over their entries and ``head`` the digest of their list. Without (v1, signed before the log
    was partitioned): the legacy partition's records 1..size."""

    format: ChainFormat
    size: int
    root: str
    """v1: the RFC 6962 Merkle root of records 1..size (hex), each record's leaf its canonical
    bytes. v2: the Merkle root over the partitions' entries."""
    head: str
    """v1: the chain hash of record ``size`` (hex); 64 zeros for the empty log. v2: the
    digest of the partition list (:func:`partitions_digest`)."""
    at: str
    key_id: str
    """Which key signed (its RFC 7638 thumbprint): a verifier holding several picks by it."""
    signature: str
    """Base64 of the signature over :meth:`message`."""
    partitions: tuple[PartitionHead, ...] = ()

    def message(self) -> bytes:
        if self.partitions:
            return partitions_message(self.format, self.partitions, self.at)
        return signed_message(self.format, self.size, self.root, self.head, self.at)

    def views(self) -> dict[str, PartitionHead]:
        """Each partition this checkpoint covers, by name (a v1 checkpoint: the legacy one)."""
        if self.partitions:
            return {p.partition: p for p in self.partitions}
        return {LEGACY_PARTITION: PartitionHead(LEGACY_PARTITION, self.size, self.head, self.root)}

    def to_json(self) -> dict[str, JSONValue]:
        out: dict[str, JSONValue] = {
            "format": self.format.value,
            "size": self.size,
            "root": self.root,
            "head": self.head,
            "at": self.at,
            "key_id": self.key_id,
            "signature": self.signature,
        }
        if self.partitions:
            out["partitions"] = [p.to_json() for p in self.partitions]
        return out

    def signature_bytes(self) -> bytes:
        try:
            return base64.b64decode(self.signature, validate=True)
        except (binascii.Error, ValueError):
            return b""

    @staticmethod
    def from_json(raw: object) -> Checkpoint:
        """Parse a checkpoint; ``ValueError`` naming what is wrong."""
        if not isinstance(raw, Mapping):
            raise ValueError("a checkpoint is a JSON object")
        try:
            fmt, size = raw["format"], raw["size"]
            texts = {k: raw[k] for k in ("root", "head", "at", "key_id", "signature")}
        except KeyError as missing:
            raise ValueError(f"checkpoint field {missing} is missing") from None
        if type(fmt) is not int or fmt not in {f.value for f in ChainFormat}:
            raise ValueError("checkpoint format must be 1 or 2")
        if type(size) is not int or size < 0:
            raise ValueError("checkpoint size must be a whole number")
        for name, value in texts.items():
            if not isinstance(value, str) or not 0 < len(value) <= _MAX_SIGNATURE_CHARS:
                raise ValueError(f"checkpoint {name} must be a short string")
        for name in ("root", "head"):
            if not _HEX64.fullmatch(str(texts[name])):
                raise ValueError(f"checkpoint {name} must be 64 lowercase hex digits")
        partitions = _partitions(raw.get("partitions", []))
        if partitions and (
            size != sum(p.size for p in partitions)
            or texts["root"] != partitions_root(partitions)
            or texts["head"] != partitions_digest(partitions)
        ):
            raise ValueError("checkpoint size, root and head must be those of its partitions")
        return Checkpoint(
            format=ChainFormat(fmt),
            size=size,
            root=str(texts["root"]),
            head=str(texts["head"]),
            at=str(texts["at"]),
            key_id=str(texts["key_id"]),
            signature=str(texts["signature"]),
            partitions=partitions,
        )


def _partitions(raw: object) -> tuple[PartitionHead, ...]:
    if not isinstance(raw, list) or len(raw) > _MAX_PARTITIONS:
        raise ValueError(f"checkpoint partitions must be a list of at most {_MAX_PARTITIONS}")
    parsed = tuple(PartitionHead.from_json(item) for item in raw)
    names = [p.partition for p in parsed]
    if names != sorted(set(names)):
        raise ValueError("checkpoint partitions must be in partition order, each once")
    return parsed


def is_export_checkpoint(line: Mapping[str, object]) -> bool:
    """True for the line ``tether audit export`` closes an export with: ``{"checkpoint": ...}``
    and nothing else (a record has ``seq``, ``hash``...)."""
    return set(line) == {"checkpoint"}


def signed_message(format: ChainFormat, size: int, root: str, head: str, at: str) -> bytes:
    """The exact bytes a checkpoint's signature covers: one ``name value`` line per field."""
    if "\n" in at:
        raise ValueError("a checkpoint time is one line")
    lines = [NOTE_ORIGIN, f"format {format.value}", f"size {size}", f"root {root}"]
    lines += [f"head {head}", f"at {at}"]
    return ("\n".join(lines) + "\n").encode("utf-8")


def partitions_message(format: ChainFormat, partitions: Sequence[PartitionHead], at: str) -> bytes:
    """The exact bytes a v2 checkpoint's signature covers: the totals, then one line per
    partition (``partition <name> <size> <head> <root>``) in partition order."""
    if "\n" in at:
        raise ValueError("a checkpoint time is one line")
    size = sum(p.size for p in partitions)
    lines = [NOTE_ORIGIN_PARTITIONS, f"format {format.value}", f"size {size}"]
    lines += [f"root {partitions_root(partitions)}", f"at {at}"]
    lines += [p.line() for p in partitions]
    return ("\n".join(lines) + "\n").encode("utf-8")


class Signer:
    """What signs checkpoints: a key id and a signing function (Ed25519, kept outside ``core``)."""

    def __init__(self, key_id: str, sign: Callable[[bytes], bytes]) -> None:
        self.key_id = key_id
        self._sign = sign

    def checkpoint(self, format: ChainFormat, frontier: Frontier, head: str, at: str) -> Checkpoint:
        root = frontier.root().hex()
        signature = self._sign(signed_message(format, frontier.size, root, head, at))
        return Checkpoint(
            format=format,
            size=frontier.size,
            root=root,
            head=head,
            at=at,
            key_id=self.key_id,
            signature=base64.b64encode(signature).decode("ascii"),
        )

    def checkpoint_all(
        self, format: ChainFormat, heads: Mapping[str, tuple[Frontier, str]], at: str
    ) -> Checkpoint:
        """A v2 checkpoint of every partition in ``heads`` (name -> its Merkle frontier and
        the hash of its last record)."""
        partitions = tuple(
            PartitionHead(name, frontier.size, head, frontier.root().hex())
            for name, (frontier, head) in sorted(heads.items())
        )
        signature = self._sign(partitions_message(format, partitions, at))
        return Checkpoint(
            format=format,
            size=sum(p.size for p in partitions),
            root=partitions_root(partitions),
            head=partitions_digest(partitions),
            at=at,
            key_id=self.key_id,
            signature=base64.b64encode(signature).decode("ascii"),
            partitions=partitions,
        )


Verifier = Callable[[Checkpoint], bool]
"""True when a checkpoint's signature is good under the key the reader trusts."""


def consistent(
    older: Checkpoint, newer: Checkpoint, proof: Sequence[bytes], verify: Verifier
) -> bool:
    """True when both checkpoints are signed and ``proof`` shows ``newer``'s log extends
    ``older``'s (RFC 6962 §2.1.2): the log only grew in between."""
    return (
        verify(older)
        and verify(newer)
        and older.format is newer.format
        and verify_consistency(
            older.size,
            newer.size,
            bytes.fromhex(older.root),
            bytes.fromhex(newer.root),
            proof,
        )
    )


def inclusion_document(
    record: AuditRecord, checkpoint: Checkpoint, proof: Sequence[bytes]
) -> dict[str, JSONValue]:
    """What ``tether audit prove`` prints: a record, its audit path in its partition's tree and
    the checkpoint that signs that tree's root, enough for :func:`verify_inclusion_document`
    with nothing else but the public key."""
    view = checkpoint.views()[record.partition]
    return {
        "type": "tether.audit.inclusion",
        "record": record.to_json(),
        "leaf_index": record.seq - 1,
        "tree_size": view.size,
        "proof": [p.hex() for p in proof],
        "checkpoint": checkpoint.to_json(),
    }


def consistency_document(
    older: Checkpoint, newer: Checkpoint, proof: Sequence[bytes]
) -> dict[str, JSONValue]:
    return {
        "type": "tether.audit.consistency",
        "older": older.to_json(),
        "newer": newer.to_json(),
        "proof": [p.hex() for p in proof],
    }


def proof_hashes(raw: object) -> list[bytes]:
    """A proof's hashes as a document carries them (hex); ``ValueError`` for anything else."""
    if not isinstance(raw, list) or len(raw) > 64:
        raise ValueError("proof must be a list of at most 64 hashes")
    out = []
    for item in raw:
        if not isinstance(item, str) or not _HEX64.fullmatch(item):
            raise ValueError("each proof hash is 64 lowercase hex digits")
        out.append(bytes.fromhex(item))
    return out


def verify_inclusion_document(document: Mapping[str, object], verify: Verifier) -> str | None:
    """Check a ``tether.audit.inclusion`` or ``tether.audit.consistency`` document offline;
    ``None`` when it holds, else what is wrong. ``verify`` checks a checkpoint's signature
    (for instance ``CheckpointPublicKey.verifies`` from a PEM file)."""
    kind = document.get("type")
    try:
        proof = proof_hashes(document.get("proof"))
        if kind == "tether.audit.consistency":
            older = Checkpoint.from_json(document.get("older"))
            newer = Checkpoint.from_json(document.get("newer"))
            if older.partitions or newer.partitions:
                return (
                    "checkpoints of every partition are proved consistent partition by "
                    "partition (tether.core.consistency.verify_proof_document)"
                )
            if not consistent(older, newer, proof, verify):
                return (
                    f"the log of {newer.size} records does not extend the log of {older.size} "
                    "records (or a checkpoint's signature is bad)"
                )
            return None
        if kind != "tether.audit.inclusion":
            return "not a tether proof: type must be tether.audit.inclusion or .consistency"
        checkpoint = Checkpoint.from_json(document.get("checkpoint"))
        raw = document.get("record")
        if not isinstance(raw, Mapping):
            return "record must be a JSON object"
        record = AuditRecord.from_json(raw)
    except ValueError as error:
        return str(error)
    if not verify(checkpoint):
        return "the checkpoint's signature is not good under this public key"
    if record.format is not checkpoint.format:
        return "the record's chain format is not the checkpoint's"
    own = verify_chain([record], after=ChainHead(record.seq - 1, record.prev_hash))
    if not own.ok:
        return f"the record does not hash to its own hash: {own.problem}"
    view = checkpoint.views().get(record.partition)
    if view is None:
        return f"the checkpoint does not cover the record's partition {record.partition!r}"
    root = root_from_inclusion(record.seq - 1, view.size, leaf_hash(record.leaf()), proof)
    if root is None or not hmac.compare_digest(root.hex(), view.root):
        where = "" if record.partition == LEGACY_PARTITION else f" (partition {record.partition})"
        return (
            f"record {record.seq}{where} as given is not in the log of {view.size} records the "
            "checkpoint signs"
        )
    return None


__all__ = [
    "NOTE_ORIGIN",
    "Checkpoint",
    "Signer",
    "Verifier",
    "consistency_document",
    "consistent",
    "inclusion_document",
    "is_export_checkpoint",
    "proof_hashes",
    "signed_message",
    "verify_inclusion_document",
]
