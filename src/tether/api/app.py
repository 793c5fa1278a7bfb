"""The v1 HTTP API: tasks, authorize, effects, health. Agents authenticate with their SVID as
``Authorization: Bearer <token>``; the grant travels in the body of ``authorize``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, FastAPI, Response
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from tether import __version__
from tether.api.agents import install_agent_routes
from tether.api.approvals import install_approval_routes
from tether.api.authzen import install_authzen_routes
from tether.api.bearer import bearer_token, svid_authorization
from tether.api.body import MAX_BODY_BYTES, BodyLimit, StrictJsonRoute
from tether.api.breakglass import install_breakglass_routes
from tether.api.errors import error_response, install_error_handlers
from tether.api.leases import credential_json, install_lease_routes
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
from tether.core.ids import DecisionId, IdKind, TaskId, is_well_formed
from tether.core.scope import JSONValue, Scope
from tether.core.task import Intent
from tether.identity.keys import SigningKey
from tether.logs import get_logger
from tether.service.agents import AgentService
from tether.service.approvals import ApprovalService, ApproverVerifier
from tether.service.authorize import Authorizer
from tether.service.breakglass import BreakGlassService
from tether.service.effects import EffectService
from tether.service.enforce import CallRequest
from tether.service.flows import Expect
from tether.service.leases import LeaseService
from tether.service.ports import Clock, PolicyEngine, Store, WorkloadVerifier
from tether.service.provenance import ProvenanceService
from tether.service.settings import ServiceSettings
from tether.service.tasks import TaskService

log = get_logger("tether.api")


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
    #: Argument provenance: the user's request at task open, and /v1/observations.
    provenance: ProvenanceService | None = None


def create_app(deps: ApiDeps) -> FastAPI:
    # /docs and /redoc load Swagger UI and ReDoc from tether itself, never from a CDN.
    app = FastAPIOffline(
        title="tether",
        version=__version__,
        summary="Request-time least privilege for AI agents.",
    )
    # Every route reads its JSON body through tether's strict reader (tether.api.body).
    app.router.route_class = StrictJsonRoute
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)

    def caller(authorization: Annotated[str | None, Depends(svid_authorization)]) -> Workload:
        token = bearer_token(authorization, "the agent's SVID")
        try:
            return deps.verifier.verify(token, deps.clock.now())
        except Unauthenticated as error:
            log.info("authentication_failed", reason=error.message)
            raise

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

    @app.post("/v1/authorize", response_model=VerdictOut, tags=["decisions"])
    def authorize(
        body: AuthorizeIn, response: Response, agent: Workload = authenticated
    ) -> dict[str, JSONValue]:
        expect = Expect(body.expect.records, body.expect.bytes) if body.expect else None
        request = CallRequest(
            body.tool, body.action, body.dataset, body.args, body.approval_id, expect
        )
        verdict = deps.authorizer.enforce(agent, body.grant, request, credentials=True)
        out = verdict.to_json()
        if verdict.credential is not None:
            # A credential is for this caller, once: no cache or proxy may keep the response.
            response.headers["Cache-Control"] = "no-store"
            out["credential"] = credential_json(verdict.credential)
        return out

    @app.post("/v1/effects", status_code=201, response_model=EffectOut, tags=["decisions"])
    def report_effect(body: EffectIn, agent: Workload = authenticated) -> dict[str, JSONValue]:
        if not is_well_formed(body.decision_id, IdKind.DECISION):
            raise InvalidRequest(
                "decision_id is not a tether decision id", code=ErrorCode.INVALID_FIELD
            )
        effect = deps.effects.report(
            agent,
            DecisionId(body.decision_id),
            body.status,
            body.records,
            body.bytes,
            body.recipients,
        )
        out = effect.to_json()
        out.pop("recipients")
        out["recipient_count"] = len(effect.recipients)
        return out

    install_approval_routes(app, deps, authenticated)
    install_authzen_routes(app, deps, authenticated)
    install_breakglass_routes(app, deps)
    install_agent_routes(app, deps)
    install_lease_routes(app, deps, authenticated)
    install_observation_routes(app, deps, authenticated)
    install_ui(app, deps)
    document_errors(app)
    return app
