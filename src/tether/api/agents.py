"""The kill switch over HTTP, for approvers: revoke an agent everywhere, restore it, list."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from tether.api.approvals import approver_dependency
from tether.core.scope import JSONValue
from tether.service.approvals import Approver

if TYPE_CHECKING:
    from tether.api.app import ApiDeps


class RevokeAgentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent: Annotated[StrictStr, Field(min_length=1, max_length=2048)]
    reason: Annotated[StrictStr, Field(min_length=1, max_length=2000)]


class RestoreAgentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent: Annotated[StrictStr, Field(min_length=1, max_length=2048)]


class RevokedAgentOut(BaseModel):
    agent: str
    revoked_at: str
    reason: str
    revoked_by: str


class RevokeAgentOut(BaseModel):
    agent: str
    tasks_ended: int


def install_agent_routes(app: FastAPI, deps: ApiDeps) -> None:
    human = approver_dependency(deps)

    @app.post("/v1/agents/revoke", response_model=RevokeAgentOut, tags=["agents"])
    def revoke(body: RevokeAgentIn, who: Approver = human) -> dict[str, JSONValue]:
        ended = deps.agents.revoke(body.agent, body.reason, who.id)
        return {"agent": body.agent, "tasks_ended": ended}

    @app.post("/v1/agents/restore", status_code=204, tags=["agents"])
    def restore(body: RestoreAgentIn, who: Approver = human) -> None:
        deps.agents.restore(body.agent, who.id)

    @app.get("/v1/agents/revoked", response_model=list[RevokedAgentOut], tags=["agents"])
    def revoked(who: Approver = human) -> list[dict[str, JSONValue]]:
        return [
            {"agent": a, "revoked_at": at, "reason": reason, "revoked_by": by}
            for a, at, reason, by in deps.agents.revoked()
        ]
