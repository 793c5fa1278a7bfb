"""What an MCP gateway deciding remotely (``tether mcp-gateway --pdp-url``) reads and writes here.

A remote gateway holds no database credentials and no keys: it forwards each agent's SVID and
grant to this server, which verifies them. Besides ``/v1/authorize``, ``/v1/effects`` and
``/v1/observations`` (the agent's own routes), it uses:

- ``GET /v1/identity`` (the agent's SVID): the verified workload the SVID names. The gateway
  keys its per-agent upstream sessions on it.
- ``GET /v1/grant`` (the agent's SVID, ``X-Tether-Grant``): the scopes of the grant if it is
  valid, bound to that agent and usable now (``403 grant_not_bound`` otherwise), to filter
  ``tools/list``. Read-only; calls are still decided one by one by ``/v1/authorize``.
- ``POST /v1/gateway/events`` (the *gateway's own* SVID): the gateway's audit records
  (``tool_pinned``, ``tool_withheld``, ``upstream_failed``) sealed into this server's chain. Only
  workloads named by ``tether serve --gateway-ids`` may post them (``403 not_a_gateway``); each
  record names the gateway that reported it (``reported_by``) and the id the gateway chose for
  the event (``event_id``), which it keeps across retries: an id already recorded from that
  gateway is refused and nothing written (``409 event_replayed``;
  :mod:`tether.service.gateway_events`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

from fastapi import FastAPI, Header
from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictStr

from tether.core.audit import AuditKind
from tether.core.errors import ErrorCode, Forbidden, InvalidRequest
from tether.core.identity import Workload
from tether.core.ids import IdFactory
from tether.core.scope import JSONValue
from tether.service.gateway_events import GatewayEvent, GatewayEvents

if TYPE_CHECKING:
    from tether.api.app import ApiDeps

GRANT_HEADER: Final = "X-Tether-Grant"


class IdentityOut(BaseModel):
    agent: str = Field(description="The workload's id (its SPIFFE ID, or issuer#subject).")
    kind: str = Field(description="jwt-svid, x509-svid or oidc.")
    trust_domain: str
    name: str


class GrantOut(BaseModel):
    grant_id: str
    task_id: str
    agent: str
    expires_at: str
    scopes: list[dict[str, Any]] = Field(
        description="What the grant covers, as POST /v1/tasks answered it ('granted')."
    )


class GatewayEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["tool_pinned", "tool_withheld", "upstream_failed", "secret_redacted"]
    agent: Annotated[StrictStr, Field(min_length=1, max_length=2048)] | None = Field(
        default=None, description="The agent whose request the event happened on, if any."
    )
    event_id: StrictStr = Field(
        description="An id the gateway chose for this event (gev_ and 26 base32 digits) and "
        "keeps across retries: a second post of an id already recorded from this gateway is "
        "refused (409 event_replayed) and records nothing."
    )
    body: dict[str, JsonValue] = Field(
        description="The record's body as the gateway writes it locally (tools, digests, "
        "failure kinds; never argument values or credentials)."
    )


class GatewayEventOut(BaseModel):
    record_id: str
    kind: str


def identity_json(agent: Workload) -> dict[str, JSONValue]:
    return {
        "agent": agent.id,
        "kind": agent.kind.value,
        "trust_domain": agent.trust_domain,
        "name": agent.name,
    }


def install_gateway_routes(
    app: FastAPI, deps: ApiDeps, authenticated: Any, *, random_bytes: Any = os.urandom
) -> None:
    events = GatewayEvents(deps.store, deps.clock, IdFactory(random_bytes), deps.gateways)

    @app.get("/v1/identity", response_model=IdentityOut, tags=["gateways"])
    def identity(agent: Workload = authenticated) -> dict[str, JSONValue]:
        """The workload the bearer SVID names, once verified."""
        return identity_json(agent)

    @app.get("/v1/grant", response_model=GrantOut, tags=["gateways"])
    def grant(
        agent: Workload = authenticated,
        token: Annotated[str | None, Header(alias=GRANT_HEADER)] = None,
    ) -> dict[str, JSONValue]:
        """The scopes of the caller's grant, if it is usable now and bound to the caller."""
        if token is None or not token.strip() or len(token) > 8192:
            raise InvalidRequest(
                f"name the grant token in the {GRANT_HEADER} header",
                code=ErrorCode.INVALID_FIELD,
            )
        read = deps.grants.usable_grant(agent.id, token.strip()) if deps.grants else None
        if read is None:
            raise Forbidden(
                "the grant is not usable by this agent (invalid, expired, revoked, its task "
                "ended, or issued to another agent)",
                code=ErrorCode.GRANT_NOT_BOUND,
            )
        return {
            "grant_id": read.grant_id,
            "task_id": read.task_id,
            "agent": read.agent,
            "expires_at": read.expires_at.isoformat(),
            "scopes": [scope.to_json() for scope in read.scopes],
        }

    @app.post(
        "/v1/gateway/events", status_code=201, response_model=GatewayEventOut, tags=["gateways"]
    )
    def gateway_event(
        body: GatewayEventIn, gateway: Workload = authenticated
    ) -> dict[str, JSONValue]:
        """Seal one of an MCP gateway's own records into the audit chain, once per event id."""
        event = GatewayEvent(body.event_id, AuditKind(body.kind), body.agent, body.body)
        recorded = events.record(gateway, event)
        return {"record_id": recorded.record_id, "kind": recorded.kind.value}
