"""``TetherClient``: the synchronous client, one method per v1 agent route, and ``TaskSession``.

    with TetherClient("http://127.0.0.1:8470", svid=svid) as client:
        with client.task(intent=intent, scopes=scopes) as task:
            @task.guard(tool="payments.refund", action="spend", dataset="orders")
            def refund(order_id: str, amount: int) -> dict: ...

The SVID may be a string or a function returning the current one (SVIDs rotate); it is sent as
``Authorization: Bearer`` on every call and never printed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from tether_sdk import _http
from tether_sdk._http import Request, Retry
from tether_sdk.errors import (
    Conflict,
    ErrorCode,
    SyncResume,
    TetherError,
    wait_for,
)
from tether_sdk.guard import Counter, SyncGuard, make_spec, observable, raise_unless_allowed
from tether_sdk.models import (
    ApprovalStatus,
    ClosedTask,
    Effect,
    Health,
    IntentLike,
    Observation,
    Refusal,
    Scope,
    ScopeLike,
    Task,
    Verdict,
)
from tether_sdk.records import BreakGlass, Lease, LeaseIntrospection

log = logging.getLogger("tether_sdk")

Svid = str | Callable[[], str]


class TetherClient:
    """A synchronous client for an agent: it authenticates every call with the agent's SVID."""

    def __init__(
        self,
        base_url: str,
        *,
        svid: Svid,
        timeout: float = 10.0,
        retry: Retry | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._svid = svid
        self._retry = retry or Retry()
        self._sleep = sleep
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"TetherClient({str(self._http.base_url)!r})"

    # -- plumbing ------------------------------------------------------------------------

    def _exchange(self, request: Request, authenticated: bool) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(
                    request.method,
                    request.path,
                    json=request.body,
                    headers=_http.headers(self._svid) if authenticated else None,
                )
            except httpx.TransportError as error:
                if attempt < self._retry.attempts and _http.should_retry_error(request, error):
                    self._sleep(self._retry.delay(attempt))
                    continue
                raise _http.unreachable(error, attempt) from error
            if attempt < self._retry.attempts and _http.should_retry_status(
                request, response.status_code
            ):
                self._sleep(self._retry.delay(attempt))
                continue
            return response

    def _send(self, request: Request, *, authenticated: bool = True) -> dict[str, Any]:
        return _http.answer(self._exchange(request, authenticated))

    def _send_list(self, request: Request) -> list[dict[str, Any]]:
        return _http.answer_list(self._exchange(request, True))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TetherClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the v1 agent routes ---------------------------------------------------------------

    def open_task(
        self,
        intent: IntentLike,
        scopes: Sequence[ScopeLike],
        ttl_seconds: int | None = None,
        budgets: Mapping[str, Any] | None = None,
    ) -> Task:
        """``POST /v1/tasks``: a grant for the scopes policy allows (the rest in ``refused``)."""
        return Task.from_json(self._send(_http.open_task(intent, scopes, ttl_seconds, budgets)))

    def authorize(
        self,
        grant: str,
        tool: str,
        action: str,
        dataset: str | None = None,
        args: Mapping[str, Any] | None = None,
        approval_id: str | None = None,
    ) -> Verdict:
        """``POST /v1/authorize``: the verdict for one call. A ``deny`` is a verdict, not an
        exception; ``TaskSession.require`` raises instead."""
        body = _http.authorize(grant, tool, action, dataset, args, approval_id)
        return Verdict.from_json(self._send(body))

    def report_effect(
        self,
        decision_id: str,
        status: str = "ok",
        records: int | None = None,
        bytes: int | None = None,
        recipients: Collection[str] = (),
    ) -> Effect:
        """``POST /v1/effects``: what an allowed call did (once per decision)."""
        body = _http.report_effect(decision_id, status, records, bytes, recipients)
        return Effect.from_json(self._send(body))

    def observe(
        self,
        grant: str,
        tool: str,
        result: Any,
        dataset: str | None = None,
        decision_id: str | None = None,
    ) -> Observation:
        """``POST /v1/observations``: what ``result`` of ``tool`` put in the agent's context, for
        the task ``grant`` names. Trusted only when the catalog trusts the tool or dataset and
        ``decision_id`` is the allow of this call."""
        request = _http.observe(grant, tool, observable(result), dataset, decision_id)
        return Observation.from_json(self._send(request))

    def close_task(self, task_id: str) -> ClosedTask:
        """``POST /v1/tasks/{id}/close``: revoke the grant and every grant delegated from it."""
        return ClosedTask.from_json(self._send(_http.close_task(task_id)))

    def delegate(
        self,
        task_id: str,
        grant: str,
        agent: str,
        scopes: Sequence[ScopeLike],
        ttl_seconds: int | None = None,
        budgets: Mapping[str, Any] | None = None,
    ) -> Task:
        """``POST /v1/tasks/{id}/delegate``: a narrower child grant bound to ``agent`` (a SPIFFE
        ID); the child presents it with its own SVID."""
        body = _http.delegate(task_id, grant, agent, scopes, ttl_seconds, budgets)
        return Task.from_json(self._send(body))

    def approval_status(self, approval_id: str) -> ApprovalStatus:
        """``GET /v1/approvals/{id}/status``: the state of this agent's own approval."""
        return ApprovalStatus.from_json(self._send(_http.approval_status(approval_id)))

    def wait_for_approval(
        self, approval_id: str, timeout: float = 900.0, poll_interval: float = 2.0
    ) -> ApprovalStatus:
        """Poll until a human decides; the approved status, or ``ApprovalRejected`` /
        ``ApprovalTimeout``."""
        resume = SyncResume(status=self.approval_status, sleep=self._sleep)
        return wait_for(approval_id, resume, timeout, poll_interval)

    def task_leases(self, task_id: str) -> tuple[Lease, ...]:
        """``GET /v1/tasks/{id}/leases``: the just-in-time credentials minted for this agent's
        task (the credentials themselves came once, in the verdicts)."""
        leases = self._send_list(_http.task_leases(task_id))
        return tuple(Lease.from_json(raw) for raw in leases)

    def revoke_lease(self, lease_id: str) -> Lease:
        """``POST /v1/leases/{id}/revoke``: end one of this agent's leases before its time."""
        return Lease.from_json(self._send(_http.revoke_lease(lease_id)))

    def introspect_lease(self, token: str, audience: str) -> LeaseIntrospection:
        """``POST /v1/leases/introspect``: for a downstream API (itself a workload) holding a
        lease token, whether it is live for ``audience`` right now."""
        answer = self._send(_http.introspect_lease(token, audience))
        return LeaseIntrospection.from_json(answer)

    def request_breakglass(
        self,
        task_id: str,
        scopes: Sequence[ScopeLike],
        reason: str,
        window_seconds: int | None = None,
    ) -> BreakGlass:
        """``POST /v1/tasks/{id}/breakglass``: ask for emergency scopes on this agent's task.
        Humans approve it (``tether breakglass approve``); once ``active``, calls inside its
        scopes are allowed, each audited as break-glass."""
        request = _http.request_breakglass(task_id, scopes, reason, window_seconds)
        return BreakGlass.from_json(self._send(request))

    def healthz(self) -> Health:
        return Health.from_json(self._send(_http.healthz(), authenticated=False))

    def readyz(self) -> Health:
        """Ready when the store is reachable and writable; ``Unavailable`` otherwise."""
        return Health.from_json(self._send(_http.readyz(), authenticated=False))

    # -- tasks -------------------------------------------------------------------------------

    def task(
        self,
        intent: IntentLike,
        scopes: Sequence[ScopeLike],
        ttl_seconds: int | None = None,
        budgets: Mapping[str, Any] | None = None,
    ) -> TaskSession:
        """A task to use as ``with client.task(...) as task:``: opened on entry and always
        closed on exit, also when the block raises."""
        return TaskSession(self, intent, scopes, ttl_seconds, budgets)


class TaskSession:
    """An open task: its grant, and calls made under it. Use it as a context manager."""

    def __init__(
        self,
        client: TetherClient,
        intent: IntentLike,
        scopes: Sequence[ScopeLike],
        ttl_seconds: int | None,
        budgets: Mapping[str, Any] | None,
    ) -> None:
        self.client = client
        self._request = (intent, scopes, ttl_seconds, budgets)
        self._task: Task | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._task else "not opened"
        return f"TaskSession({self._task.task_id if self._task else None!r}, {state})"

    def open(self) -> TaskSession:
        if self._task is None:
            self._task = self.client.open_task(*self._request)
        return self

    def __enter__(self) -> TaskSession:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close()
        except TetherError as error:
            if exc is None:
                raise
            log.warning("tether could not close task %s: %s", self.task_id, error)

    def close(self) -> ClosedTask | None:
        """Close the task; a task that is already closed or expired is left as it is."""
        if self._task is None or self._closed:
            return None
        self._closed = True
        try:
            return self.client.close_task(self._task.task_id)
        except Conflict as error:
            if error.code == ErrorCode.TASK_NOT_OPEN:
                return None
            raise

    # -- what was granted ----------------------------------------------------------------------

    @property
    def task(self) -> Task:
        if self._task is None:
            raise RuntimeError("the task is not open yet: use 'with client.task(...) as task:'")
        return self._task

    @property
    def task_id(self) -> str:
        return self.task.task_id

    @property
    def grant(self) -> str:
        return self.task.grant

    @property
    def granted(self) -> tuple[Scope, ...]:
        return self.task.granted

    @property
    def refused(self) -> tuple[Refusal, ...]:
        return self.task.refused

    # -- calls under the grant -------------------------------------------------------------

    def authorize(
        self,
        tool: str,
        action: str,
        dataset: str | None = None,
        args: Mapping[str, Any] | None = None,
        approval_id: str | None = None,
    ) -> Verdict:
        return self.client.authorize(self.grant, tool, action, dataset, args, approval_id)

    def require(
        self,
        tool: str,
        action: str,
        dataset: str | None = None,
        args: Mapping[str, Any] | None = None,
        approval_id: str | None = None,
    ) -> Verdict:
        """Like ``authorize``, but return only an ``allow``: raise ``Denied`` or
        ``ApprovalRequired`` (whose ``retry()`` asks again with the approval id)."""
        verdict = self.authorize(tool, action, dataset, args, approval_id)

        def again(approved: str) -> Verdict:
            return self.require(tool, action, dataset, args, approved)

        raise_unless_allowed(verdict, resume=self.approval_resume(again))
        return verdict

    def report_effect(
        self,
        decision_id: str,
        status: str = "ok",
        records: int | None = None,
        bytes: int | None = None,
        recipients: Collection[str] = (),
    ) -> Effect:
        return self.client.report_effect(decision_id, status, records, bytes, recipients)

    def observe(
        self,
        tool: str,
        result: Any,
        dataset: str | None = None,
        decision_id: str | None = None,
    ) -> Observation:
        """Record what ``result`` of ``tool`` put in the agent's context (for custom agent
        loops; a guarded tool's result is observed by the guard)."""
        return self.client.observe(self.grant, tool, result, dataset, decision_id)

    def delegate(
        self,
        agent: str,
        scopes: Sequence[ScopeLike],
        ttl_seconds: int | None = None,
        budgets: Mapping[str, Any] | None = None,
    ) -> Task:
        return self.client.delegate(self.task_id, self.grant, agent, scopes, ttl_seconds, budgets)

    def leases(self) -> tuple[Lease, ...]:
        return self.client.task_leases(self.task_id)

    def request_breakglass(
        self, scopes: Sequence[ScopeLike], reason: str, window_seconds: int | None = None
    ) -> BreakGlass:
        return self.client.request_breakglass(self.task_id, scopes, reason, window_seconds)

    def approval_status(self, approval_id: str) -> ApprovalStatus:
        return self.client.approval_status(approval_id)

    def approval_resume(self, retry: Callable[[str], Any] | None) -> SyncResume:
        return SyncResume(status=self.client.approval_status, retry=retry, sleep=self.client._sleep)

    def guard(
        self,
        tool: str,
        action: str,
        dataset: str | None = None,
        *,
        records: Counter | None = None,
        bytes: Counter | None = None,
        recipients: str | None = None,
        exclude: Collection[str] = (),
    ) -> SyncGuard:
        """Decorate a function so each call is authorized first and its effect reported after
        (see ``tether_sdk.guard`` for how arguments are sent)."""
        return SyncGuard(
            self, make_spec(tool, action, dataset, records, bytes, recipients, exclude)
        )
