"""Request and response bodies of the v1 API: pydantic lives here, at the edge, only."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from tether.core.effect import EffectStatus
from tether.core.scope import ActionKind

Name = Annotated[StrictStr, Field(min_length=1, max_length=128)]
Text = Annotated[StrictStr, Field(min_length=1, max_length=512)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: The longest user request a task may carry (ProvenanceSettings.max_request_chars).
MAX_REQUEST_CHARS = 16_384


class IntentIn(_Strict):
    workflow: Text
    purpose: Text
    on_behalf_of: Text
    request: Annotated[StrictStr, Field(min_length=1, max_length=MAX_REQUEST_CHARS)] | None = Field(
        default=None,
        description="The user's request as given. Its values (URLs, e-mail addresses, "
        "IBANs, dates...) are a trusted source for sink arguments; tether keeps only their "
        "keyed fingerprints, never the text.",
        examples=["Send the Q3 report to bob@example.com by 2026-10-01"],
    )


class ScopeIn(_Strict):
    tool: Name
    actions: Annotated[list[ActionKind], Field(min_length=1, max_length=6)]
    datasets: Annotated[list[Name], Field(max_length=64)] = []
    constraints: Annotated[dict[str, dict[str, Any]], Field(max_length=32)] = Field(
        default_factory=dict,
        description="Per-argument constraints: max, min, one_of, ends_with, max_length.",
        examples=[{"amount": {"max": 100}, "to": {"ends_with": ["@example.com"]}}],
    )


BUDGETS_DESCRIPTION = (
    "Limits on what the task may take out: records, bytes, calls_per_minute, spend, and "
    "by_classification: {confidential: {records, bytes}}."
)


class OpenTaskIn(_Strict):
    intent: IntentIn
    scopes: Annotated[list[ScopeIn], Field(min_length=1, max_length=64)]
    ttl_seconds: StrictInt | None = Field(
        default=None, description="Grant lifetime; defaults to 600 and is capped by the server."
    )
    budgets: dict[str, Any] | None = Field(
        default=None,
        description=BUDGETS_DESCRIPTION,
        examples=[
            {
                "records": 1000,
                "calls_per_minute": 60,
                "by_classification": {"confidential": {"records": 100}},
            }
        ],
    )


class ExpectIn(_Strict):
    records: StrictInt | None = Field(default=None, ge=0)
    bytes: StrictInt | None = Field(default=None, ge=0)


class DelegateIn(_Strict):
    grant: Annotated[StrictStr, Field(min_length=1, max_length=8192)] = Field(
        description="The delegating (parent) agent's grant for this task."
    )
    agent: Annotated[StrictStr, Field(min_length=1, max_length=2048)] = Field(
        description="The child agent's SPIFFE ID; the child grant is bound to it."
    )
    scopes: Annotated[list[ScopeIn], Field(min_length=1, max_length=64)]
    ttl_seconds: StrictInt | None = Field(
        default=None, description="Capped at the parent grant's remaining lifetime."
    )
    budgets: dict[str, Any] | None = Field(
        default=None, description="Each limit at most the parent's; default: the parent's."
    )


class DelegationOut(BaseModel):
    depth: int
    chain: list[str] = Field(description="Who delegated, root first (RFC 8693 act chain).")


class ScopeOut(BaseModel):
    tool: str
    actions: list[str]
    datasets: list[str]
    constraints: dict[str, dict[str, Any]]


class RefusalOut(BaseModel):
    tool: str
    action: str | None
    dataset: str | None
    code: str
    message: str


class OpenTaskOut(BaseModel):
    task_id: str
    grant: str = Field(description="The grant token; present it with the same SVID.")
    expires_at: str
    granted: list[ScopeOut]
    refused: list[RefusalOut]
    policy_revision: str
    delegation: DelegationOut | None = None
    budgets: dict[str, Any] = Field(default_factory=dict)


class AuthorizeIn(_Strict):
    grant: Annotated[StrictStr, Field(min_length=1, max_length=8192)]
    tool: Name
    action: ActionKind
    dataset: Name | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    approval_id: Annotated[StrictStr, Field(max_length=64)] | None = Field(
        default=None,
        description="Retry an approval_required call with the approval a human gave for it.",
    )
    expect: ExpectIn | None = Field(
        default=None,
        description="What a read may take at most: its reservation against the task's budgets.",
    )
    credential: StrictBool = Field(
        default=True,
        description=(
            "Mint the call's just-in-time credential on allow, when credentials.yaml gives its "
            "tool one. false for a caller that will not use one (the MCP gateway deciding "
            "through this server): nothing is minted that no agent would receive."
        ),
    )


class ReasonOut(BaseModel):
    code: str
    message: str


class ObligationOut(BaseModel):
    kind: str
    value: str
    policy_id: str | None


class CredentialOut(BaseModel):
    lease_id: str
    issuer: str = Field(description="The configured issuer (credentials.yaml) that minted it.")
    kind: str = Field(description="scoped_jwt (a bearer token) or postgres_role (a conninfo)")
    expires_at: str
    value: str = Field(description="The credential itself. Use it for this call; never log it.")
    audience: str | None = None


class VerdictOut(BaseModel):
    decision: str = Field(description="allow, deny or approval_required")
    decision_id: str
    reasons: list[ReasonOut]
    policy_ids: list[str]
    risks: list[str]
    obligations: list[ObligationOut]
    policy_revision: str
    decided_at: str
    approval_id: str | None = Field(
        default=None, description="For approval_required: the approval to wait for and retry with."
    )
    delegation: DelegationOut | None = None
    credential: CredentialOut | None = Field(
        default=None,
        description="On allow of a tool with a downstream issuer: the just-in-time credential "
        "for this call (its lease is in obligations). Returned once, never stored by tether.",
    )


class ResultIn(_Strict):
    """A tool's result as the agent received it, for the task its grant names
    (``POST /v1/observations``, or with the call's effect on ``POST /v1/effects``)."""

    grant: Annotated[StrictStr, Field(min_length=1, max_length=8192)]
    tool: Name
    dataset: Name | None = None
    result: Any = Field(
        description="The tool's result as the agent received it (text or any JSON). Scanned up "
        "to a configured size; the rest counts as untrusted."
    )


class EffectIn(_Strict):
    decision_id: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    status: EffectStatus = EffectStatus.OK
    records: StrictInt | None = Field(default=None, ge=0)
    bytes: StrictInt | None = Field(default=None, ge=0)
    recipients: Annotated[
        list[Annotated[StrictStr, Field(max_length=320)]], Field(max_length=1000)
    ] = []
    observation: ResultIn | None = Field(
        default=None,
        description="What the call's result put in the agent's context, recorded as "
        "POST /v1/observations records it (for this decision), checked before the effect and "
        "written with it in one transaction: an enforcement point that reports both makes one "
        "request per call. A "
        "retry records it again (its values are kept once) and is refused as "
        "effect_already_reported if the effect was written. If the observation is refused, "
        "the request is, and no effect is written: report the effect again without it.",
    )


class SourceOut(BaseModel):
    tool: str
    dataset: str | None
    trust: str = Field(description="trusted or untrusted")


class ObservationOut(BaseModel):
    task_id: str
    source: SourceOut
    values: int = Field(description="How many distinct values were recorded (as fingerprints).")
    complete: bool = Field(description="False when part of the result was too large to scan.")
    trusted_parts: int = Field(
        default=0,
        description="Items of the result a trusted author wrote (the catalog's tool 'parts'), "
        "recorded as a trusted source; the rest of the result is the untrusted source above.",
    )


class EffectOut(BaseModel):
    effect_id: str
    decision_id: str
    status: str
    records: int | None
    bytes: int | None
    recipient_count: int
    reported_at: str
    observation: ObservationOut | None = Field(
        default=None, description="What the observation sent with the effect recorded."
    )


class CloseTaskOut(BaseModel):
    task_id: str
    state: str
    ended_at: str | None


class ErrorBody(BaseModel):
    code: str = Field(description="A stable, machine-readable code, e.g. invalid_field.")
    message: str = Field(description="What was wrong and what to do, for a person.")


class ErrorOut(BaseModel):
    """Every error tether answers: ``{"error": {"code", "message"}}``."""

    error: ErrorBody


class VoteIn(_Strict):
    reason: Annotated[StrictStr, Field(max_length=1000)] = ""


class VoteOut(BaseModel):
    approver: str
    approve: bool
    reason: str
    at: str


class ApprovalOut(BaseModel):
    approval_id: str
    decision_id: str
    task_id: str
    agent: str
    tool: str
    action: str
    dataset: str | None
    args: dict[str, Any]
    policy_ids: list[str]
    why: str
    required: int
    approvals: int
    summary: list[str] = Field(description="Facts written by tether, never by the agent.")
    created_at: str
    expires_at: str
    state: str = Field(description="pending, approved, denied, used or expired")
    votes: list[VoteOut]
    used_by: str | None


class ApprovalStatusOut(BaseModel):
    approval_id: str
    state: str
    expires_at: str
    approvals: int
    required: int
