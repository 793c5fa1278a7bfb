"""``POST /v1/observations``: an agent reports what a tool's result put in its context.

Authenticated like ``/v1/effects`` (the agent's SVID) and bound to the task its grant names.
tether scans the result for values (URLs, e-mail addresses, IBANs, dates...) and keeps their
keyed fingerprints with the source (:mod:`tether.service.provenance`); the answer says how many
values were recorded and whether the result was scanned whole, never a value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from tether.core.errors import ErrorCode, Unavailable
from tether.core.identity import Workload
from tether.core.scope import JSONValue

if TYPE_CHECKING:
    from tether.api.app import ApiDeps


class ObserveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grant: Annotated[StrictStr, Field(min_length=1, max_length=8192)]
    tool: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    dataset: Annotated[StrictStr, Field(min_length=1, max_length=128)] | None = None
    decision_id: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = Field(
        default=None,
        description="The allow of this tool call. A result counts as trusted only when the "
        "catalog marks its tool or dataset trusted and it names that allow.",
    )
    result: Any = Field(
        description="The tool's result as the agent received it (text or any JSON). Scanned up "
        "to a configured size; the rest counts as untrusted."
    )


class SourceOut(BaseModel):
    tool: str
    dataset: str | None
    trust: str = Field(description="trusted or untrusted")


class ObservationOut(BaseModel):
    task_id: str
    source: SourceOut
    values: int = Field(description="How many distinct values were recorded (as fingerprints).")
    complete: bool = Field(description="False when part of the result was too large to scan.")
    trusted_parts: int = Field(
        default=0,
        description="Items of the result a trusted author wrote (the catalog's tool 'parts'), "
        "recorded as a trusted source; the rest of the result is the untrusted source above.",
    )


def install_observation_routes(app: FastAPI, deps: ApiDeps, authenticated: Any) -> None:
    @app.post(
        "/v1/observations", status_code=201, response_model=ObservationOut, tags=["decisions"]
    )
    def observe(body: ObserveIn, agent: Workload = authenticated) -> dict[str, JSONValue]:
        if deps.provenance is None:
            raise Unavailable(
                "argument provenance is not enabled on this server",
                code=ErrorCode.STORE_UNAVAILABLE,
            )
        recorded = deps.provenance.observe_result(
            agent, body.grant, body.tool, body.dataset, body.result, body.decision_id
        )
        return recorded.to_json()
