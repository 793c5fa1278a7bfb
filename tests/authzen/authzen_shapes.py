"""Shared shapes for the AuthZEN tests: the served PDP, subjects and tool resources."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from support import Agent
from tether.runtime import Runtime

CRM_READ = {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}
PAY = {"tool": "payments.transfer", "actions": ["spend"], "constraints": {"amount": {"max": 1000}}}
ANALYST = "spiffe://tether.local/agent/analyst"


@dataclass
class Pdp:
    """tether serving AuthZEN, and the analyst agent (its SVID, one open grant)."""

    runtime: Runtime
    client: httpx.Client
    analyst: Agent
    intruder: Agent

    def grant(self) -> str:
        response = self.analyst.open_task([CRM_READ, PAY], ttl_seconds=3600)
        assert response.status_code == 201, response.text
        return str(response.json()["grant"])

    def decisions(self) -> int:
        return sum(1 for r in self.runtime.store.audit_records() if r.kind.value == "decision")

    def evaluation(
        self, body: dict[str, object], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return self.client.post(
            "/access/v1/evaluation", json=body, headers={**self.analyst.headers, **(headers or {})}
        )

    def evaluations(
        self, body: dict[str, object], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return self.client.post(
            "/access/v1/evaluations",
            json=body,
            headers={**self.analyst.headers, **(headers or {})},
        )


def subject(grant: str | None = None, agent: str = ANALYST) -> dict[str, object]:
    out: dict[str, object] = {"type": "agent", "id": agent}
    if grant is not None:
        out["properties"] = {"grant": grant}
    return out


def tool(name: str, dataset: str | None = None, **args: object) -> dict[str, object]:
    properties: dict[str, object] = {"args": args}
    if dataset is not None:
        properties["dataset"] = dataset
    return {"type": "tool", "id": name, "properties": properties}
