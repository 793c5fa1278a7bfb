"""Audit records and their hash chain.

Each record is canonical JSON whose ``hash`` is ``sha256(prev_hash ‖ canonical(record without
hash))``. Record ``seq`` counts up from 1 with no gap, and the first record's ``prev_hash`` is 64
zeros. Editing, deleting, inserting or reordering any record breaks the chain at that record;
:func:`verify_chain` names the first bad one. A removed tail is caught by comparing against the
stored chain head, and a rewrite of the whole chain by signed checkpoints
(:mod:`tether.core.checkpoint`).

A chain has one *format* for its whole life (:class:`ChainFormat`), fixed when its first record
is written: format 1 (chains begun before RFC 8785) is Python's sorted-key compact JSON; format 2
is RFC 8785 JCS (:mod:`tether.core.jcs`), so a third party can re-hash the chain from a standard,
and its records carry ``"format": 2`` inside what the hash covers. Format 1 records carry no
``format`` member, so their hashes are what they always were.

The log is *partitioned*: each writer (a replica) appends to a chain of its own, its
*partition*, so writers never wait on one another's head. Every record carries its ``partition``
and its ``seq`` and ``prev_hash`` within that partition, and :func:`verify_chain` checks one
partition at a time. The records of the :data:`LEGACY_PARTITION` (``"0"``: the one chain of a
store begun before partitions, and a single SQLite process's) carry no ``partition`` member, so
their hashes are what they always were; every other partition's records carry it inside what the
hash covers, so a record cannot be moved to another partition unseen. Signed checkpoints cover
every partition's head together (:mod:`tether.core.checkpoint`).

Sensitive argument values are HMAC'd before they reach a record (:func:`redact_args`); secrets
are never written.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from tether.core.jcs import PlainEncoder, canonicalize, canonicalize_as_is, plain_bytes
from tether.core.merkle import leaf_hash
from tether.core.scope import JSONValue

GENESIS_HASH = "0" * 64

LEGACY_PARTITION = "0"
"""The partition of a store's first chain: records written before the log was partitioned, and
every record of a writer that names no partition of its own (a single SQLite process)."""

_PARTITION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_partition(partition: str) -> str:
    """``partition`` if it can name a partition (1-64 of ``A-Z a-z 0-9 . _ -``, starting with a
    letter or digit), else ``ValueError``."""
    if not isinstance(partition, str) or not _PARTITION.fullmatch(partition):
        raise ValueError(
            "a partition (replica id) is 1 to 64 letters, digits, '.', '_' or '-', starting "
            "with a letter or digit"
        )
    return partition


class AuditKind(StrEnum):
    TASK_OPENED = "task_opened"
    TASK_DELEGATED = "task_delegated"
    TASK_REVOKED = "task_revoked"
    AGENT_REVOKED = "agent_revoked"
    AGENT_RESTORED = "agent_restored"
    TASK_REFUSED = "task_refused"
    TASK_CLOSED = "task_closed"
    TASK_EXPIRED = "task_expired"
    DECISION = "decision"
    EFFECT = "effect"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVAL_VOTED = "approval_voted"
    BREAKGLASS_REQUESTED = "breakglass_requested"
    BREAKGLASS_VOTED = "breakglass_voted"
    BREAKGLASS_DECISION = "breakglass_decision"
    BREAKGLASS_REVIEWED = "breakglass_reviewed"
    POLICY_LOADED = "policy_loaded"
    # The MCP gateway (tether.mcp): descriptor pinning (OWASP ASI04) and upstream failures.
    TOOL_PINNED = "tool_pinned"
    TOOL_WITHHELD = "tool_withheld"
    UPSTREAM_FAILED = "upstream_failed"
    SECRET_REDACTED = "secret_redacted"  # a secret given to an upstream came back: redacted
    # Just-in-time downstream credentials (tether.service.leases).
    LEASE_ISSUED = "lease_issued"
    LEASE_REVOKED = "lease_revoked"
    LEASE_EXPIRED = "lease_expired"
    LEASE_RELEASED = "lease_released"


# What ``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
# allow_nan=False)`` builds on every call, built once: the same encoder, the same text.
_format_1 = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
).encode


def canonical_json(value: JSONValue) -> bytes:
    """Format 1's byte form (sorted keys, compact, UTF-8); also what argument MACs are taken of."""
    return _format_1(value).encode("utf-8")


class ChainFormat(IntEnum):
    """How a chain's records are turned into the bytes it hashes."""

    LEGACY = 1
    """Python's sorted-key compact JSON (:func:`canonical_json`): chains begun before format 2."""
    JCS = 2
    """RFC 8785 JSON Canonicalization Scheme: every chain begun since."""


NEW_CHAIN_FORMAT = ChainFormat.JCS


def canonical(value: JSONValue, format: ChainFormat) -> bytes:
    """The bytes a chain of ``format`` hashes for ``value``; ``ValueError`` if it has none."""
    if format is ChainFormat.LEGACY:
        return canonical_json(value)
    return canonicalize(value)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    record_id: str
    at: str
    kind: AuditKind
    agent: str | None
    task_id: str | None
    body: dict[str, JSONValue]
    prev_hash: str
    hash: str
    format: ChainFormat = NEW_CHAIN_FORMAT
    partition: str = LEGACY_PARTITION
    """The chain this record is in (see the module docstring); ``seq`` counts within it."""

    def content(self) -> dict[str, JSONValue]:
        """Everything the hash covers."""
        return _content(
            self.format,
            self.seq,
            self.record_id,
            self.at,
            self.kind,
            self.agent,
            self.task_id,
            self.body,
            self.prev_hash,
            self.partition,
        )

    def to_json(self) -> dict[str, JSONValue]:
        out = self.content()
        out["hash"] = self.hash
        return out

    def leaf(self) -> bytes:
        """The entry this record is in the log's Merkle tree (:mod:`tether.core.merkle`): the
        whole record, hash included, in its chain's canonical form."""
        return canonical(self.to_json(), self.format)

    @staticmethod
    def from_json(raw: Mapping[str, object]) -> AuditRecord:
        """Parse an exported record; raises ``ValueError`` on any missing or ill-typed field."""
        try:
            seq = raw["seq"]
            body = raw["body"]
            if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(body, dict):
                raise ValueError("seq must be an integer and body an object")
            fields = {k: raw[k] for k in ("record_id", "at", "prev_hash", "hash")}
            for k, v in fields.items():
                if not isinstance(v, str):
                    raise ValueError(f"{k} must be a string")
            agent, task_id = raw["agent"], raw["task_id"]
            if agent is not None and not isinstance(agent, str):
                raise ValueError("agent must be a string or null")
            if task_id is not None and not isinstance(task_id, str):
                raise ValueError("task_id must be a string or null")
            # Format 1 records have no such member; an explicit 1 would not hash as written.
            fmt = raw.get("format", ChainFormat.LEGACY.value)
            if type(fmt) is not int or ("format" in raw and fmt != ChainFormat.JCS.value):
                raise ValueError("format must be 2 when present")
            # The legacy partition's records have no such member (their hashes predate it).
            partition = raw.get("partition", LEGACY_PARTITION)
            if not isinstance(partition, str) or (
                "partition" in raw and partition == LEGACY_PARTITION
            ):
                raise ValueError(f"partition must be a string other than {LEGACY_PARTITION!r}")
            check_partition(partition)
            return AuditRecord(
                seq=seq,
                record_id=str(fields["record_id"]),
                at=str(fields["at"]),
                kind=AuditKind(str(raw["kind"])),
                agent=agent,
                task_id=task_id,
                body=body,
                prev_hash=str(fields["prev_hash"]),
                hash=str(fields["hash"]),
                format=ChainFormat(fmt),
                partition=partition,
            )
        except KeyError as missing:
            raise ValueError(f"missing field {missing}") from None


def _content(
    format: ChainFormat,
    seq: int,
    record_id: str,
    at: str,
    kind: AuditKind,
    agent: str | None,
    task_id: str | None,
    body: dict[str, JSONValue],
    prev_hash: str,
    partition: str = LEGACY_PARTITION,
) -> dict[str, JSONValue]:
    """A record's hashed members (:meth:`AuditRecord.content`), from its fields."""
    out: dict[str, JSONValue] = {} if format is ChainFormat.LEGACY else {"format": 2}
    if partition != LEGACY_PARTITION:
        out["partition"] = partition
    out["seq"] = seq
    out["record_id"] = record_id
    out["at"] = at
    out["kind"] = kind.value
    out["agent"] = agent
    out["task_id"] = task_id
    out["body"] = body
    out["prev_hash"] = prev_hash
    return out


def chain_hash(
    prev_hash: str, content: dict[str, JSONValue], format: ChainFormat = ChainFormat.LEGACY
) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(content, format)).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainHead:
    seq: int
    hash: str


def seal(
    head: ChainHead | None,
    *,
    record_id: str,
    at: str,
    kind: AuditKind,
    agent: str | None,
    task_id: str | None,
    body: dict[str, JSONValue],
    format: ChainFormat = NEW_CHAIN_FORMAT,
    partition: str = LEGACY_PARTITION,
) -> AuditRecord:
    """Make the next record after ``head`` (``None`` for the first record) in ``partition``'s
    chain, of ``format``."""
    return _seal(head, record_id, at, kind, agent, task_id, body, format, partition)[0]


@dataclass(frozen=True, slots=True)
class Sealed:
    """A record just sealed, with its entry in the log's Merkle tree, so that whoever sealed it
    can sign a checkpoint over it without reading it back (:mod:`tether.service.checkpoints`)."""

    record: AuditRecord
    leaf_hash: bytes
    """RFC 6962's leaf hash of :meth:`AuditRecord.leaf`."""
    body_text: str | None = None
    """The body's format-1 text (:func:`canonical_json`), as the sealed bytes already held it;
    ``None`` when they did not (a chain of format 2 whose record needed the careful path)."""


_KIND_MEMBER = b',"kind":'
_BODY_MEMBER = b',"body":'
_FORMAT_MEMBER = b',"format":'


def seal_with_leaf(
    head: ChainHead | None,
    *,
    record_id: str,
    at: str,
    kind: AuditKind,
    agent: str | None,
    task_id: str | None,
    body: dict[str, JSONValue],
    format: ChainFormat = NEW_CHAIN_FORMAT,
    partition: str = LEGACY_PARTITION,
    plain: PlainEncoder = plain_bytes,
) -> Sealed:
    """:func:`seal`, and the record's Merkle leaf hash. The leaf is the record's canonical form
    with its hash: the canonical form just hashed with the ``hash`` member put in its sorted
    place, before ``kind`` (every member after ``body`` holds a string, a number or null, so the
    last ``,"kind":`` is the record's own), instead of canonicalizing the record a second time.

    The body's text is cut from the same bytes when they hold its format-1 text: members sort
    ``agent``, ``at``, ``body``, then ``format`` (format 2) or ``kind`` (format 1), and a string
    holds no unescaped quote, so the first ``,"body":`` and the last ``,"format":`` (or
    ``,"kind":``) are the record's own.

    ``plain`` writes a record that stands as it is (:func:`~tether.core.jcs.canonicalize_as_is`):
    the store brings a faster encoder of the same bytes."""
    record, content, as_is = _seal(
        head, record_id, at, kind, agent, task_id, body, format, partition, plain
    )
    at_kind = content.rfind(_KIND_MEMBER)
    if at_kind < 0:  # not reached: every record has a kind
        return Sealed(record, leaf_hash(record.leaf()))
    member = b',"hash":"' + record.hash.encode("ascii") + b'"'
    leaf = content[:at_kind] + member + content[at_kind:]
    body_text = None
    if as_is:
        start = content.find(_BODY_MEMBER) + len(_BODY_MEMBER)
        end = at_kind if format is ChainFormat.LEGACY else content.rfind(_FORMAT_MEMBER)
        body_text = content[start:end].decode("utf-8")
    return Sealed(record, leaf_hash(leaf), body_text)


def _seal(
    head: ChainHead | None,
    record_id: str,
    at: str,
    kind: AuditKind,
    agent: str | None,
    task_id: str | None,
    body: dict[str, JSONValue],
    format: ChainFormat,
    partition: str,
    plain: PlainEncoder = plain_bytes,
) -> tuple[AuditRecord, bytes, bool]:
    """The record, the bytes it hashes, and whether those bytes are its format-1 text
    (``plain``: see :func:`~tether.core.jcs.canonicalize_as_is`)."""
    # INVARIANT: seq has no gap within a partition and each record commits to the one before it.
    seq = 1 if head is None else head.seq + 1
    prev = GENESIS_HASH if head is None else head.hash
    members = _content(format, seq, record_id, at, kind, agent, task_id, body, prev, partition)
    if format is ChainFormat.LEGACY:
        content, as_is = canonical_json(members), True
    else:
        content, as_is = canonicalize_as_is(members, plain)
    sealed = hashlib.sha256(prev.encode("ascii") + content).hexdigest()
    record = AuditRecord(
        seq, record_id, at, kind, agent, task_id, body, prev, sealed, format, partition
    )
    return record, content, as_is


@dataclass(frozen=True, slots=True)
class ChainReport:
    ok: bool
    records: int
    first_bad_seq: int | None = None
    problem: str | None = None


def verify_chain(
    records: Iterable[AuditRecord],
    head: ChainHead | None = None,
    *,
    after: ChainHead | None = None,
    format: ChainFormat | None = None,
    partition: str | None = None,
) -> ChainReport:
    """Walk one partition's chain in the given order; report the first record that breaks it.

    ``head``, when known (the store keeps it), also catches records removed from the end.
    ``after`` starts the walk after a record already trusted (a checkpoint's) instead of at the
    beginning. Every record must be of ``format``, or of the first record's when not given, and
    of ``partition``, or of the first record's.
    """
    expected_prev = GENESIS_HASH if after is None else after.hash
    expected_seq = 1 if after is None else after.seq + 1
    count = 0
    for record in records:
        count += 1
        partition = record.partition if partition is None else partition
        if record.partition != partition:
            return ChainReport(
                False,
                count,
                record.seq,
                f"record {record.seq} of partition {record.partition!r} is in the chain of "
                f"partition {partition!r} (a record was moved between partitions)",
            )
        format = record.format if format is None else format
        if record.format is not format:
            return ChainReport(
                False,
                count,
                record.seq,
                f"record {record.seq} is of chain format {record.format.value}, but the chain "
                f"is of format {format.value}",
            )
        if record.seq != expected_seq:
            return ChainReport(
                False,
                count,
                record.seq,
                f"expected record {expected_seq} here but found record {record.seq} "
                "(a record was deleted, inserted or moved)",
            )
        if not hmac.compare_digest(record.prev_hash, expected_prev):
            return ChainReport(
                False, count, record.seq, "prev_hash does not match the record before it"
            )
        try:
            recomputed = chain_hash(record.prev_hash, record.content(), record.format)
        except (TypeError, ValueError):
            return ChainReport(False, count, record.seq, "record content is not canonical JSON")
        if not hmac.compare_digest(recomputed, record.hash):
            return ChainReport(
                False, count, record.seq, "record content was changed after it was written"
            )
        expected_prev = record.hash
        expected_seq += 1
    if head is not None:
        last_seq = expected_seq - 1
        if head.seq < last_seq:
            return ChainReport(
                False,
                count,
                head.seq + 1,
                f"records after the store's head (record {head.seq}) were appended outside tether",
            )
        if head.seq != last_seq or not hmac.compare_digest(head.hash, expected_prev):
            return ChainReport(
                False,
                count,
                last_seq + 1 if head.seq > last_seq else last_seq,
                f"the chain ends at record {last_seq} but the store's head is record {head.seq} "
                "(records were removed from the end, or the last one was replaced)",
            )
    return ChainReport(True, count)


def redact_args(
    args: Mapping[str, JSONValue], mac: Callable[[bytes], str], plain: frozenset[str]
) -> dict[str, JSONValue]:
    """Replace each argument value by its keyed MAC, except names listed in ``plain``.

    The same value always gives the same MAC under one key, so auditors can correlate calls
    without reading the values.
    """
    out: dict[str, JSONValue] = {}
    for name, value in args.items():
        shown_plain = value is None or isinstance(value, int | float | bool)
        shown_plain = shown_plain or (isinstance(value, str) and len(value) <= 256)
        if name in plain and shown_plain:
            out[name] = value
        else:
            out[name] = "hmac-sha256:" + mac(canonical_json(value))
    return out
