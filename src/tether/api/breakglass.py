"""Break-glass routes: request (the task's agent or an approver), decide, review.

Every response says loudly what break-glass is: emergency scopes beyond policy, time-boxed,
approved by distinct humans, never inherited, reviewed afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Query
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from tether.api.approvals import approver_dependency
from tether.api.bearer import any_authorization, bearer_token
from tether.api.models import ScopeIn
from tether.core.errors import ErrorCode, InvalidRequest, Unauthenticated
from tether.core.ids import IdKind, TaskId, is_well_formed
from tether.core.scope import JSONValue, Scope
from tether.service.approvals import Approver

if TYPE_CHECKING:
    from tether.api.app import ApiDeps


class BreakGlassIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scopes: Annotated[list[ScopeIn], Field(min_length=1, max_length=16)]
    reason: Annotated[StrictStr, Field(min_length=1, max_length=2000)]
    window_seconds: StrictInt | None = Field(
        default=None, description="How long it stays active once approved (default 900, capped)."
    )


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[StrictStr, Field(max_length=1000)] = ""


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Annotated[StrictStr, Field(min_length=1, max_length=10_000)]


class BreakGlassVoteOut(BaseModel):
    approver: str
    approve: bool
    reason: str
    at: str


class BreakGlassOut(BaseModel):
    breakglass_id: str
    task_id: str
    agent: str
    scopes: list[dict[str, Any]]
    reason: str
    requested_by: str
    requested_at: str
    decide_by: str
    window_seconds: int
    required: int
    approvals: int
    state: str = Field(description="pending, active, denied, expired or ended")
    votes: list[BreakGlassVoteOut]
    active_from: str | None
    active_until: str | None
    needs_review: bool = Field(description="True until a human writes the post-incident review.")
    review: str | None
    reviewed_by: str | None
    reviewed_at: str | None


def _bg_id(value: str) -> str:
    if not is_well_formed(value, IdKind.BREAKGLASS):
        raise InvalidRequest("not a tether break-glass id", code=ErrorCode.INVALID_FIELD)
    return value


def install_breakglass_routes(app: FastAPI, deps: ApiDeps) -> None:
    human = approver_dependency(deps)

    def requester(
        authorization: Annotated[str | None, Depends(any_authorization)],
    ) -> tuple[str, str | None]:
        token = bearer_token(authorization, "an approver token or the agent's SVID")
        try:
            return deps.approvers.verify(token).id, None
        except Unauthenticated:
            pass
        workload = deps.verifier.verify(token, deps.clock.now())
        return workload.id, workload.id

    asker = Depends(requester)

    @app.post(
        "/v1/tasks/{task_id}/breakglass",
        status_code=201,
        response_model=BreakGlassOut,
        tags=["break-glass"],
    )
    def request_breakglass(
        task_id: str, body: BreakGlassIn, who: tuple[str, str | None] = asker
    ) -> dict[str, JSONValue]:
        if not is_well_formed(task_id, IdKind.TASK):
            raise InvalidRequest("task_id is not a tether task id", code=ErrorCode.INVALID_FIELD)
        scopes = [Scope.from_json(s.model_dump(mode="json")) for s in body.scopes]
        requested_by, as_agent = who
        bg = deps.breakglass.request(
            requested_by,
            TaskId(task_id),
            scopes,
            body.reason,
            body.window_seconds,
            as_agent=as_agent,
        )
        return bg.to_json(deps.clock.now())

    @app.get("/v1/breakglass", response_model=list[BreakGlassOut], tags=["break-glass"])
    def list_breakglass(
        who: Approver = human, limit: Annotated[int, Query(ge=1, le=500)] = 100
    ) -> list[dict[str, JSONValue]]:
        now = deps.clock.now()
        return [bg.to_json(now) for bg in deps.breakglass.list(limit)]

    @app.get("/v1/breakglass/{breakglass_id}", response_model=BreakGlassOut, tags=["break-glass"])
    def show_breakglass(breakglass_id: str, who: Approver = human) -> dict[str, JSONValue]:
        return deps.breakglass.get(_bg_id(breakglass_id)).to_json(deps.clock.now())

    def vote(breakglass_id: str, approve: bool, who: Approver, body: NoteIn | None) -> Any:
        result = deps.breakglass.vote(
            who.id, _bg_id(breakglass_id), approve, body.reason if body else ""
        )
        return result.to_json(deps.clock.now())

    @app.post(
        "/v1/breakglass/{breakglass_id}/approve", response_model=BreakGlassOut, tags=["break-glass"]
    )
    def approve(
        breakglass_id: str, body: NoteIn | None = None, who: Approver = human
    ) -> dict[str, JSONValue]:
        return dict(vote(breakglass_id, True, who, body))

    @app.post(
        "/v1/breakglass/{breakglass_id}/deny", response_model=BreakGlassOut, tags=["break-glass"]
    )
    def deny(
        breakglass_id: str, body: NoteIn | None = None, who: Approver = human
    ) -> dict[str, JSONValue]:
        return dict(vote(breakglass_id, False, who, body))

    @app.post(
        "/v1/breakglass/{breakglass_id}/review", response_model=BreakGlassOut, tags=["break-glass"]
    )
    def review(breakglass_id: str, body: ReviewIn, who: Approver = human) -> dict[str, JSONValue]:
        result = deps.breakglass.review(who.id, _bg_id(breakglass_id), body.note)
        return result.to_json(deps.clock.now())
