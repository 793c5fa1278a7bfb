"""What the tether v1 API sends and answers, as frozen values.

Requests are built from ``Intent`` and ``Scope``; answers are parsed into ``Task``, ``Verdict``,
``Effect``, ``ClosedTask`` and ``ApprovalStatus``. Closed sets the server defines (decisions,
approval states, effect statuses, actions) are enums; reason codes are kept as ``str`` on the
values so that a newer server's code never breaks an older SDK, with ``ReasonCode`` naming the
ones this SDK knows.

Grants are bearer secrets: they never appear in a ``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

#: A JSON value as the API carries it.
JSON = dict[str, Any]


class Action(StrEnum):
    """The action kinds a scope grants and a call names."""

    READ = "read"
    WRITE = "write"
    DELETE = "delete"
    SEND = "send"
    EXECUTE = "execute"
    SPEND = "spend"


class Decision(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    APPROVAL_REQUIRED = "approval_required"


class ReasonCode(StrEnum):
    """The reason codes of a verdict, one for each thing an agent can act on."""

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
    AUDIT_UNAVAILABLE = "audit_unavailable"
    CREDENTIAL_UNAVAILABLE = "credential_unavailable"


class EffectStatus(StrEnum):
    OK = "ok"
    ERROR = "error"
    PARTIAL = "partial"


class ApprovalState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    USED = "used"
    EXPIRED = "expired"


# -- requests ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Intent:
    """Why a task is opened. ``on_behalf_of`` names the human or system the agent serves."""

    workflow: str
    purpose: str
    on_behalf_of: str
    #: The user's request as given: its values (URLs, addresses, IBANs, dates...) may fill the
    #: sink arguments the catalog guards. tether keeps only their fingerprints.
    request: str | None = None

    def to_json(self) -> JSON:
        out: JSON = {
            "workflow": self.workflow,
            "purpose": self.purpose,
            "on_behalf_of": self.on_behalf_of,
        }
        if self.request is not None:
            out["request"] = self.request
        return out


@dataclass(frozen=True, slots=True)
class Scope:
    """One tool, the action kinds on it, the datasets it may touch, and argument constraints
    (``max``, ``min``, ``one_of``, ``ends_with``, ``max_length``)."""

    tool: str
    actions: tuple[str, ...]
    datasets: tuple[str, ...] = ()
    constraints: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.actions, str) or isinstance(self.datasets, str):
            raise TypeError("Scope actions and datasets are tuples of names, not one string")

    def to_json(self) -> JSON:
        return {
            "tool": self.tool,
            "actions": [str(a) for a in self.actions],
            "datasets": list(self.datasets),
            "constraints": {arg: dict(c) for arg, c in self.constraints.items()},
        }

    @staticmethod
    def from_json(raw: Mapping[str, Any]) -> Scope:
        return Scope(
            tool=str(raw["tool"]),
            actions=tuple(str(a) for a in raw.get("actions", ())),
            datasets=tuple(str(d) for d in raw.get("datasets", ())),
            constraints={str(k): dict(v) for k, v in dict(raw.get("constraints", {})).items()},
        )


IntentLike = Intent | Mapping[str, str]
ScopeLike = Scope | Mapping[str, Any]


def intent_json(intent: IntentLike) -> JSON:
    return intent.to_json() if isinstance(intent, Intent) else dict(intent)


def scopes_json(scopes: Sequence[ScopeLike]) -> list[JSON]:
    if isinstance(scopes, Scope | Mapping):
        raise TypeError("scopes must be a list of scopes, not a single scope")
    return [s.to_json() if isinstance(s, Scope) else dict(s) for s in scopes]


# -- answers -------------------------------------------------------------------------------


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a verdict went the way it did: a stable ``code`` (see ``ReasonCode``) and a message."""

    code: str
    message: str

    @staticmethod
    def from_json(raw: Mapping[str, Any]) -> Reason:
        return Reason(str(raw["code"]), str(raw.get("message", "")))

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code


@dataclass(frozen=True, slots=True)
class Obligation:
    """What the enforcement point must do alongside an allow (``row_cap``, ``redact``...)."""

    kind: str
    value: str
    policy_id: str | None

    @staticmethod
    def from_json(raw: Mapping[str, Any]) -> Obligation:
        return Obligation(str(raw["kind"]), str(raw["value"]), raw.get("policy_id"))


@dataclass(frozen=True, slots=True)
class Delegation:
    """How far a grant is from its root agent, and who delegated it (root first)."""

    depth: int
    chain: tuple[str, ...]

    @staticmethod
    def from_json(raw: Mapping[str, Any] | None) -> Delegation | None:
        if raw is None:
            return None
        return Delegation(int(raw["depth"]), tuple(str(c) for c in raw.get("chain", ())))


@dataclass(frozen=True, slots=True)
class Credential:
    """A just-in-time credential for the allowed call (a scoped token or a connection string).

    Use ``value`` for this call only; it is never shown in a repr."""

    lease_id: str
    issuer: str
    kind: str
    expires_at: datetime
    value: str = field(repr=False)
    audience: str | None = None

    @staticmethod
    def from_json(raw: Mapping[str, Any] | None) -> Credential | None:
        if raw is None:
            return None
        return Credential(
            lease_id=str(raw["lease_id"]),
            issuer=str(raw["issuer"]),
            kind=str(raw["kind"]),
            expires_at=_when(raw["expires_at"]),
            value=str(raw["value"]),
            audience=raw.get("audience"),
        )


@dataclass(frozen=True, slots=True)
class Refusal:
    """A requested tool, action and dataset that the grant does not include, and why."""

    tool: str
    action: str | None
    dataset: str | None
    code: str
    message: str

    @staticmethod
    def from_json(raw: Mapping[str, Any]) -> Refusal:
        return Refusal(
            str(raw["tool"]),
            raw.get("action"),
            raw.get("dataset"),
            str(raw["code"]),
            str(raw.get("message", "")),
        )


@dataclass(frozen=True, slots=True)
class Task:
    """An open task and its grant. ``grant`` is a bearer token bound to the agent's identity."""

    task_id: str
    grant: str = field(repr=False)
    expires_at: datetime
    granted: tuple[Scope, ...]
    refused: tuple[Refusal, ...]
    policy_revision: str
    delegation: Delegation | None = None
    #: The task's limits as the server states them (records, bytes, calls_per_minute, ...).
    budgets: Mapping[str, Any] = field(default_factory=dict)

    @staticmethod
    def from_json(raw: Mapping[str, Any]) -> Task:
        return Task(
            task_id=str(raw["task_id"]),
            grant=str(raw["grant"]),
            expires_at=_when(raw["expires_at"]),
            granted=tuple(Scope.from_json(s) for s in raw.get("granted", ())),
            refused=tuple(Refusal.from_json(r) for r in raw.get("refused", ())),
            policy_revision=str(raw.get("policy_revision", "")),
            delegation=Delegation.from_json(raw.get("delegation")),
            budgets=dict(raw.get("budgets") or {}),
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """tether's answer to one call: ``allow``, ``deny`` or ``approval_required``."""

    decision: Decision
    decision_id: str
    reasons: tuple[Reason, ...]
    policy_ids: tuple[str, ...]
    risks: tuple[str, ...]
    obligations: tuple[Obligation, ...]
    policy_revision: str
    decided_at: datetime
    approval_id: str | None = None
    delegation: Delegation | None = None
    #: On allow of a tool with a downstream issuer: the credential for this call.
    credential: Credential | None = field(default=None, repr=False)

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOW

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.reasons)

    def explain(self) -> str:
        """One line for a person or a model: the decision, its reasons, and the ids to quote."""
        reasons = "; ".join(str(r) for r in self.reasons) or "no reason given"
        ids = f"decision {self.decision_id}"
        if self.approval_id:
            ids += f", approval {self.approval_id}"
        return f"{self.decision.value}: {reasons} ({ids})"

    @staticmethod
    def from_json(raw: Mapping[str, Any]) -> Verdict:
        return Verdict(
            decision=Decision(raw["decision"]),
            decision_id=str(raw["decision_id"]),
            reasons=tuple(Reason.from_json(r) for r in raw.get("reasons", ())),
            policy_ids=tuple(str(p) for p in raw.get("policy_ids", ())),
            risks=tuple(str(r) for r in raw.get("risks", ())),
            obligations=tuple(Obligation.from_json(o) for o in raw.get("obligations", ())),
            policy_revision=str(raw.get("policy_revision", "")),
            decided_at=_when(raw["decided_at"]),
            approval_id=raw.get("approval_id"),
            delegation=Delegation.from_json(raw.get("delegation")),
            credential=Credential.from_json(raw.get("credential")),
        )


@dataclass(frozen=True, slots=True)
class Effect:
    """What tether recorded about a call after it ran."""

    effect_id: str
    decision_id: str
    status: EffectStatus
    records: int | None
    bytes: int | None
    recipient_count: int
    reported_at: datetime

    @staticmethod
    def from_json(raw: Mapping[str, Any]) -> Effect:
        return Effect(
            effect_id=str(raw["effect_id"]),
            decision_id=str(raw["decision_id"]),
            status=EffectStatus(raw["status"]),
            records=raw.get("records"),
            bytes=raw.get("bytes"),
            recipient_count=int(raw.get("recipient_count", 0)),
            reported_at=_when(raw["reported_at"]),
        )


@dataclass(frozen=True, slots=True)
class Observation:
    """What tether recorded of a tool result: how many values, from which source. Never a value."""

    task_id: str
    tool: str
    dataset: str | None
    trusted: bool
    values: int
    #: False when part of the result was too large to scan (it then counts as untrusted).
    complete: bool
    #: Items of the result a trusted author wrote (the catalog's ``parts`` for the tool): they
    #: were recorded as trusted, the rest of the result as ``trusted`` says.
    trusted_parts: int = 0

    @staticmethod
    def from_json(raw: Mapping[str, Any]) -> Observation:
        source = raw["source"]
        return Observation(
            task_id=str(raw["task_id"]),
            tool=str(source["tool"]),
            dataset=source.get("dataset"),
            trusted=source["trust"] == "trusted",
            values=int(raw["values"]),
            complete=bool(raw["complete"]),
            trusted_parts=int(raw.get("trusted_parts", 0)),
        )


@dataclass(frozen=True, slots=True)
class ClosedTask:
    task_id: str
    state: str
    ended_at: datetime | None

    @staticmethod
    def from_json(raw: Mapping[str, Any]) -> ClosedTask:
        ended = raw.get("ended_at")
        return ClosedTask(str(raw["task_id"]), str(raw["state"]), _when(ended) if ended else None)


@dataclass(frozen=True, slots=True)
class ApprovalStatus:
    """What the agent may know about its own approval: its state and the votes so far."""

    approval_id: str
    state: ApprovalState
    expires_at: datetime
    approvals: int
    required: int

    @staticmethod
    def from_json(raw: Mapping[str, Any]) -> ApprovalStatus:
        return ApprovalStatus(
            approval_id=str(raw["approval_id"]),
            state=ApprovalState(raw["state"]),
            expires_at=_when(raw["expires_at"]),
            approvals=int(raw.get("approvals", 0)),
            required=int(raw.get("required", 1)),
        )


@dataclass(frozen=True, slots=True)
class Health:
    status: str
    policy_revision: str | None = None

    @staticmethod
    def from_json(raw: Mapping[str, Any]) -> Health:
        return Health(str(raw.get("status", "")), raw.get("policy_revision"))
