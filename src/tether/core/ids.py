"""Identifiers: typed, prefixed, random, and made by an injected source of randomness.

An id reads as what it names (``tsk_…``, ``grt_…``, ``dec_…``) and carries 128 random bits in
Crockford base32, so ids sort nowhere and guess nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import NewType

TaskId = NewType("TaskId", str)
GrantId = NewType("GrantId", str)
DecisionId = NewType("DecisionId", str)
EffectId = NewType("EffectId", str)
AuditId = NewType("AuditId", str)
ApprovalId = NewType("ApprovalId", str)

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_ID_RE = re.compile(r"^(tsk|grt|dec|eff|aud|apr|lse|brk|gev)_[0-9a-hjkmnp-tv-z]{26}$")


class IdKind(StrEnum):
    TASK = "tsk"
    GRANT = "grt"
    DECISION = "dec"
    EFFECT = "eff"
    AUDIT = "aud"
    APPROVAL = "apr"
    LEASE = "lse"
    BREAKGLASS = "brk"
    #: Chosen by a remote MCP gateway for one of its own audit records, kept across retries.
    GATEWAY_EVENT = "gev"


#: Two base32 digits for each 10-bit value: an id's 26 digits in 13 lookups. Every decision
#: makes two ids, and a loop over single digits was a measurable part of its CPU.
_PAIRS = tuple(high + low for high in _ALPHABET for low in _ALPHABET)
_PREFIXES = {kind: f"{kind.value}_" for kind in IdKind}


def encode_id(kind: IdKind, random_bytes: bytes) -> str:
    """Encode 16 random bytes as ``<kind>_<26 base32 chars>``: the 128-bit number the bytes
    spell (big-endian) in 26 digits, most significant first (its first digit holds 3 bits)."""
    if len(random_bytes) != 16:
        raise ValueError("an id needs exactly 16 random bytes")
    n = int.from_bytes(random_bytes, "big")
    p = _PAIRS
    return (
        _PREFIXES[kind]
        + p[n >> 120]
        + p[n >> 110 & 1023]
        + p[n >> 100 & 1023]
        + p[n >> 90 & 1023]
        + p[n >> 80 & 1023]
        + p[n >> 70 & 1023]
        + p[n >> 60 & 1023]
        + p[n >> 50 & 1023]
        + p[n >> 40 & 1023]
        + p[n >> 30 & 1023]
        + p[n >> 20 & 1023]
        + p[n >> 10 & 1023]
        + p[n & 1023]
    )


def is_well_formed(value: str, kind: IdKind | None = None) -> bool:
    """True when ``value`` has the shape of a tether id (of ``kind``, if given)."""
    if len(value) != 30 or not _ID_RE.match(value):
        return False
    return kind is None or value.startswith(kind.value + "_")


@dataclass(frozen=True, slots=True)
class IdFactory:
    """Makes ids from an injected byte source (``os.urandom`` in production, seeded in tests)."""

    random_bytes: Callable[[int], bytes]

    def task(self) -> TaskId:
        return TaskId(encode_id(IdKind.TASK, self.random_bytes(16)))

    def grant(self) -> GrantId:
        return GrantId(encode_id(IdKind.GRANT, self.random_bytes(16)))

    def decision(self) -> DecisionId:
        return DecisionId(encode_id(IdKind.DECISION, self.random_bytes(16)))

    def effect(self) -> EffectId:
        return EffectId(encode_id(IdKind.EFFECT, self.random_bytes(16)))

    def audit(self) -> AuditId:
        return AuditId(encode_id(IdKind.AUDIT, self.random_bytes(16)))

    def breakglass(self) -> str:
        return encode_id(IdKind.BREAKGLASS, self.random_bytes(16))

    def approval(self) -> ApprovalId:
        return ApprovalId(encode_id(IdKind.APPROVAL, self.random_bytes(16)))

    def gateway_event(self) -> str:
        return encode_id(IdKind.GATEWAY_EVENT, self.random_bytes(16))
