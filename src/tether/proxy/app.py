"""The egress proxy as an ASGI app (Starlette): every request is decided by tether before it leaves.

    /<upstream>/<path>  → method one a route may name? (405)
                        → Authorization: Bearer <SVID> verifies (401); X-Tether-Grant named (401)
                        → path normalized (400 invalid_path); a route matches (404 route_not_found)
                        → query allowed, body bounded and parsed, arguments mapped (400 / 413)
                        → Authorizer.authorize(workload, grant, Call(tool, action, dataset, args),
                                               X-Tether-Approval)
                        → deny / approval_required: 403 with the verdict; nothing is forwarded
                        → allow: the secret added, forwarded, the answer bounded, the secret
                          redacted from it (or the answer withheld: 502 upstream_leaked_secret)
                        → a secret_redacted record for each place it was taken out of
                        → EffectService.report(ok/error by upstream status, bytes, records)
                        → the upstream's status, headers and body, plus X-Tether-Decision
    /.tether/healthz    → 200 (an upstream name never starts with '.')
    /metrics            → Prometheus text, the metric names of ``tether serve``, no credentials
                          (unless turned off; then an upstream may be named ``metrics``)

INVARIANT: nothing reaches an upstream without an ``allow`` verdict for exactly the method, path,
query and body forwarded. INVARIANT: an answer whose effect (or redaction) cannot be recorded is
withheld.
Store and policy work is synchronous (SQLite, Cedar) and runs in worker threads.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import anyio.to_thread
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as StarletteRoute
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as AsgiScope

from tether.core.audit import AuditKind
from tether.core.effect import EffectStatus
from tether.core.errors import ErrorCode, InvalidRequest, TetherError, Unauthenticated
from tether.core.identity import Workload
from tether.core.ids import DecisionId, IdFactory
from tether.core.redact import Redactor, audit_body
from tether.core.risks import Risk
from tether.core.scope import JSONValue
from tether.core.secret import Secret
from tether.core.verdict import Decision, Verdict
from tether.logs import get_logger
from tether.observability import Metrics
from tether.observability.http import ServeMetrics
from tether.proxy.config import METHODS, ProxyConfig, Route, Upstream
from tether.proxy.errors import (
    ProxyCode,
    Refused,
    refused_response,
    tether_error_response,
    verdict_response,
)
from tether.proxy.forward import (
    Answer,
    FailureKind,
    Forwarder,
    Outgoing,
    UpstreamFailure,
    forwarded_headers,
)
from tether.proxy.routes import (
    Match,
    RouteTable,
    call_args,
    count_records,
    parse_body,
    parse_query,
    parse_target,
)
from tether.service.authorize import Authorizer
from tether.service.effects import EffectService
from tether.service.enforce import CallRequest
from tether.service.ports import AuditEntry, Clock, Store, WorkloadVerifier
from tether.service.provenance import ProvenanceService
from tether.service.settings import ServiceSettings

log = get_logger("tether.proxy")

GRANT_HEADER: Final = "x-tether-grant"
APPROVAL_HEADER: Final = "x-tether-approval"
DECISION_HEADER: Final = "X-Tether-Decision"
HEALTH_PATH: Final = "/.tether/healthz"
MAX_TOKEN_BYTES: Final = 8192
MAX_APPROVAL_ID: Final = 64

_FAILURE_CODE: Final = {
    FailureKind.UNREACHABLE: ProxyCode.UPSTREAM_UNREACHABLE,
    FailureKind.TIMEOUT: ProxyCode.UPSTREAM_TIMEOUT,
    FailureKind.TOO_LARGE: ProxyCode.UPSTREAM_RESPONSE_TOO_LARGE,
    FailureKind.MALFORMED: ProxyCode.UPSTREAM_MALFORMED,
    FailureKind.LEAKED_SECRET: ProxyCode.UPSTREAM_LEAKED_SECRET,
}


@dataclass(frozen=True, slots=True)
class ProxyDeps:
    """What the proxy uses of a runtime (see :func:`tether.proxy.server.deps_from_runtime`)."""

    verifier: WorkloadVerifier
    authorizer: Authorizer
    effects: EffectService
    store: Store
    clock: Clock
    settings: ServiceSettings
    secrets: Callable[[str], Secret]
    ids: IdFactory
    #: Records what each answer puts in the agent's context (argument provenance).
    provenance: ProvenanceService | None = None
    #: The runtime's metrics, scraped at ``GET /metrics``; ``None`` serves no metrics.
    metrics: Metrics | None = None


@dataclass(frozen=True, slots=True)
class _Allowed:
    """An allowed call on its way upstream: who, under which decision, on which route."""

    workload: Workload
    verdict: Verdict
    match: Match
    args: dict[str, JSONValue]
    grant: str = ""


def _bearer(request: Request) -> str:
    value = request.headers.get("authorization")
    if value is None:
        raise Unauthenticated(
            "send the agent's SVID as 'Authorization: Bearer <token>'", code=ErrorCode.MISSING_TOKEN
        )
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated(
            "the Authorization header must be 'Bearer <token>'", code=ErrorCode.MISSING_TOKEN
        )
    if len(token) > MAX_TOKEN_BYTES:
        raise Unauthenticated("the token is too large", code=ErrorCode.INVALID_TOKEN)
    return token


def _recipients(args: dict[str, JSONValue], name: str | None) -> tuple[str, ...]:
    value = args.get(name) if name is not None else None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return ()


class EgressProxy:
    """The proxy's request pipeline over one config, one runtime and one upstream client."""

    def __init__(
        self,
        config: ProxyConfig,
        deps: ProxyDeps,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.deps = deps
        self.routes = RouteTable(config.routes)
        self._transport = transport
        self._forwarder: Forwarder | None = None

    def __repr__(self) -> str:
        return f"EgressProxy(upstreams={sorted(self.config.upstreams)!r})"

    @asynccontextmanager
    async def running(self) -> AsyncIterator[EgressProxy]:
        """One upstream client for the proxy's life, closed on the way out."""
        # httpx logs each request's full URL at INFO, and a query_param secret is in the URL:
        # keep its loggers (and httpcore's) quiet whatever the host application configured.
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
        async with Forwarder.new_client(self._transport) as client:
            self._forwarder = Forwarder(client)
            try:
                yield self
            finally:
                self._forwarder = None

    # -- the edge ------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        try:
            return await self._handle(request)
        except Refused as refusal:
            return refused_response(refusal)
        except TetherError as error:
            return tether_error_response(error)
        except Exception as error:  # fail closed, and say nothing about it to the caller
            log.error("unexpected_error", error_type=type(error).__name__)
            return tether_error_response(
                TetherError("the proxy hit an internal error; see its log", code=ErrorCode.INTERNAL)
            )

    async def _handle(self, request: Request) -> Response:
        method = request.method.upper()
        if method not in METHODS:
            raise Refused(ProxyCode.METHOD_NOT_ALLOWED, f"the proxy does not forward {method}")
        workload = await self._authenticate(request)
        grant = request.headers.get(GRANT_HEADER, "").strip()
        if not grant:
            raise Refused(
                ProxyCode.GRANT_MISSING, "name the grant of your task in the X-Tether-Grant header"
            )
        if len(grant) > MAX_TOKEN_BYTES:
            raise Unauthenticated("the grant token is too large", code=ErrorCode.INVALID_TOKEN)
        approval = request.headers.get(APPROVAL_HEADER, "").strip() or None
        if approval is not None and len(approval) > MAX_APPROVAL_ID:
            raise InvalidRequest("X-Tether-Approval is not an approval id")

        upstream, matched = self._route(request, method, workload)
        query = parse_query(request.scope.get("query_string", b""), matched.route)
        body = await self._read_body(request, upstream)
        if body and method in {"GET", "HEAD"}:
            raise Refused(ProxyCode.INVALID_BODY, f"a {method} request carries no body")
        args = self._args(request, matched, query, body)

        route = matched.route
        request_ = CallRequest(route.tool, route.action, route.dataset, args, approval)
        try:
            verdict: Verdict = await anyio.to_thread.run_sync(
                self.deps.authorizer.enforce, workload, grant, request_
            )
        except InvalidRequest as invalid:
            # The one check of the enforcement entry refused the arguments this route mapped.
            raise Refused(ProxyCode.INVALID_ARGUMENTS, invalid.message) from None
        match verdict.decision:
            case Decision.DENY | Decision.APPROVAL_REQUIRED:
                log.info(
                    "proxy_refused",
                    agent=workload.id,
                    tool=route.tool,
                    decision=verdict.decision.value,
                    decision_id=verdict.decision_id,
                )
                return verdict_response(verdict)
            case Decision.ALLOW:
                pass
        outgoing = Outgoing(
            method=method,
            path=matched.upstream_path(),
            query=query,
            headers=forwarded_headers(request.headers.items(), upstream),
            body=body,
        )
        allowed = _Allowed(workload, verdict, matched, args, grant)
        return await self._forward(allowed, upstream, outgoing)

    def _route(self, request: Request, method: str, workload: Workload) -> tuple[Upstream, Match]:
        """The upstream and route the raw request path names; ``route_not_found`` otherwise."""
        raw_path = request.scope.get("raw_path")
        if not isinstance(raw_path, bytes):
            # Without the raw path an encoded '/' is indistinguishable from a real one.
            raise Refused(ProxyCode.INVALID_PATH, "the server did not pass the raw request path")
        target = parse_target(raw_path)
        upstream = self.config.upstreams.get(target.upstream)
        matched = self.routes.match(method, target) if upstream is not None else None
        if upstream is None or matched is None:
            log.info("route_not_found", agent=workload.id, upstream=target.upstream, method=method)
            raise Refused(
                ProxyCode.ROUTE_NOT_FOUND,
                f"no route for {method} /{target.upstream}{target.display}; the proxy forwards "
                "only the routes its operator configured",
            )
        return upstream, matched

    def _args(
        self, request: Request, matched: Match, query: dict[str, str], body: bytes
    ) -> dict[str, JSONValue]:
        """The call's arguments by the route's mapping (bounded by the enforcement entry)."""
        parsed = None
        if matched.route.reads_body:
            parsed = parse_body(body, request.headers.get("content-type"))
        return call_args(matched, query, parsed)

    async def _authenticate(self, request: Request) -> Workload:
        token = _bearer(request)
        try:
            workload: Workload = await anyio.to_thread.run_sync(
                self.deps.verifier.verify, token, self.deps.clock.now()
            )
        except Unauthenticated as error:
            log.info("authentication_failed", reason=error.message)
            raise
        return workload

    async def _read_body(self, request: Request, upstream: Upstream) -> bytes:
        limit = upstream.max_request_bytes
        too_large = Refused(
            ProxyCode.PAYLOAD_TOO_LARGE,
            f"request bodies to {upstream.name} are limited to {limit} bytes",
        )
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    # -- after an allow ------------------------------------------------------------------------

    async def _forward(self, allowed: _Allowed, upstream: Upstream, outgoing: Outgoing) -> Response:
        if self._forwarder is None:
            raise RuntimeError("the proxy is not running; use `async with proxy.running()`")
        secret: Secret | None = None
        redactor: Redactor | None = None
        if upstream.secret is not None:
            try:
                secret = await anyio.to_thread.run_sync(self.deps.secrets, upstream.secret.name)
                # Refused here, before it is sent, if the answer could not be searched for it.
                redactor = await anyio.to_thread.run_sync(
                    self._forwarder.redactor, upstream, secret
                )
            except TetherError as error:
                log.error(
                    "credential_unavailable",
                    upstream=upstream.name,
                    secret=upstream.secret.name,
                    code=error.code.value,
                )
                await self._failed(allowed, upstream.name, "credential_unavailable", error.message)
                raise Refused(
                    ProxyCode.CREDENTIAL_UNAVAILABLE,
                    "the proxy cannot read this upstream's credential; an operator must restore "
                    "it (tether secrets list)",
                    decision_id=allowed.verdict.decision_id,
                ) from None
        try:
            answer = await self._forwarder.send(upstream, outgoing, secret, redactor)
        except UpstreamFailure as failure:
            log.warning(
                "upstream_failed",
                upstream=upstream.name,
                failure=failure.kind.value,
                **failure.detail,
            )
            await self._failed(
                allowed, upstream.name, failure.kind.value, failure.message, failure.detail
            )
            retry = (
                "retrying will not help until its operator stops the upstream echoing it"
                if failure.kind is FailureKind.LEAKED_SECRET
                else "the call may be retried"
            )
            raise Refused(
                _FAILURE_CODE[failure.kind],
                f"{failure.message}; {retry}",
                upstream=upstream.name,
                decision_id=allowed.verdict.decision_id,
            ) from None
        await self._redacted(allowed, upstream.name, answer)
        await self._report(allowed, answer)
        await self._observe(allowed, answer)
        log.info(
            "proxy_forwarded",
            agent=allowed.workload.id,
            tool=allowed.match.route.tool,
            decision_id=allowed.verdict.decision_id,
            status=answer.status,
            bytes=len(answer.body),
        )
        response = Response(content=answer.body, status_code=answer.status)
        for name, value in answer.headers:
            response.headers.append(name, value)
        response.headers[DECISION_HEADER] = allowed.verdict.decision_id
        return response

    async def _redacted(self, allowed: _Allowed, upstream: str, answer: Answer) -> None:
        """Audit each place a secret was taken out of the answer (a ``secret_redacted`` record,
        as the MCP gateway writes: names, forms and counts, never a value); withhold the answer
        (503) if one cannot be recorded."""
        tool = allowed.match.route.tool
        decision_id = allowed.verdict.decision_id
        for redaction in answer.redactions:
            log.warning(
                "secret_redacted",
                upstream=upstream,
                tool=tool,
                where=redaction.where,
                secrets=[f.name for f in redaction.found],
            )
            body = audit_body(upstream, tool, redaction.where, redaction.found, decision_id)
            if not await self._audit(allowed, AuditKind.SECRET_REDACTED, body):
                await self._failed(
                    allowed, upstream, "effect_not_recorded", "a redaction could not be audited"
                )
                raise Refused(
                    ProxyCode.EFFECT_NOT_RECORDED,
                    "the call ran but what was redacted from its answer could not be recorded, "
                    "so its answer is withheld",
                    decision_id=decision_id,
                ) from None

    async def _audit(self, allowed: _Allowed, kind: AuditKind, body: dict[str, JSONValue]) -> bool:
        """Append one of the proxy's own audit records (``via: egress_proxy``); whether it was
        written (a failure is logged)."""
        entry = AuditEntry(
            record_id=self.deps.ids.audit(),
            at=self.deps.clock.now(),
            kind=kind,
            agent=allowed.workload.id,
            task_id=None,
            body={"via": "egress_proxy", **body},
        )
        try:
            await anyio.to_thread.run_sync(self.deps.store.append_audit, entry)
        except TetherError as error:
            log.error("audit_failed", code=error.code.value, kind=kind.value)
            return False
        return True

    async def _report(self, allowed: _Allowed, answer: Answer | None) -> None:
        """Record the call's effect; withhold the answer (503) if it cannot be recorded."""
        route: Route = allowed.match.route
        if answer is None:
            status, size, records = EffectStatus.ERROR, 0, None
        else:
            status = EffectStatus.OK if answer.status < 400 else EffectStatus.ERROR
            size = len(answer.body)
            records = (
                count_records(answer.body, route.count_records)
                if route.count_records is not None
                else None
            )
        recipients = _recipients(allowed.args, route.recipients_arg)
        decision_id: DecisionId = allowed.verdict.decision_id
        try:
            await anyio.to_thread.run_sync(
                lambda: self.deps.effects.report(
                    allowed.workload, decision_id, status, records, size, recipients
                )
            )
        except TetherError as error:
            log.error("effect_not_recorded", code=error.code.value, decision_id=decision_id)
            raise Refused(
                ProxyCode.EFFECT_NOT_RECORDED,
                "the call ran but its effect could not be recorded, so its answer is withheld",
                decision_id=decision_id,
            ) from None

    async def _observe(self, allowed: _Allowed, answer: Answer) -> None:
        """Record the values the answer puts in the agent's context (argument provenance);
        withhold the answer (503) if they cannot be recorded: an answer tether has not seen
        must not steer a later call."""
        provenance = self.deps.provenance
        if provenance is None:
            return
        route: Route = allowed.match.route
        text = answer.body.decode("utf-8", errors="replace")
        try:
            await anyio.to_thread.run_sync(
                lambda: provenance.observe_result(
                    allowed.workload,
                    allowed.grant,
                    route.tool,
                    route.dataset,
                    text,
                    allowed.verdict.decision_id,
                )
            )
        except TetherError as error:
            log.error(
                "observation_not_recorded",
                code=error.code.value,
                decision_id=allowed.verdict.decision_id,
            )
            raise Refused(
                ProxyCode.EFFECT_NOT_RECORDED,
                "the call ran but what its answer holds could not be recorded, so its answer is "
                "withheld",
                decision_id=allowed.verdict.decision_id,
            ) from None

    async def _failed(
        self,
        allowed: _Allowed,
        upstream: str,
        failure: str,
        message: str,
        detail: Mapping[str, str] | None = None,
    ) -> None:
        """An allowed call that did not complete: audit why (for a leak, the form of the secret
        found and where, never the secret), and record an error effect."""
        risk = Risk.ASI03 if failure == FailureKind.LEAKED_SECRET.value else Risk.ASI08
        body: dict[str, JSONValue] = {
            "upstream": upstream,
            "failure": failure,
            "message": message,
            "tool": allowed.match.route.tool,
            "decision_id": allowed.verdict.decision_id,
            "risks": [risk.value],
            **(detail or {}),
        }
        await self._audit(allowed, AuditKind.UPSTREAM_FAILED, body)
        with contextlib.suppress(Refused):  # logged; the caller hears the call failed either way
            await self._report(allowed, None)


class _Endpoint:
    """The proxy as a plain ASGI endpoint: every method reaches :meth:`EgressProxy.handle`, which
    refuses the odd ones itself (a function endpoint would get Starlette's GET-only default)."""

    def __init__(self, proxy: EgressProxy) -> None:
        self.proxy = proxy

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        response = await self.proxy.handle(Request(scope, receive))
        await response(scope, receive, send)


def proxy_app(proxy: EgressProxy) -> ASGIApp:
    """The ASGI app: ``/.tether/healthz``, ``/metrics`` when the proxy has metrics, and
    everything else through the proxy's pipeline."""

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with proxy.running():
            yield

    app = Starlette(
        routes=[
            StarletteRoute(HEALTH_PATH, health, methods=["GET"]),
            StarletteRoute("/{path:path}", _Endpoint(proxy)),
        ],
        lifespan=lifespan,
    )
    metrics = proxy.deps.metrics
    return app if metrics is None else ServeMetrics(app, metrics)
