"""One error tree with stable codes.

Every failure tether reports carries a stable, machine-readable ``code`` and a message a person
can act on. Each edge (HTTP, CLI, SDK) maps the tree once; a test checks every code is mapped.

    TetherError
     ├── InvalidRequest        malformed, oversized or out-of-range input
     ├── Unauthenticated       no credential, or one that does not verify
     ├── Forbidden             a verified caller asking for what it may not have
     ├── NotFound              the named task, grant or decision does not exist
     ├── Conflict              the request clashes with the current state
     ├── Unavailable           a store, the audit log or the policy set cannot be used now
     └── ConfigurationError    tether itself is set up wrongly (raised at start, not per request)

Security failures say little to the caller (``invalid_token``) and everything to the audit log.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    # InvalidRequest
    MALFORMED_JSON = "malformed_json"
    INVALID_FIELD = "invalid_field"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNKNOWN_CONSTRAINT = "unknown_constraint"
    INVALID_CONSTRAINT = "invalid_constraint"
    INVALID_SCOPE = "invalid_scope"
    # Unauthenticated
    MISSING_TOKEN = "missing_token"
    INVALID_TOKEN = "invalid_token"
    # Forbidden
    NOTHING_GRANTED = "nothing_granted"
    GRANT_NOT_BOUND = "grant_not_bound"
    NOT_TASK_OWNER = "not_task_owner"
    DEV_ISSUER_REFUSED = "dev_issuer_refused"
    NOT_AN_APPROVER = "not_an_approver"
    DELEGATION_WIDENS = "delegation_widens"
    DELEGATION_TOO_DEEP = "delegation_too_deep"
    AGENT_REVOKED = "agent_revoked"
    NOT_A_GATEWAY = "not_a_gateway"  # gateway events from an identity serve does not list
    # NotFound
    TASK_NOT_FOUND = "task_not_found"
    DECISION_NOT_FOUND = "decision_not_found"
    NOT_FOUND = "not_found"
    APPROVAL_NOT_FOUND = "approval_not_found"
    BREAKGLASS_NOT_FOUND = "breakglass_not_found"
    LEASE_NOT_FOUND = "lease_not_found"
    # Conflict
    TASK_NOT_OPEN = "task_not_open"
    EFFECT_ALREADY_REPORTED = "effect_already_reported"
    EVENT_REPLAYED = "event_replayed"  # a gateway event id serve has already recorded
    APPROVAL_NOT_PENDING = "approval_not_pending"
    LEASE_NOT_RENEWABLE = "lease_not_renewable"
    BUDGET_EXCEEDED = "budget_exceeded"
    # Unavailable
    STORE_UNAVAILABLE = "store_unavailable"
    CREDENTIAL_UNAVAILABLE = "credential_unavailable"
    UPSTREAM_LEAKED_SECRET = "upstream_leaked_secret"  # an answer carried an injected secret
    AUDIT_UNAVAILABLE = "audit_unavailable"
    POLICY_UNAVAILABLE = "policy_unavailable"
    PDP_UNAVAILABLE = "pdp_unavailable"  # a remote gateway could not get an answer from serve
    INTERNAL = "internal_error"
    # ConfigurationError
    CONFIGURATION = "configuration_error"
    POLICY_INVALID = "policy_invalid"


class TetherError(Exception):
    """Base of every error tether raises on purpose."""

    default_code: ErrorCode = ErrorCode.INVALID_FIELD

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.code: ErrorCode = code if code is not None else self.default_code
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code.value!r}, message={self.message!r})"


class InvalidRequest(TetherError):
    default_code = ErrorCode.INVALID_FIELD


class Unauthenticated(TetherError):
    default_code = ErrorCode.INVALID_TOKEN


class Forbidden(TetherError):
    default_code = ErrorCode.NOTHING_GRANTED


class NotFound(TetherError):
    default_code = ErrorCode.NOT_FOUND


class Conflict(TetherError):
    default_code = ErrorCode.TASK_NOT_OPEN


class BudgetExceeded(Conflict):
    """A reservation would pass a budget's limit (or the budget is closed)."""

    default_code = ErrorCode.BUDGET_EXCEEDED


class Unavailable(TetherError):
    default_code = ErrorCode.STORE_UNAVAILABLE


class ConfigurationError(TetherError):
    default_code = ErrorCode.CONFIGURATION


#: Which branch of the tree each code belongs to; edges map branches, tests check completeness.
CODE_BRANCH: dict[ErrorCode, type[TetherError]] = {
    ErrorCode.MALFORMED_JSON: InvalidRequest,
    ErrorCode.INVALID_FIELD: InvalidRequest,
    ErrorCode.PAYLOAD_TOO_LARGE: InvalidRequest,
    ErrorCode.UNKNOWN_CONSTRAINT: InvalidRequest,
    ErrorCode.INVALID_CONSTRAINT: InvalidRequest,
    ErrorCode.INVALID_SCOPE: InvalidRequest,
    ErrorCode.MISSING_TOKEN: Unauthenticated,
    ErrorCode.INVALID_TOKEN: Unauthenticated,
    ErrorCode.NOTHING_GRANTED: Forbidden,
    ErrorCode.GRANT_NOT_BOUND: Forbidden,
    ErrorCode.NOT_TASK_OWNER: Forbidden,
    ErrorCode.DEV_ISSUER_REFUSED: Forbidden,
    ErrorCode.NOT_AN_APPROVER: Forbidden,
    ErrorCode.DELEGATION_WIDENS: Forbidden,
    ErrorCode.DELEGATION_TOO_DEEP: Forbidden,
    ErrorCode.AGENT_REVOKED: Forbidden,
    ErrorCode.NOT_A_GATEWAY: Forbidden,
    ErrorCode.TASK_NOT_FOUND: NotFound,
    ErrorCode.DECISION_NOT_FOUND: NotFound,
    ErrorCode.NOT_FOUND: NotFound,
    ErrorCode.APPROVAL_NOT_FOUND: NotFound,
    ErrorCode.BREAKGLASS_NOT_FOUND: NotFound,
    ErrorCode.LEASE_NOT_FOUND: NotFound,
    ErrorCode.TASK_NOT_OPEN: Conflict,
    ErrorCode.EFFECT_ALREADY_REPORTED: Conflict,
    ErrorCode.EVENT_REPLAYED: Conflict,
    ErrorCode.APPROVAL_NOT_PENDING: Conflict,
    ErrorCode.BUDGET_EXCEEDED: Conflict,
    ErrorCode.LEASE_NOT_RENEWABLE: Conflict,
    ErrorCode.STORE_UNAVAILABLE: Unavailable,
    ErrorCode.CREDENTIAL_UNAVAILABLE: Unavailable,
    ErrorCode.UPSTREAM_LEAKED_SECRET: Unavailable,
    ErrorCode.AUDIT_UNAVAILABLE: Unavailable,
    ErrorCode.POLICY_UNAVAILABLE: Unavailable,
    ErrorCode.PDP_UNAVAILABLE: Unavailable,
    ErrorCode.INTERNAL: Unavailable,
    ErrorCode.CONFIGURATION: ConfigurationError,
    ErrorCode.POLICY_INVALID: ConfigurationError,
}

__all__ = [
    "CODE_BRANCH",
    "BudgetExceeded",
    "ConfigurationError",
    "Conflict",
    "ErrorCode",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "TetherError",
    "Unauthenticated",
    "Unavailable",
]
