"""A bounded schemathesis run over the served OpenAPI document, against a real server on loopback.

For every documented operation, cases generated from the document (valid and invalid inputs)
are sent without a token, with a valid SVID and with an approver token. So that cases get past
the id checks to the services behind them, a case may have its path ids and its ``grant``
swapped for real ones (an open task of the SVID's agent, a pending approval) or for well-formed
ids that name nothing. No answer may be a 5xx, and every status must be one the document lists
for that operation.

Reproducible: ``derandomize=True`` and no example database; each operation gets a task and an
approval of its own, so what one operation's cases do (closing a task, voting) does not change
another's answers. :data:`EXAMPLES` cases per operation keep the run near a minute on 2 cores.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from support import INTENT, live_server, make_runtime, mint
from tether.api.openapi import ERROR_STATUSES
from tether.core.ids import IdKind, encode_id
from tether.runtime import Runtime
from tether.service.clock import ManualClock

pytestmark = pytest.mark.slow

#: Cases per operation, shared by the three callers and by valid and invalid inputs.
EXAMPLES = 200

PAY = {"tool": "payments.transfer", "actions": ["spend"], "constraints": {"amount": {"max": 1000}}}
CRM = {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}
ANALYST = "spiffe://tether.local/agent/analyst"
NEEDS_APPROVAL = {
    "tool": "payments.transfer",
    "action": "spend",
    "args": {"amount": 500, "to": "c-1042"},
}


@dataclass(frozen=True)
class Server:
    url: str
    runtime: Runtime
    schema: Any
    callers: dict[str, dict[str, str]]
    session: requests.Session


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    clock = ManualClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    runtime = make_runtime(Path(tmp_path_factory.mktemp("fuzz")) / "data", clock)
    try:
        with live_server(runtime) as url, requests.Session() as session:
            callers = {
                "no token": {},
                "svid": {"Authorization": f"Bearer {mint(runtime, 'analyst', clock)}"},
                "approver": {"Authorization": f"Bearer {runtime.approvers.add('alice')}"},
            }
            schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
            yield Server(url, runtime, schema, callers, session)
    finally:
        runtime.close()


@pytest.fixture
def real(server: Server) -> dict[str, str]:
    """Ids that name something for the SVID's agent: an open task, its grant, an approval."""
    headers = server.callers["svid"]
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        opened = client.post("/v1/tasks", json={"intent": INTENT, "scopes": [CRM, PAY]})
        assert opened.status_code == 201, opened.text
        task = opened.json()
        verdict = client.post("/v1/authorize", json={"grant": task["grant"], **NEEDS_APPROVAL})
        assert verdict.json()["decision"] == "approval_required", verdict.text
    return {
        "task_id": task["task_id"],
        "grant": task["grant"],
        "approval_id": verdict.json()["approval_id"],
        "decision_id": verdict.json()["decision_id"],
    }


def _unknown(name: str) -> str:
    """A well-formed id that names nothing: it passes the shape check and reaches the service."""
    kinds = {
        "task_id": IdKind.TASK,
        "approval_id": IdKind.APPROVAL,
        "breakglass_id": IdKind.BREAKGLASS,
        "lease_id": IdKind.LEASE,
        "decision_id": IdKind.DECISION,
    }
    return encode_id(kinds.get(name, IdKind.TASK), bytes(16))


def _steer(case: Any, real: dict[str, str], choice: str) -> None:
    """Swap the case's path ids (and grant) for real or well-formed ones, or leave them."""
    if choice == "as generated":
        return
    for name in list(case.path_parameters or {}):
        known = real.get(name) if choice == "real" else None
        case.path_parameters[name] = known or _unknown(name)
    body = case.body
    if choice != "real" or not isinstance(body, dict):
        return
    for name in ("grant", "decision_id"):
        if name in body:
            body[name] = real[name]
    subject = body.get("subject")  # AuthZEN: the caller asking about itself, with its grant
    if isinstance(subject, dict):
        subject["id"] = ANALYST
        subject["properties"] = {"grant": real["grant"]}


@pytest.mark.parametrize(("method", "path"), sorted(ERROR_STATUSES))
def test_no_5xx_and_no_undocumented_status(
    server: Server, real: dict[str, str], method: str, path: str
) -> None:
    operation = server.schema[path][method]
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    # The token the operation takes is sent most often, so most cases reach the route itself.
    schemes = {name for need in operation.definition.raw.get("security", []) for name in need}
    takes = ["svid"] * ("svid" in schemes) + ["approver"] * ("approverToken" in schemes)
    callers = takes * 2 + sorted(server.callers)

    @given(
        case=cases,
        caller=st.sampled_from(callers),
        ids=st.sampled_from(["as generated", "real", "well-formed"]),
    )
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def answers_as_documented(case: Any, caller: str, ids: str) -> None:
        _steer(case, real, ids)
        headers = server.callers[caller]
        if headers:  # the caller's token, not one generated from the security scheme
            case.headers = {**(case.headers or {}), **headers}
        response = case.call(base_url=server.url, session=server.session)
        case.validate_response(
            response,
            checks=[not_a_server_error, status_code_conformance],
            headers=headers,
        )

    answers_as_documented()
