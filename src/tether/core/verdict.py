"""A decision is a value: the verdict on one call, with everything needed to replay it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NoReturn

from tether.core.ids import DecisionId
from tether.core.risks import Risk
from tether.core.scope import JSONValue


class Decision(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    APPROVAL_REQUIRED = "approval_required"


class ReasonCode(StrEnum):
    """Stable, machine-readable reasons an agent (or its developer) can act on."""

    POLICY_PERMITS = "policy_permits"
    GRANT_INVALID = "grant_invalid"
    GRANT_EXPIRED = "grant_expired"
    GRANT_REVOKED = "grant_revoked"
    GRANT_NOT_BOUND = "grant_not_bound"
    TASK_NOT_OPEN = "task_not_open"
    TOOL_NOT_IN_SCOPE = "tool_not_in_scope"
    ACTION_NOT_IN_SCOPE = "action_not_in_scope"
    DATASET_NOT_IN_SCOPE = "dataset_not_in_scope"
    ARGUMENT_MISSING = "argument_missing"
    CONSTRAINT_VIOLATED = "constraint_violated"
    POLICY_FORBIDS = "policy_forbids"
    NO_POLICY_PERMITS = "no_policy_permits"
    POLICY_ERROR = "policy_error"
    APPROVAL_REQUIRED = "approval_required"
    APPROVAL_GRANTED = "approval_granted"
    APPROVAL_PENDING = "approval_pending"
    APPROVAL_DENIED = "approval_denied"
    APPROVAL_USED = "approval_used"
    APPROVAL_EXPIRED = "approval_expired"
    APPROVAL_MISMATCH = "approval_mismatch"
    APPROVAL_UNKNOWN = "approval_unknown"
    BREAK_GLASS = "break_glass"
    BUDGET_EXCEEDED = "budget_exceeded"
    INVALID_BUDGET_ARGUMENT = "invalid_budget_argument"
    WORKFLOW_OUT_OF_ORDER = "workflow_out_of_order"
    EGRESS_NEEDS_APPROVAL = "egress_needs_approval"
    EGRESS_BLOCKED = "egress_blocked"
    UNTRUSTED_ARGUMENT = "untrusted_argument"
    ANOMALOUS_VOLUME = "anomalous_volume"
    POLICY_UNAVAILABLE = "policy_unavailable"
    STORE_UNAVAILABLE = "store_unavailable"
    CREDENTIAL_UNAVAILABLE = "credential_unavailable"
    AUDIT_UNAVAILABLE = "audit_unavailable"


@dataclass(frozen=True, slots=True)
class Reason:
    code: ReasonCode
    message: str

    def to_json(self) -> dict[str, JSONValue]:
        return {"code": self.code.value, "message": self.message}


class ObligationKind(StrEnum):
    """What the enforcement point must do alongside an allow."""

    ROW_CAP = "row_cap"
    REDACT = "redact"
    CREDENTIAL = "credential"


@dataclass(frozen=True, slots=True)
class Obligation:
    kind: ObligationKind
    value: str
    policy_id: str | None = None

    def to_json(self) -> dict[str, JSONValue]:
        return {"kind": self.kind.value, "value": self.value, "policy_id": self.policy_id}


@dataclass(frozen=True, slots=True)
class IssuedCredential:
    """A just-in-time downstream credential handed over with an allow.

    ``value`` is a bearer secret (a scoped token or a connection string with its password): it is
    returned to the caller once and is never audited, logged or shown in a repr.
    """

    lease_id: str
    #: The configured issuer's name (``credentials.yaml``) and its kind.
    issuer: str
    kind: str
    expires_at: datetime
    value: str = field(repr=False)
    #: The API a scoped token is for (its ``aud``); ``None`` for other kinds.
    audience: str | None = None

    def __repr__(self) -> str:
        return (
            f"IssuedCredential(lease_id={self.lease_id!r}, issuer={self.issuer!r}, "
            f"kind={self.kind!r}, expires_at={self.expires_at.isoformat()!r}, value='**********')"
        )

    def __reduce__(self) -> NoReturn:
        raise TypeError("an IssuedCredential cannot be pickled")


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to one authorize request. Every error path yields a ``deny`` with its cause."""

    decision: Decision
    decision_id: DecisionId
    reasons: tuple[Reason, ...]
    policy_ids: tuple[str, ...]
    obligations: tuple[Obligation, ...]
    risks: tuple[Risk, ...]
    policy_revision: str
    decided_at: datetime
    #: The pending approval a human must decide, when ``decision`` is ``approval_required``.
    approval_id: str | None = None
    #: Who delegated the caller's grant, root first (empty for a root grant).
    delegators: tuple[str, ...] = ()
    #: The downstream credential minted for this allow (its lease is in ``obligations``). Never
    #: part of ``to_json``: the audit record names the lease, not the secret.
    credential: IssuedCredential | None = field(default=None, repr=False, compare=False)

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOW

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "decision": self.decision.value,
            "decision_id": self.decision_id,
            "reasons": [r.to_json() for r in self.reasons],
            "policy_ids": list(self.policy_ids),
            "obligations": [o.to_json() for o in self.obligations],
            "risks": [r.value for r in self.risks],
            "policy_revision": self.policy_revision,
            "decided_at": self.decided_at.isoformat(),
            "approval_id": self.approval_id,
            "delegation": {"depth": len(self.delegators), "chain": list(self.delegators)},
        }


def sorted_risks(risks: set[Risk] | frozenset[Risk]) -> tuple[Risk, ...]:
    return tuple(sorted(risks, key=lambda r: r.value))
