"""``AsyncTetherClient``: the coroutine client, one method per v1 agent route, and
``AsyncTaskSession``. The same routes, bodies, retries and errors as ``TetherClient``.

    async with AsyncTetherClient("http://127.0.0.1:8470", svid=svid) as client:
        async with client.task(intent=intent, scopes=scopes) as task:
            @task.guard(tool="payments.refund", action="spend", dataset="orders")
            async def refund(order_id: str, amount: int) -> dict: ...
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from tether_sdk import _http
from tether_sdk._http import Request, Retry
from tether_sdk.client import Svid
from tether_sdk.errors import AsyncResume, Conflict, ErrorCode, TetherError, await_for
from tether_sdk.guard import AsyncGuard, Counter, make_spec, observable, raise_unless_allowed
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


class AsyncTetherClient:
    """A coroutine client for an agent: it authenticates every call with the agent's SVID."""

    def __init__(
        self,
        base_url: str,
        *,
        svid: Svid,
        timeout: float = 10.0,
        retry: Retry | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._svid = svid
        self._retry = retry or Retry()
        self._sleep = sleep
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"AsyncTetherClient({str(self._http.base_url)!r})"

    async def _exchange(self, request: Request, authenticated: bool) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
                    request.method,
                    request.path,
                    json=request.body,
                    headers=_http.headers(self._svid) if authenticated else None,
                )
            except httpx.TransportError as error:
                if attempt < self._retry.attempts and _http.should_retry_error(request, error):
                    await self._sleep(self._retry.delay(attempt))
                    continue
                raise _http.unreachable(error, attempt) from error
            if attempt < self._retry.attempts and _http.should_retry_status(
                request, response.status_code
            ):
                await self._sleep(self._retry.delay(attempt))
                continue
            return response

    async def _send(self, request: Request, *, authenticated: bool = True) -> dict[str, Any]:
        return _http.answer(await self._exchange(request, authenticated))

    async def _send_list(self, request: Request) -> list[dict[str, Any]]:
        return _http.answer_list(await self._exchange(request, True))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncTetherClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the v1 agent routes ---------------------------------------------------------------

    async def open_task(
        self,
        intent: IntentLike,
        scopes: Sequence[ScopeLike],
        ttl_seconds: int | None = None,
        budgets: Mapping[str, Any] | None = None,
    ) -> Task:
        request = _http.open_task(intent, scopes, ttl_seconds, budgets)
        return Task.from_json(await self._send(request))

    async def authorize(
        self,
        grant: str,
        tool: str,
        action: str,
        dataset: str | None = None,
        args: Mapping[str, Any] | None = None,
        approval_id: str | None = None,
    ) -> Verdict:
        request = _http.authorize(grant, tool, action, dataset, args, approval_id)
        return Verdict.from_json(await self._send(request))

    async def report_effect(
        self,
        decision_id: str,
        status: str = "ok",
        records: int | None = None,
        bytes: int | None = None,
        recipients: Collection[str] = (),
    ) -> Effect:
        request = _http.report_effect(decision_id, status, records, bytes, recipients)
        return Effect.from_json(await self._send(request))

    async def observe(
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
        return Observation.from_json(await self._send(request))

    async def close_task(self, task_id: str) -> ClosedTask:
        return ClosedTask.from_json(await self._send(_http.close_task(task_id)))

    async def delegate(
        self,
        task_id: str,
        grant: str,
        agent: str,
        scopes: Sequence[ScopeLike],
        ttl_seconds: int | None = None,
        budgets: Mapping[str, Any] | None = None,
    ) -> Task:
        request = _http.delegate(task_id, grant, agent, scopes, ttl_seconds, budgets)
        return Task.from_json(await self._send(request))

    async def approval_status(self, approval_id: str) -> ApprovalStatus:
        return ApprovalStatus.from_json(await self._send(_http.approval_status(approval_id)))

    async def wait_for_approval(
        self, approval_id: str, timeout: float = 900.0, poll_interval: float = 2.0
    ) -> ApprovalStatus:
        resume = AsyncResume(status=self.approval_status, sleep=self._sleep)
        return await await_for(approval_id, resume, timeout, poll_interval)

    async def task_leases(self, task_id: str) -> tuple[Lease, ...]:
        """``GET /v1/tasks/{id}/leases``: the just-in-time credentials minted for this agent's
        task (the credentials themselves came once, in the verdicts)."""
        leases = await self._send_list(_http.task_leases(task_id))
        return tuple(Lease.from_json(raw) for raw in leases)

    async def revoke_lease(self, lease_id: str) -> Lease:
        """``POST /v1/leases/{id}/revoke``: end one of this agent's leases before its time."""
        return Lease.from_json(await self._send(_http.revoke_lease(lease_id)))

    async def introspect_lease(self, token: str, audience: str) -> LeaseIntrospection:
        """``POST /v1/leases/introspect``: for a downstream API (itself a workload) holding a
        lease token, whether it is live for ``audience`` right now."""
        return LeaseIntrospection.from_json(
            await self._send(_http.introspect_lease(token, audience))
        )

    async def request_breakglass(
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
        return BreakGlass.from_json(await self._send(request))

    async def healthz(self) -> Health:
        return Health.from_json(await self._send(_http.healthz(), authenticated=False))

    async def readyz(self) -> Health:
        return Health.from_json(await self._send(_http.readyz(), authenticated=False))

    def task(
        self,
        intent: IntentLike,
        scopes: Sequence[ScopeLike],
        ttl_seconds: int | None = None,
        budgets: Mapping[str, Any] | None = None,
    ) -> AsyncTaskSession:
        """A task to use as ``async with client.task(...) as task:``: opened on entry and
        always closed on exit, also when the block raises."""
        return AsyncTaskSession(self, intent, scopes, ttl_seconds, budgets)


class AsyncTaskSession:
    """An open task under an ``AsyncTetherClient``. Use it as an async context manager."""

    def __init__(
        self,
        client: AsyncTetherClient,
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
        return f"AsyncTaskSession({self._task.task_id if self._task else None!r}, {state})"

    async def open(self) -> AsyncTaskSession:
        if self._task is None:
            self._task = await self.client.open_task(*self._request)
        return self

    async def __aenter__(self) -> AsyncTaskSession:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.close()
        except TetherError as error:
            if exc is None:
                raise
            log.warning("tether could not close task %s: %s", self.task_id, error)

    async def close(self) -> ClosedTask | None:
        """Close the task; a task that is already closed or expired is left as it is."""
        if self._task is None or self._closed:
            return None
        self._closed = True
        try:
            return await self.client.close_task(self._task.task_id)
        except Conflict as error:
            if error.code == ErrorCode.TASK_NOT_OPEN:
                return None
            raise

    @property
    def task(self) -> Task:
        if self._task is None:
            raise RuntimeError(
                "the task is not open yet: use 'async with client.task(...) as task:'"
            )
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

    async def authorize(
        self,
        tool: str,
        action: str,
        dataset: str | None = None,
        args: Mapping[str, Any] | None = None,
        approval_id: str | None = None,
    ) -> Verdict:
        return await self.client.authorize(self.grant, tool, action, dataset, args, approval_id)

    async def require(
        self,
        tool: str,
        action: str,
        dataset: str | None = None,
        args: Mapping[str, Any] | None = None,
        approval_id: str | None = None,
    ) -> Verdict:
        """Like ``authorize``, but return only an ``allow``: raise ``Denied`` or
        ``ApprovalRequired`` (whose ``retry_async()`` asks again with the approval id)."""
        verdict = await self.authorize(tool, action, dataset, args, approval_id)

        async def again(approved: str) -> Verdict:
            return await self.require(tool, action, dataset, args, approved)

        raise_unless_allowed(verdict, aresume=self.approval_resume(again))
        return verdict

    async def report_effect(
        self,
        decision_id: str,
        status: str = "ok",
        records: int | None = None,
        bytes: int | None = None,
        recipients: Collection[str] = (),
    ) -> Effect:
        return await self.client.report_effect(decision_id, status, records, bytes, recipients)

    async def observe(
        self,
        tool: str,
        result: Any,
        dataset: str | None = None,
        decision_id: str | None = None,
    ) -> Observation:
        """Record what ``result`` of ``tool`` put in the agent's context (for custom agent
        loops; a guarded tool's result is observed by the guard)."""
        return await self.client.observe(self.grant, tool, result, dataset, decision_id)

    async def delegate(
        self,
        agent: str,
        scopes: Sequence[ScopeLike],
        ttl_seconds: int | None = None,
        budgets: Mapping[str, Any] | None = None,
    ) -> Task:
        return await self.client.delegate(
            self.task_id, self.grant, agent, scopes, ttl_seconds, budgets
        )

    async def leases(self) -> tuple[Lease, ...]:
        return await self.client.task_leases(self.task_id)

    async def request_breakglass(
        self, scopes: Sequence[ScopeLike], reason: str, window_seconds: int | None = None
    ) -> BreakGlass:
        return await self.client.request_breakglass(self.task_id, scopes, reason, window_seconds)

    async def approval_status(self, approval_id: str) -> ApprovalStatus:
        return await self.client.approval_status(approval_id)

    def approval_resume(self, retry: Callable[[str], Awaitable[Any]] | None) -> AsyncResume:
        return AsyncResume(
            status=self.client.approval_status, retry=retry, sleep=self.client._sleep
        )

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
    ) -> AsyncGuard:
        """Decorate a function so each call is authorized first and its effect reported after;
        the guarded function is a coroutine function (see ``tether_sdk.guard``)."""
        spec = make_spec(tool, action, dataset, records, bytes, recipients, exclude)
        return AsyncGuard(self, spec)
