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

The signed message is the text :meth:`Checkpoint.message` returns; the signature (Ed25519, made
outside ``core``) is checked by a function the caller passes in, so this module stays pure.
:func:`verify_log` checks a chain against its checkpoints; :func:`inclusion_document` and
:func:`verify_inclusion_document` carry a record's inclusion proof to an offline verifier.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from tether.core.audit import GENESIS_HASH, AuditRecord, ChainFormat, ChainHead, verify_chain
from tether.core.merkle import (
    Frontier,
    leaf_hash,
    root_from_inclusion,
    verify_consistency,
)
from tether.core.scope import JSONValue

NOTE_ORIGIN = "tether audit checkpoint v1"
"""The first line of every signed message: names what the signature is over."""

_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_SIGNATURE_CHARS = 256


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed tree head of the audit log: records 1..``size`` as tether held them at ``at``."""

    format: ChainFormat
    size: int
    root: str
    """The RFC 6962 Merkle root of records 1..size (hex), each record's leaf its canonical bytes."""
    head: str
    """The chain hash of record ``size`` (hex); 64 zeros for the empty log."""
    at: str
    key_id: str
    """Which key signed (its RFC 7638 thumbprint): a verifier holding several picks by it."""
    signature: str
    """Base64 of the signature over :meth:`message`."""

    def message(self) -> bytes:
        return signed_message(self.format, self.size, self.root, self.head, self.at)

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "format": self.format.value,
            "size": self.size,
            "root": self.root,
            "head": self.head,
            "at": self.at,
            "key_id": self.key_id,
            "signature": self.signature,
        }

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
        return Checkpoint(
            format=ChainFormat(fmt),
            size=size,
            root=str(texts["root"]),
            head=str(texts["head"]),
            at=str(texts["at"]),
            key_id=str(texts["key_id"]),
            signature=str(texts["signature"]),
        )


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


Verifier = Callable[[Checkpoint], bool]
"""True when a checkpoint's signature is good under the key the reader trusts."""


@dataclass(frozen=True, slots=True)
class LogReport:
    """The chain checked link by link and against every checkpoint given."""

    ok: bool
    records: int
    first_bad_seq: int | None = None
    problem: str | None = None
    checkpoints: int = 0
    """How many checkpoints matched the records."""
    anchored: int = 0
    """Records 1..anchored are covered by a good checkpoint."""
    frontier: Frontier | None = None
    """The whole log's Merkle frontier, when every record was read."""
    head: str = GENESIS_HASH
    format: ChainFormat | None = None

    @property
    def unanchored(self) -> int:
        """Records after the last checkpoint: intact as a chain, not yet signed."""
        return max(0, self.records - self.anchored)


def verify_log(
    records: Iterable[AuditRecord],
    checkpoints: Sequence[Checkpoint],
    verify: Verifier,
    *,
    head: ChainHead | None = None,
    format: ChainFormat | None = None,
) -> LogReport:
    """Check ``records`` (in order, from the first) as a chain, against ``head`` when known, and
    against every checkpoint: each must be signed under the reader's key, and its root and head
    must be those of the records it names. A checkpoint past the last record means records were
    cut off the end (with the stored head moved back to hide it)."""
    ordered = sorted(checkpoints, key=lambda c: c.size)
    for cp in ordered:
        if not verify(cp):
            return _bad(
                0,
                cp.size,
                f"the checkpoint of size {cp.size} (signed {cp.at}) does not carry a good "
                "signature under the audit key: it was forged or altered, or another key signed it",
            )
    walk = _Walk(ordered, format)
    chain = verify_chain(walk.records(records), head, format=format)
    if walk.problem is not None:
        bad_seq, problem = walk.problem
        return _bad(chain.records, bad_seq, problem, walk.matched, walk.anchored)
    if not chain.ok:
        return _bad(chain.records, chain.first_bad_seq, chain.problem, walk.matched, walk.anchored)
    beyond = [cp for cp in ordered if cp.size > walk.frontier.size]
    if beyond:
        last = beyond[-1]
        return _bad(
            chain.records,
            walk.frontier.size + 1,
            f"the log ends at record {walk.frontier.size}, but a checkpoint signed {last.at} "
            f"covers {last.size} records: records were removed from the end (and the stored "
            "head moved back)",
            walk.matched,
            walk.anchored,
        )
    return LogReport(
        True,
        chain.records,
        checkpoints=walk.matched,
        anchored=walk.anchored,
        frontier=walk.frontier,
        head=walk.head,
        format=walk.format,
    )


def _bad(
    records: int,
    seq: int | None,
    problem: str | None,
    matched: int = 0,
    anchored: int = 0,
) -> LogReport:
    return LogReport(False, records, seq, problem, checkpoints=matched, anchored=anchored)


class _Walk:
    """Follows the records as :func:`verify_chain` reads them, growing the Merkle tree and
    checking each checkpoint when its size is reached."""

    def __init__(self, checkpoints: Sequence[Checkpoint], format: ChainFormat | None) -> None:
        self._pending = list(checkpoints)
        self.frontier = Frontier()
        self.head = GENESIS_HASH
        self.format = format
        self.matched = 0
        self.anchored = 0
        self.problem: tuple[int, str] | None = None

    def records(self, records: Iterable[AuditRecord]) -> Iterator[AuditRecord]:
        self._check()  # a checkpoint of the empty log
        if self.problem is not None:
            return
        for record in records:
            yield record  # verify_chain has checked its link when it asks for the next one
            self.format = self.format or record.format
            self.frontier = self.frontier.append(leaf_hash(record.leaf()))
            self.head = record.hash
            self._check()
            if self.problem is not None:
                return

    def _check(self) -> None:
        while self._pending and self._pending[0].size == self.frontier.size:
            cp = self._pending.pop(0)
            wrong = self.format is not None and cp.format is not self.format
            same = hmac.compare_digest(cp.root, self.frontier.root().hex()) and (
                hmac.compare_digest(cp.head, self.head)
            )
            if wrong or not same:
                first = self.anchored + 1
                self.problem = (
                    first,
                    f"records {first}..{cp.size} are not those the checkpoint of size {cp.size} "
                    f"(signed {cp.at}) covers: a record among them was changed, removed or "
                    "inserted, and the later hashes recomputed",
                )
                return
            self.matched += 1
            self.anchored = cp.size


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
    """What ``tether audit prove`` prints: a record, its audit path and the checkpoint it leads
    to, enough for :func:`verify_inclusion_document` with nothing else but the public key."""
    return {
        "type": "tether.audit.inclusion",
        "record": record.to_json(),
        "leaf_index": record.seq - 1,
        "tree_size": checkpoint.size,
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


def _hashes(raw: object) -> list[bytes]:
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
        proof = _hashes(document.get("proof"))
        if kind == "tether.audit.consistency":
            older = Checkpoint.from_json(document.get("older"))
            newer = Checkpoint.from_json(document.get("newer"))
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
    root = root_from_inclusion(record.seq - 1, checkpoint.size, leaf_hash(record.leaf()), proof)
    if root is None or not hmac.compare_digest(root.hex(), checkpoint.root):
        return (
            f"record {record.seq} as given is not in the log of {checkpoint.size} records the "
            "checkpoint signs"
        )
    return None


__all__ = [
    "NOTE_ORIGIN",
    "Checkpoint",
    "LogReport",
    "Signer",
    "Verifier",
    "consistency_document",
    "consistent",
    "inclusion_document",
    "is_export_checkpoint",
    "signed_message",
    "verify_inclusion_document",
    "verify_log",
]
