"""``POST /v1/observations``: an agent reports what a tool's result put in its context.

Authenticated like ``/v1/effects`` (the agent's SVID) and bound to the task its grant names.
tether scans the result for values (URLs, e-mail addresses, IBANs, dates...) and keeps their
keyed fingerprints with the source (:mod:`tether.service.provenance`); the answer says how many
values were recorded and whether the result was scanned whole, never a value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI
from pydantic import Field, StrictStr

from tether.api.models import ObservationOut, ResultIn
from tether.core.errors import ErrorCode, Unavailable
from tether.core.identity import Workload
from tether.core.scope import JSONValue
from tether.service.ports import ObservedRows
from tether.service.provenance import ProvenanceService, Recorded

if TYPE_CHECKING:
    from tether.api.app import ApiDeps


class ObserveIn(ResultIn):
    decision_id: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = Field(
        default=None,
        description="The allow of this tool call. A result counts as trusted only when the "
        "catalog marks its tool or dataset trusted and it names that allow.",
    )


def record_result(
    deps: ApiDeps, agent: Workload, body: ResultIn, decision_id: str | None
) -> Recorded:
    """Record what ``body``'s result put in ``agent``'s context (``POST /v1/observations``): a
    plain write, made off the event loop."""
    return _provenance(deps).observe_result(
        agent, body.grant, body.tool, body.dataset, body.result, decision_id
    )


def checked_result(
    deps: ApiDeps, agent: Workload, body: ResultIn, decision_id: str | None
) -> tuple[ObservedRows, Recorded]:
    """:func:`record_result`'s checks and fingerprints (raising what it raises), for the
    observation sent with an effect, written with it
    (:meth:`~tether.service.effects.EffectService.report`): the rows, and what they record."""
    return _provenance(deps).checked_result(
        agent, body.grant, body.tool, body.dataset, body.result, decision_id
    )


def _provenance(deps: ApiDeps) -> ProvenanceService:
    if deps.provenance is None:
        raise Unavailable(
            "argument provenance is not enabled on this server",
            code=ErrorCode.STORE_UNAVAILABLE,
        )
    return deps.provenance


def install_observation_routes(app: FastAPI, deps: ApiDeps, authenticated: Any) -> None:
    @app.post(
        "/v1/observations", status_code=201, response_model=ObservationOut, tags=["decisions"]
    )
    def observe(body: ObserveIn, agent: Workload = authenticated) -> dict[str, JSONValue]:
        return record_result(deps, agent, body, body.decision_id).to_json()
