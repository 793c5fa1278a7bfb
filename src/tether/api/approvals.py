"""Approval routes: approvers list, read and decide; the agent polls its own approval's state.

Approvers authenticate with an approver token (``Authorization: Bearer tap_…``). A workload's
SVID on these routes is ``403 not_an_approver``: no workload can approve, ever.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Query

from tether.api.bearer import approver_authorization, bearer_token
from tether.api.models import ApprovalOut, ApprovalStatusOut, VoteIn
from tether.core.errors import ErrorCode, Forbidden, InvalidRequest, Unauthenticated
from tether.core.identity import Workload
from tether.core.ids import ApprovalId, IdKind, is_well_formed
from tether.core.scope import JSONValue
from tether.service.approvals import Approver

if TYPE_CHECKING:
    from tether.api.app import ApiDeps


def _approval_id(value: str) -> ApprovalId:
    if not is_well_formed(value, IdKind.APPROVAL):
        raise InvalidRequest(
            "approval_id is not a tether approval id", code=ErrorCode.INVALID_FIELD
        )
    return ApprovalId(value)


def approver_dependency(deps: ApiDeps) -> Any:
    """A FastAPI dependency yielding the verified human approver; a workload gets 403."""

    def approver(authorization: Annotated[str | None, Depends(approver_authorization)]) -> Approver:
        token = bearer_token(authorization, "an approver token")
        try:
            return deps.approvers.verify(token)
        except Unauthenticated:
            pass
        try:
            deps.verifier.verify(token, deps.clock.now())
        except Unauthenticated:
            raise Unauthenticated(
                "not a valid approver token", code=ErrorCode.INVALID_TOKEN
            ) from None
        raise Forbidden("workloads cannot approve", code=ErrorCode.NOT_AN_APPROVER)

    return Depends(approver)


def install_approval_routes(app: FastAPI, deps: ApiDeps, authenticated: Any) -> None:
    human = approver_dependency(deps)

    @app.get("/v1/approvals", response_model=list[ApprovalOut], tags=["approvals"])
    def list_approvals(
        who: Approver = human,
        state: Annotated[str | None, Query(max_length=16)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[dict[str, JSONValue]]:
        now = deps.clock.now()
        items = [a.to_json(now) for a in deps.approvals.list(limit)]
        return [a for a in items if state is None or a["state"] == state]

    @app.get("/v1/approvals/{approval_id}", response_model=ApprovalOut, tags=["approvals"])
    def show_approval(approval_id: str, who: Approver = human) -> dict[str, JSONValue]:
        return deps.approvals.get(_approval_id(approval_id)).to_json(deps.clock.now())

    @app.post("/v1/approvals/{approval_id}/approve", response_model=ApprovalOut, tags=["approvals"])
    def approve(
        approval_id: str, body: VoteIn | None = None, who: Approver = human
    ) -> dict[str, JSONValue]:
        reason = body.reason if body else ""
        result = deps.approvals.vote(who, _approval_id(approval_id), True, reason)
        return result.to_json(deps.clock.now())

    @app.post("/v1/approvals/{approval_id}/deny", response_model=ApprovalOut, tags=["approvals"])
    def deny(
        approval_id: str, body: VoteIn | None = None, who: Approver = human
    ) -> dict[str, JSONValue]:
        reason = body.reason if body else ""
        result = deps.approvals.vote(who, _approval_id(approval_id), False, reason)
        return result.to_json(deps.clock.now())

    @app.get(
        "/v1/approvals/{approval_id}/status", response_model=ApprovalStatusOut, tags=["approvals"]
    )
    def approval_status(approval_id: str, agent: Workload = authenticated) -> dict[str, JSONValue]:
        found = deps.approvals.status_for_agent(agent, _approval_id(approval_id))
        return {
            "approval_id": found.approval_id,
            "state": found.state_at(deps.clock.now()).value,
            "expires_at": found.expires_at.isoformat(),
            "approvals": found.approvals,
            "required": found.required,
        }
