"""The v1 HTTP API: tasks, authorize, effects, health. Agents authenticate with their SVID as
``Authorization: Bearer <token>``; the grant travels in the body of ``authorize``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Final

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from fastapi_offline import FastAPIOffline

from tether import __version__
from tether.api.agents import install_agent_routes
from tether.api.approvals import install_approval_routes
from tether.api.authzen import install_authzen_routes
from tether.api.bearer import bearer_token, svid_authorization
from tether.api.body import MAX_BODY_BYTES, BodyLimit, StrictJsonRoute
from tether.api.breakglass import install_breakglass_routes
from tether.api.errors import error_response, install_error_handlers
from tether.api.front import add_front
from tether.api.gateways import install_gateway_routes
from tether.api.hotpath import Answer, HotPaths, authorize_answer, effect_answer
from tether.api.leases import install_lease_routes
from tether.api.models import (
    AuthorizeIn,
    CloseTaskOut,
    DelegateIn,
    EffectIn,
    EffectOut,
    OpenTaskIn,
    OpenTaskOut,
    VerdictOut,
)
from tether.api.observations import install_observation_routes
from tether.api.openapi import document_errors
from tether.api.ui import install_ui
from tether.core.budget import Budgets
from tether.core.errors import ErrorCode, InvalidRequest, TetherError, Unauthenticated
from tether.core.identity import Workload
from tether.core.ids import IdKind, TaskId, is_well_formed
from tether.core.scope import JSONValue, Scope
from tether.core.task import Intent
from tether.identity.keys import SigningKey
from tether.logs import get_logger
from tether.service.agents import AgentService
from tether.service.approvals import ApprovalService, ApproverVerifier
from tether.service.authorize import Authorizer
from tether.service.breakglass import BreakGlassService
from tether.service.effects import EffectService
from tether.service.grant_reads import GrantReader
from tether.service.leases import LeaseService
from tether.service.ports import Clock, PolicyEngine, Store, WorkloadVerifier
from tether.service.provenance import ProvenanceService
from tether.service.settings import ServiceSettings
from tether.service.tasks import TaskService

log = get_logger("tether.api")


#: FastAPI's own request telemetry, off (see :func:`create_app`).
NO_FASTAPI_TELEMETRY: Final[TelemetryConfig] = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "auto_configure": False,
}


@dataclass(frozen=True, slots=True)
class ApiDeps:
    verifier: WorkloadVerifier
    tasks: TaskService
    authorizer: Authorizer
    effects: EffectService
    store: Store
    policy: PolicyEngine
    clock: Clock
    settings: ServiceSettings
    approvals: ApprovalService
    approvers: ApproverVerifier
    breakglass: BreakGlassService
    agents: AgentService
    leases: LeaseService | None = None
    #: Keys that sign scoped lease tokens, published at /.well-known/jwks.json.
    lease_keys: tuple[SigningKey, ...] = ()
    #: The approval page's key for session-bound CSRF tokens (see :mod:`tether.api.ui`).
    ui_key: bytes = field(default=b"", repr=False)
    #: The verifier never waits on the network (no JWKS URL to fetch): the hot path may verify
    #: SVIDs on the event loop. Otherwise it verifies on a worker thread.
    verify_on_loop: bool = False
    #: Argument provenance: the user's request at task open, and /v1/observations.
    provenance: ProvenanceService | None = None
    #: Reads a grant's scopes for GET /v1/grant (a remote MCP gateway's tool listing).
    grants: GrantReader | None = None
    #: The workloads (SPIFFE IDs) whose MCP gateway records POST /v1/gateway/events accepts.
    gateways: frozenset[str] = frozenset()


def create_app(deps: ApiDeps, *, hot_paths: bool = True) -> FastAPI:
    """The API on ``deps``. Without ``hot_paths``, authorize and effects are served by their
    declared FastAPI routes alone: the reference the hot path's answers are tested against."""
    # /docs and /redoc load Swagger UI and ReDoc from tether itself, never from a CDN.
    app = FastAPIOffline(
        title="tether",
        version=__version__,
        summary="Request-time least privilege for AI agents.",
        # tether traces, counts and logs its own use cases (tether.observability); FastAPI's
        # own telemetry would add spans and metrics of every request once a tracer provider is
        # installed, and asks on each request whether one is (~5 µs).
        telemetry=NO_FASTAPI_TELEMETRY,
    )
    # Every route reads its JSON body through tether's strict reader (tether.api.body).
    app.router.route_class = StrictJsonRoute
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)

    def authenticate(authorization: str | None) -> Workload:
        token = bearer_token(authorization, "the agent's SVID")
        try:
            return deps.verifier.verify(token, deps.clock.now())
        except Unauthenticated as error:
            log.info("authentication_failed", reason=error.message)
            raise

    def caller(authorization: Annotated[str | None, Depends(svid_authorization)]) -> Workload:
        return authenticate(authorization)

    authenticated = Depends(caller)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        """Ready (200) when the store answers; ``degraded`` (still 200: decisions go on, on the
        last good policies) while the policy directory's latest change failed to load."""
        try:
            deps.store.ping()
        except TetherError as error:
            return error_response(ErrorCode.STORE_UNAVAILABLE, error.message)
        revision = deps.policy.revision
        failed = deps.policy.last_error
        if failed is None:
            return JSONResponse({"status": "ready", "policy_revision": revision})
        return JSONResponse(
            {
                "status": "degraded",
                "policy_revision": revision,
                "policy_error": {"code": failed.code.value, "message": failed.message},
            }
        )

    @app.post("/v1/tasks", status_code=201, response_model=OpenTaskOut, tags=["tasks"])
    def open_task(body: OpenTaskIn, agent: Workload = authenticated) -> dict[str, JSONValue]:
        scopes = [Scope.from_json(s.model_dump(mode="json")) for s in body.scopes]
        opened = deps.tasks.open_task(
            agent,
            Intent(body.intent.workflow, body.intent.purpose, body.intent.on_behalf_of),
            scopes,
            body.ttl_seconds,
            Budgets.from_json(body.budgets) if body.budgets is not None else None,
            body.intent.request,
        )
        return {
            "task_id": opened.task.task_id,
            "grant": opened.token,
            "expires_at": opened.task.expires_at.isoformat(),
            "granted": [s.to_json() for s in opened.grant.scopes],
            "budgets": opened.task.budgets.to_json(),
            "refused": [r.to_json() for r in opened.refused],
            "policy_revision": opened.grant.policy_revision,
        }

    @app.post(
        "/v1/tasks/{task_id}/delegate", status_code=201, response_model=OpenTaskOut, tags=["tasks"]
    )
    def delegate(
        task_id: str, body: DelegateIn, agent: Workload = authenticated
    ) -> dict[str, JSONValue]:
        if not is_well_formed(task_id, IdKind.TASK):
            raise InvalidRequest("task_id is not a tether task id", code=ErrorCode.INVALID_FIELD)
        try:
            child = Workload.from_spiffe_id(body.agent)
        except ValueError as error:
            raise InvalidRequest(
                f"agent must be the child's SPIFFE ID: {error}", code=ErrorCode.INVALID_FIELD
            ) from None
        scopes = [Scope.from_json(s.model_dump(mode="json")) for s in body.scopes]
        opened = deps.tasks.delegate(
            agent,
            TaskId(task_id),
            body.grant,
            child,
            scopes,
            body.ttl_seconds,
            Budgets.from_json(body.budgets) if body.budgets is not None else None,
        )
        return {
            "task_id": opened.task.task_id,
            "grant": opened.token,
            "expires_at": opened.task.expires_at.isoformat(),
            "granted": [s.to_json() for s in opened.grant.scopes],
            "budgets": opened.task.budgets.to_json(),
            "refused": [r.to_json() for r in opened.refused],
            "policy_revision": opened.grant.policy_revision,
            "delegation": {
                "depth": opened.grant.depth,
                "chain": list(opened.grant.delegators),
            },
        }

    @app.post("/v1/tasks/{task_id}/close", response_model=CloseTaskOut, tags=["tasks"])
    def close_task(task_id: str, agent: Workload = authenticated) -> dict[str, JSONValue]:
        if not is_well_formed(task_id, IdKind.TASK):
            raise InvalidRequest("task_id is not a tether task id", code=ErrorCode.INVALID_FIELD)
        task = deps.tasks.close_task(agent, TaskId(task_id))
        return {
            "task_id": task.task_id,
            "state": task.state.value,
            "ended_at": task.ended_at.isoformat() if task.ended_at else None,
        }

    # Served by tether.api.hotpath.HotPaths ahead of FastAPI; declared here for the OpenAPI
    # document and the 405 of other methods, answering through the same functions.
    @app.post("/v1/authorize", response_model=VerdictOut, tags=["decisions"])
    async def authorize(body: AuthorizeIn, agent: Workload = authenticated) -> JSONResponse:
        return _json(await authorize_answer(deps, agent, body))

    @app.post("/v1/effects", status_code=201, response_model=EffectOut, tags=["decisions"])
    async def report_effect(body: EffectIn, agent: Workload = authenticated) -> JSONResponse:
        """What an allowed call did (once per decision); with ``observation``, also what its
        result put in the agent's context, recorded as ``POST /v1/observations`` records it:
        one request per call for an enforcement point that reports both."""
        return _json(await effect_answer(deps, agent, body))

    install_approval_routes(app, deps, authenticated)
    install_authzen_routes(app, deps, authenticated)
    install_breakglass_routes(app, deps)
    install_agent_routes(app, deps)
    install_lease_routes(app, deps, authenticated)
    install_observation_routes(app, deps, authenticated)
    install_gateway_routes(app, deps, authenticated)
    install_ui(app, deps)
    document_errors(app)
    if hot_paths:
        # In front of every middleware, FastAPI's own too: the hot operations skip them all.
        add_front(app, lambda inner: HotPaths(inner, deps=deps, authenticate=authenticate))
    return app


def _json(answer: Answer) -> JSONResponse:
    status, body, no_store = answer
    headers = {"Cache-Control": "no-store"} if no_store else None
    return JSONResponse(body, status_code=status, headers=headers)
