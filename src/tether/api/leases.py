"""Leases over HTTP: the JWKS downstream APIs verify lease tokens with, introspection, and an
agent ending its own lease early.

``GET /.well-known/jwks.json`` is public (public keys only). Introspection follows RFC 7662's
shape: a downstream API, authenticated as a workload, posts a token and the audience it serves;
the answer is ``{"active": false}`` for anything that is not a live lease for that audience,
whatever the reason (forged, expired, revoked, another API's), so it tells a prober nothing.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from tether.core.errors import ErrorCode, InvalidRequest, NotFound, Unauthenticated
from tether.core.identity import Workload
from tether.core.ids import IdKind, TaskId, is_well_formed
from tether.core.lease import Lease, is_lease_id
from tether.core.scope import JSONValue
from tether.core.verdict import IssuedCredential
from tether.credentials.jwt_lease import jwks_document, verify_scoped_jwt
from tether.identity.keys import KeySet

if TYPE_CHECKING:
    from tether.api.app import ApiDeps


class IntrospectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: Annotated[StrictStr, Field(min_length=1, max_length=16384)]
    audience: Annotated[StrictStr, Field(min_length=1, max_length=512)]


class IntrospectOut(BaseModel):
    active: bool
    lease_id: str | None = None
    sub: str | None = None
    scope: str | None = None
    exp: int | None = None


class LeaseOut(BaseModel):
    lease_id: str
    task_id: str
    issuer: str
    kind: str
    scope: dict[str, Any]
    issued_at: str
    expires_at: str
    state: str
    ended_at: str | None


def credential_json(credential: IssuedCredential) -> dict[str, JSONValue]:
    return {
        "lease_id": credential.lease_id,
        "issuer": credential.issuer,
        "kind": credential.kind,
        "expires_at": credential.expires_at.isoformat(),
        "value": credential.value,
        "audience": credential.audience,
    }


def lease_json(lease: Lease, now_state: str) -> dict[str, JSONValue]:
    return {
        "lease_id": lease.lease_id,
        "task_id": lease.task_id,
        "issuer": lease.issuer_name,
        "kind": lease.issuer.value,
        "scope": lease.scope.to_json(),
        "issued_at": lease.issued_at.isoformat(),
        "expires_at": lease.expires_at.isoformat(),
        "state": now_state,
        "ended_at": lease.ended_at.isoformat() if lease.ended_at else None,
    }


def install_lease_routes(app: FastAPI, deps: ApiDeps, caller: Any) -> None:
    """``caller`` is the app's dependency that authenticates a workload."""
    keys = KeySet.from_jwks(jwks_document(deps.lease_keys)) if deps.lease_keys else None

    @app.get("/.well-known/jwks.json", tags=["leases"])
    def jwks(response: Response) -> dict[str, Any]:
        if not deps.lease_keys:
            raise NotFound("this server issues no lease tokens", code=ErrorCode.NOT_FOUND)
        # Short enough that a rotated key reaches verifiers before its tokens would.
        response.headers["Cache-Control"] = "public, max-age=300"
        return jwks_document(deps.lease_keys)

    @app.post("/v1/leases/introspect", response_model=IntrospectOut, tags=["leases"])
    def introspect(
        body: IntrospectIn, response: Response, _api: Workload = caller
    ) -> dict[str, JSONValue]:
        response.headers["Cache-Control"] = "no-store"
        if keys is None or deps.leases is None:
            return {"active": False}
        try:
            claims = verify_scoped_jwt(body.token, keys, body.audience, deps.clock.now())
        except Unauthenticated:
            return {"active": False}
        if not deps.leases.is_active(claims.jti):
            return {"active": False}
        return {
            "active": True,
            "lease_id": claims.jti,
            "sub": claims.subject,
            "scope": " ".join(sorted(claims.operations)),
            "exp": int(claims.expires_at.timestamp()),
        }

    @app.get("/v1/tasks/{task_id}/leases", response_model=list[LeaseOut], tags=["leases"])
    def task_leases(task_id: str, agent: Workload = caller) -> list[dict[str, JSONValue]]:
        if not is_well_formed(task_id, IdKind.TASK):
            raise InvalidRequest("task_id is not a tether task id", code=ErrorCode.INVALID_FIELD)
        task = deps.store.get_task(TaskId(task_id))
        if task is None or not hmac.compare_digest(task.agent, agent.id):
            raise NotFound(f"no task {task_id!r} for this agent", code=ErrorCode.TASK_NOT_FOUND)
        if deps.leases is None:
            return []
        now = deps.clock.now()
        return [
            lease_json(lease, lease.state_at(now).value) for lease in deps.leases.for_task(task_id)
        ]

    @app.post("/v1/leases/{lease_id}/revoke", response_model=LeaseOut, tags=["leases"])
    def revoke(lease_id: str, agent: Workload = caller) -> dict[str, JSONValue]:
        if not is_lease_id(lease_id):
            raise InvalidRequest("lease_id is not a tether lease id", code=ErrorCode.INVALID_FIELD)
        if deps.leases is None:
            raise NotFound(f"no lease {lease_id}", code=ErrorCode.LEASE_NOT_FOUND)
        lease = deps.leases.get(lease_id)
        if not hmac.compare_digest(lease.agent, agent.id):
            # Same answer as an unknown lease: another agent's lease ids are not disclosed.
            raise NotFound(f"no lease {lease_id}", code=ErrorCode.LEASE_NOT_FOUND)
        ended = deps.leases.revoke(lease_id, by=agent.id, reason="ended by its agent")
        return lease_json(ended, ended.state_at(deps.clock.now()).value)
