"""The SDK's error tree, keyed by the tether server's stable error codes.

    Exception
     ├── TetherError               the server refused the request, or could not be reached
     │    ├── InvalidRequest       400, 413: malformed, oversized or out-of-range input
     │    ├── Unauthenticated      401: no SVID, or one that does not verify
     │    ├── Forbidden            403: a verified agent asking for what it may not have
     │    ├── NotFound             404: the named task, decision or approval does not exist
     │    ├── Conflict             409: the request clashes with the current state
     │    ├── Unavailable          5xx, or the server could not be reached (``unreachable``)
     │    └── ConfigurationError   the server is set up wrongly
     └── NotAllowed                a well-formed call that tether did not allow (a 200 verdict)
          ├── Denied               ``deny``, with the verdict's reasons and decision id
          ├── ApprovalRequired     ``approval_required``, with the approval id and a way to wait
          ├── ApprovalRejected     the approval was denied, expired or already used
          └── ApprovalTimeout      still pending when the wait ran out (also a ``TimeoutError``)

Each ``TetherError`` carries the server's ``code`` (a ``str``: a newer server's unknown code
still gets the branch its HTTP status names), the HTTP ``status`` (``None`` when no answer came
back) and the server's ``message``. ``ERROR_CODES`` maps every server code to its branch; a test
compares it with the server's own table so the two never drift.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from tether_sdk.models import ApprovalState, ApprovalStatus, Verdict


class ErrorCode(StrEnum):
    """The server's stable error codes (``{"error": {"code", "message"}}``): its error tree's,
    and the one its AuthZEN door adds."""

    MALFORMED_JSON = "malformed_json"
    INVALID_FIELD = "invalid_field"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNKNOWN_CONSTRAINT = "unknown_constraint"
    INVALID_CONSTRAINT = "invalid_constraint"
    INVALID_SCOPE = "invalid_scope"
    MISSING_TOKEN = "missing_token"
    INVALID_TOKEN = "invalid_token"
    NOTHING_GRANTED = "nothing_granted"
    GRANT_NOT_BOUND = "grant_not_bound"
    NOT_TASK_OWNER = "not_task_owner"
    DEV_ISSUER_REFUSED = "dev_issuer_refused"
    NOT_AN_APPROVER = "not_an_approver"
    DELEGATION_WIDENS = "delegation_widens"
    DELEGATION_TOO_DEEP = "delegation_too_deep"
    AGENT_REVOKED = "agent_revoked"
    NOT_A_GATEWAY = "not_a_gateway"
    SUBJECT_MISMATCH = "subject_mismatch"  # AuthZEN: the subject is not the bearer
    TASK_NOT_FOUND = "task_not_found"
    DECISION_NOT_FOUND = "decision_not_found"
    NOT_FOUND = "not_found"
    APPROVAL_NOT_FOUND = "approval_not_found"
    BREAKGLASS_NOT_FOUND = "breakglass_not_found"
    LEASE_NOT_FOUND = "lease_not_found"
    TASK_NOT_OPEN = "task_not_open"
    EFFECT_ALREADY_REPORTED = "effect_already_reported"
    EVENT_REPLAYED = "event_replayed"
    APPROVAL_NOT_PENDING = "approval_not_pending"
    BUDGET_EXCEEDED = "budget_exceeded"
    LEASE_NOT_RENEWABLE = "lease_not_renewable"
    STORE_UNAVAILABLE = "store_unavailable"
    CREDENTIAL_UNAVAILABLE = "credential_unavailable"
    UPSTREAM_LEAKED_SECRET = "upstream_leaked_secret"
    AUDIT_UNAVAILABLE = "audit_unavailable"
    POLICY_UNAVAILABLE = "policy_unavailable"
    PDP_UNAVAILABLE = "pdp_unavailable"
    INTERNAL = "internal_error"
    CONFIGURATION = "configuration_error"
    POLICY_INVALID = "policy_invalid"


#: Codes only the SDK uses: no answer came back, or the answer was not tether's error shape.
UNREACHABLE: Final = "unreachable"
UNEXPECTED_RESPONSE: Final = "unexpected_response"


class TetherError(Exception):
    """The server refused a request (``code``, ``status``, ``message``), or was unreachable."""

    def __init__(self, message: str, *, code: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status!r})"


class InvalidRequest(TetherError):
    pass


class Unauthenticated(TetherError):
    pass


class Forbidden(TetherError):
    pass


class NotFound(TetherError):
    pass


class Conflict(TetherError):
    pass


class Unavailable(TetherError):
    pass


class ConfigurationError(TetherError):
    pass


#: Every server error code and the branch it raises; kept equal to the server's own table.
ERROR_CODES: Final[dict[ErrorCode, type[TetherError]]] = {
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
    ErrorCode.SUBJECT_MISMATCH: Forbidden,
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

_BY_STATUS: Final[dict[int, type[TetherError]]] = {
    400: InvalidRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: InvalidRequest,
}


def error_for(code: str, message: str, status: int | None) -> TetherError:
    """The exception for an error answer: by its code, else by its HTTP status."""
    try:
        branch = ERROR_CODES[ErrorCode(code)]
    except ValueError:
        if status is not None and status >= 500:
            branch = Unavailable
        else:
            branch = _BY_STATUS.get(status or 0, TetherError)
    return branch(message, code=code, status=status)


# -- calls tether did not allow ------------------------------------------------------------


class NotAllowed(Exception):
    """A well-formed call that tether did not allow. ``verdict`` is ``None`` only for the
    approval errors raised while waiting, which carry the approval's ``status`` instead."""

    def __init__(self, message: str, verdict: Verdict | None = None) -> None:
        super().__init__(message)
        self.verdict = verdict


class Denied(NotAllowed):
    """tether answered ``deny``. ``reasons`` say why; quote ``decision_id`` to an operator."""

    verdict: Verdict

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(f"tether denied the call: {verdict.explain()}", verdict)
        self.reasons = verdict.reasons
        self.decision_id = verdict.decision_id

    @property
    def codes(self) -> tuple[str, ...]:
        return self.verdict.codes


class ApprovalRejected(NotAllowed):
    """The approval ended without allowing the call: denied, expired, or already used."""

    def __init__(self, status: ApprovalStatus) -> None:
        super().__init__(f"approval {status.approval_id} is {status.state.value}")
        self.status = status
        self.approval_id = status.approval_id


class ApprovalTimeout(NotAllowed, TimeoutError):
    """The approval was still pending when the wait ran out; it may still be decided later."""

    def __init__(self, status: ApprovalStatus) -> None:
        super().__init__(f"approval {status.approval_id} is still pending")
        self.status = status
        self.approval_id = status.approval_id


@dataclass(frozen=True, slots=True)
class SyncResume:
    """How a synchronous caller polls an approval and re-runs the call that asked for it."""

    status: Callable[[str], ApprovalStatus]
    retry: Callable[[str], Any] | None = None
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic


@dataclass(frozen=True, slots=True)
class AsyncResume:
    """The same for a coroutine caller."""

    status: Callable[[str], Awaitable[ApprovalStatus]]
    retry: Callable[[str], Awaitable[Any]] | None = None
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    monotonic: Callable[[], float] = time.monotonic


def _settled(status: ApprovalStatus) -> bool:
    if status.state is ApprovalState.APPROVED:
        return True
    if status.state is ApprovalState.PENDING:
        return False
    raise ApprovalRejected(status)


def wait_for(
    approval_id: str, resume: SyncResume, timeout: float, poll_interval: float
) -> ApprovalStatus:
    """Poll ``approval_id`` until it is approved (returned) or ends otherwise (raised)."""
    deadline = resume.monotonic() + timeout
    while True:
        status = resume.status(approval_id)
        if _settled(status):
            return status
        left = deadline - resume.monotonic()
        if left <= 0:
            raise ApprovalTimeout(status)
        resume.sleep(min(poll_interval, left))


async def await_for(
    approval_id: str, resume: AsyncResume, timeout: float, poll_interval: float
) -> ApprovalStatus:
    deadline = resume.monotonic() + timeout
    while True:
        status = await resume.status(approval_id)
        if _settled(status):
            return status
        left = deadline - resume.monotonic()
        if left <= 0:
            raise ApprovalTimeout(status)
        await resume.sleep(min(poll_interval, left))


class ApprovalRequired(NotAllowed):
    """tether wants a human to approve this exact call first.

    ``approval_id`` names the pending approval. ``wait()`` polls the agent's approval status
    route until a human decides (returning the approved status, or raising ``ApprovalRejected``
    or ``ApprovalTimeout``); ``retry()`` then re-runs the same call with the approval id. A call
    raised from a coroutine (an ``AsyncTetherClient`` or an ``async def`` tool) uses
    ``wait_async()`` and ``retry_async()`` instead. Each approval allows exactly one call.
    """

    verdict: Verdict

    def __init__(
        self,
        verdict: Verdict,
        *,
        resume: SyncResume | None = None,
        aresume: AsyncResume | None = None,
    ) -> None:
        super().__init__(f"tether requires a human approval: {verdict.explain()}", verdict)
        if verdict.approval_id is None:
            raise ValueError("an approval_required verdict without an approval_id")
        self.approval_id: str = verdict.approval_id
        self.reasons = verdict.reasons
        self.decision_id = verdict.decision_id
        self._resume = resume
        self._aresume = aresume

    def wait(self, timeout: float = 900.0, poll_interval: float = 2.0) -> ApprovalStatus:
        """Block until the approval is decided; return its status once approved."""
        return wait_for(self.approval_id, self._sync(), timeout, poll_interval)

    def retry(self) -> Any:
        """Re-run the call with this approval (after ``wait()``), returning what it returns."""
        resume = self._sync()
        if resume.retry is None:
            raise TypeError("this call cannot be re-run here; retry it with approval_id")
        return resume.retry(self.approval_id)

    async def wait_async(
        self, timeout: float = 900.0, poll_interval: float = 2.0
    ) -> ApprovalStatus:
        return await await_for(self.approval_id, self._async(), timeout, poll_interval)

    async def retry_async(self) -> Any:
        resume = self._async()
        if resume.retry is None:
            raise TypeError("this call cannot be re-run here; retry it with approval_id")
        return await resume.retry(self.approval_id)

    def _sync(self) -> SyncResume:
        if self._resume is None:
            raise TypeError("raised from a coroutine: use 'await error.wait_async()' / retry_async")
        return self._resume

    def _async(self) -> AsyncResume:
        if self._aresume is None:
            raise TypeError("raised from synchronous code: use error.wait() / error.retry()")
        return self._aresume
