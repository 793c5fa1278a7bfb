"""The v1 routes as request descriptions, the retry rule, and error answers to exceptions.

Shared by the sync and async clients so that both send the same bodies and retry the same way.

Retry rule (the reason it is safe): a call is repeated only when repeating it cannot do a thing
twice. A GET (approval status, health) is idempotent, so it is retried after any transport error
and after a 502/503/504. Any call, POSTs included, is retried after a failure to connect
(``ConnectError``, ``ConnectTimeout``): the request never left this process. A POST whose
request may have reached the server (a read timeout, a dropped connection, any answer) is never
repeated: a second ``authorize`` would be a second audited decision, a second ``effects`` a
conflict, a second ``tasks`` a second grant.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import httpx

from tether_sdk.errors import UNEXPECTED_RESPONSE, UNREACHABLE, Unavailable, error_for
from tether_sdk.models import JSON, IntentLike, ScopeLike, intent_json, scopes_json

RETRY_STATUS: Final = frozenset({502, 503, 504})
#: Transport errors raised before a byte of the request was sent.
NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout)


@dataclass(frozen=True, slots=True)
class Retry:
    """Bounded retries with exponential backoff: ``attempts`` tries in all (1 disables),
    waiting ``backoff``, then twice that, and so on, capped at ``max_backoff`` seconds."""

    attempts: int = 3
    backoff: float = 0.2
    max_backoff: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("Retry.attempts must be at least 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        return float(min(self.max_backoff, self.backoff * (2 ** (attempt - 1))))


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    body: JSON | None = None
    #: Answers that are not an error for this route (``readyz``'s 503 is an answer).
    retry_on_status: bool = True

    @property
    def idempotent(self) -> bool:
        return self.method == "GET"


def should_retry_error(request: Request, error: httpx.TransportError) -> bool:
    return request.idempotent or isinstance(error, NOT_SENT)


def should_retry_status(request: Request, status: int) -> bool:
    return request.idempotent and request.retry_on_status and status in RETRY_STATUS


def headers(svid: str | Callable[[], str]) -> dict[str, str]:
    token = svid() if callable(svid) else svid
    return {"Authorization": f"Bearer {token}"}


def unreachable(error: httpx.TransportError, attempts: int) -> Unavailable:
    tries = "once" if attempts == 1 else f"{attempts} times"
    return Unavailable(
        f"could not reach the tether server ({type(error).__name__}; tried {tries})",
        code=UNREACHABLE,
    )


def answer(response: httpx.Response) -> JSON:
    """The JSON body of a success, or the error tree's exception for an error answer."""
    body = _body(response)
    if response.is_success and isinstance(body, dict):
        return body
    raise _refusal(response, body)


def answer_list(response: httpx.Response) -> list[JSON]:
    """The JSON array of objects a listing route answers, or the error tree's exception."""
    body = _body(response)
    if response.is_success and isinstance(body, list) and all(isinstance(i, dict) for i in body):
        return body
    raise _refusal(response, body)


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _refusal(response: httpx.Response, body: Any) -> Exception:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        return error_for(error["code"], str(error.get("message", "")), response.status_code)
    if response.is_success:
        return error_for(
            UNEXPECTED_RESPONSE, "the answer is not the JSON this route sends", response.status_code
        )
    return error_for(
        UNEXPECTED_RESPONSE,
        f"HTTP {response.status_code} without a tether error body",
        response.status_code,
    )


def _segment(value: str) -> str:
    return quote(value, safe="")


# -- the routes ----------------------------------------------------------------------------


def open_task(
    intent: IntentLike,
    scopes: Sequence[ScopeLike],
    ttl_seconds: int | None,
    budgets: Mapping[str, Any] | None,
) -> Request:
    body: JSON = {"intent": intent_json(intent), "scopes": scopes_json(scopes)}
    if ttl_seconds is not None:
        body["ttl_seconds"] = ttl_seconds
    if budgets is not None:
        body["budgets"] = dict(budgets)
    return Request("POST", "/v1/tasks", body)


def authorize(
    grant: str,
    tool: str,
    action: str,
    dataset: str | None,
    args: Mapping[str, Any] | None,
    approval_id: str | None,
) -> Request:
    body: JSON = {"grant": grant, "tool": tool, "action": str(action), "args": dict(args or {})}
    if dataset is not None:
        body["dataset"] = dataset
    if approval_id is not None:
        body["approval_id"] = approval_id
    return Request("POST", "/v1/authorize", body)


def observe(
    grant: str, tool: str, result: Any, dataset: str | None, decision_id: str | None
) -> Request:
    body: JSON = {"grant": grant, "tool": tool, "result": result}
    if dataset is not None:
        body["dataset"] = dataset
    if decision_id is not None:
        body["decision_id"] = decision_id
    return Request("POST", "/v1/observations", body)


def report_effect(
    decision_id: str,
    status: str,
    records: int | None,
    bytes: int | None,
    recipients: Collection[str],
) -> Request:
    body: JSON = {"decision_id": decision_id, "status": str(status)}
    if records is not None:
        body["records"] = records
    if bytes is not None:
        body["bytes"] = bytes
    if recipients:
        body["recipients"] = list(recipients)
    return Request("POST", "/v1/effects", body)


def close_task(task_id: str) -> Request:
    return Request("POST", f"/v1/tasks/{_segment(task_id)}/close")


def delegate(
    task_id: str,
    grant: str,
    agent: str,
    scopes: Sequence[ScopeLike],
    ttl_seconds: int | None,
    budgets: Mapping[str, Any] | None = None,
) -> Request:
    body: JSON = {"grant": grant, "agent": agent, "scopes": scopes_json(scopes)}
    if ttl_seconds is not None:
        body["ttl_seconds"] = ttl_seconds
    if budgets is not None:
        body["budgets"] = dict(budgets)
    return Request("POST", f"/v1/tasks/{_segment(task_id)}/delegate", body)


def approval_status(approval_id: str) -> Request:
    return Request("GET", f"/v1/approvals/{_segment(approval_id)}/status")


def task_leases(task_id: str) -> Request:
    return Request("GET", f"/v1/tasks/{_segment(task_id)}/leases")


def revoke_lease(lease_id: str) -> Request:
    return Request("POST", f"/v1/leases/{_segment(lease_id)}/revoke")


def introspect_lease(token: str, audience: str) -> Request:
    return Request("POST", "/v1/leases/introspect", {"token": token, "audience": audience})


def request_breakglass(
    task_id: str, scopes: Sequence[ScopeLike], reason: str, window_seconds: int | None
) -> Request:
    body: JSON = {"scopes": scopes_json(scopes), "reason": reason}
    if window_seconds is not None:
        body["window_seconds"] = window_seconds
    return Request("POST", f"/v1/tasks/{_segment(task_id)}/breakglass", body)


def healthz() -> Request:
    return Request("GET", "/healthz")


def readyz() -> Request:
    return Request("GET", "/readyz", retry_on_status=False)
