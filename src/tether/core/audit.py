"""Audit records and their hash chain.

Each record is canonical JSON (sorted keys, no spaces, UTF-8) whose ``hash`` is
``sha256(prev_hash ‖ canonical(record without hash))``. Record ``seq`` counts up from 1 with no
gap, and the first record's ``prev_hash`` is 64 zeros. Editing, deleting, inserting or reordering
any record breaks the chain at that record; :func:`verify_chain` names the first bad one. A
removed tail is caught by comparing against the stored chain head.

Sensitive argument values are HMAC'd before they reach a record (:func:`redact_args`); secrets
are never written.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from tether.core.scope import JSONValue

GENESIS_HASH = "0" * 64


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
    # Just-in-time downstream credentials (tether.service.leases).
    LEASE_ISSUED = "lease_issued"
    LEASE_REVOKED = "lease_revoked"
    LEASE_EXPIRED = "lease_expired"
    LEASE_RELEASED = "lease_released"


def canonical_json(value: JSONValue) -> bytes:
    """The one byte form hashed and exported: sorted keys, compact, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


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

    def content(self) -> dict[str, JSONValue]:
        """Everything the hash covers."""
        return {
            "seq": self.seq,
            "record_id": self.record_id,
            "at": self.at,
            "kind": self.kind.value,
            "agent": self.agent,
            "task_id": self.task_id,
            "body": self.body,
            "prev_hash": self.prev_hash,
        }

    def to_json(self) -> dict[str, JSONValue]:
        out = self.content()
        out["hash"] = self.hash
        return out

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
            )
        except KeyError as missing:
            raise ValueError(f"missing field {missing}") from None


def chain_hash(prev_hash: str, content: dict[str, JSONValue]) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_json(content)).hexdigest()


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
) -> AuditRecord:
    """Make the next record after ``head`` (``None`` for the first record)."""
    # INVARIANT: seq has no gap and each record commits to the one before it.
    seq = 1 if head is None else head.seq + 1
    prev = GENESIS_HASH if head is None else head.hash
    draft = AuditRecord(seq, record_id, at, kind, agent, task_id, body, prev, "")
    return AuditRecord(
        seq, record_id, at, kind, agent, task_id, body, prev, chain_hash(prev, draft.content())
    )


@dataclass(frozen=True, slots=True)
class ChainReport:
    ok: bool
    records: int
    first_bad_seq: int | None = None
    problem: str | None = None


def verify_chain(records: Iterable[AuditRecord], head: ChainHead | None = None) -> ChainReport:
    """Walk the chain in the given order; report the first record that breaks it.

    ``head``, when known (the store keeps it), also catches records removed from the end.
    """
    expected_prev = GENESIS_HASH
    expected_seq = 1
    count = 0
    for record in records:
        count += 1
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
            recomputed = chain_hash(record.prev_hash, record.content())
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
