"""``GET /metrics`` on a real server with a real SQLite store: what each metric counts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ops_support import (
    CRM_READ,
    PAY,
    READ_CRM,
    observed_runtime,
    observed_server,
    open_task,
    scrape,
    svid_for,
    value,
)

from tether.observability import Metrics, Observability
from tether.runtime import Runtime
from tether.service.clock import ManualClock


@pytest.fixture
def runtime(tmp_path: Path, clock: ManualClock) -> Iterator[Runtime]:
    rt = observed_runtime(tmp_path / "data", clock)
    yield rt
    rt.close()


@pytest.fixture
def base_url(runtime: Runtime) -> Iterator[str]:
    with observed_server(runtime) as url:
        yield url


@pytest.fixture
def svid(runtime: Runtime, clock: ManualClock) -> str:
    return svid_for(runtime.config.data_dir, "analyst", clock.now())


def authorize(base_url: str, svid: str, grant: object, **call: object) -> dict[str, object]:
    response = httpx.post(
        f"{base_url}/v1/authorize",
        json={"grant": grant, **call},
        headers={"Authorization": f"Bearer {svid}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    verdict: dict[str, object] = response.json()
    return verdict


def test_decisions_are_counted_by_decision_tool_and_first_reason(base_url: str, svid: str) -> None:
    grant = open_task(base_url, svid, CRM_READ, PAY)["grant"]
    for _ in range(2):
        authorize(base_url, svid, grant, **READ_CRM)
    authorize(base_url, svid, grant, tool="crm.query", action="read", dataset="payroll")
    asked = authorize(
        base_url, svid, grant, tool="payments.transfer", action="spend", args={"amount": 500}
    )
    assert asked["decision"] == "approval_required"

    samples = scrape(base_url)
    counted = "tether_decisions_total"
    assert value(samples, counted, decision="allow", tool="crm.query", reason="") == 2
    assert (
        value(samples, counted, decision="deny", tool="crm.query", reason="dataset_not_in_scope")
        == 1
    )
    assert (
        value(
            samples,
            counted,
            decision="approval_required",
            tool="payments.transfer",
            reason="approval_required",
        )
        == 1
    )
    assert sum(v for (name, _), v in samples.items() if name == counted) == 4


def test_authorize_requests_and_decision_writes_are_timed(base_url: str, svid: str) -> None:
    grant = open_task(base_url, svid)["grant"]
    for _ in range(3):
        authorize(base_url, svid, grant, **READ_CRM)
    unauthenticated = httpx.post(f"{base_url}/v1/authorize", json={"grant": grant, **READ_CRM})
    assert unauthenticated.status_code == 401

    samples = scrape(base_url)
    # Every authorize request is handled and timed, the refused one too ...
    assert value(samples, "tether_authorize_seconds_count") == 4
    assert value(samples, "tether_authorize_seconds_bucket", le="+Inf") == 4
    # ... and each decided one wrote one decision with its audit record.
    assert value(samples, "tether_audit_append_seconds_count") == 3


def test_gauges_are_read_from_the_store_at_scrape_time(base_url: str, svid: str) -> None:
    assert value(scrape(base_url), "tether_tasks_open") == 0
    first = open_task(
        base_url,
        svid,
        CRM_READ,
        PAY,
        budgets={"records": 1000, "by_classification": {"confidential": {"records": 500}}},
    )
    second = open_task(base_url, svid)
    # Reserves 170 records (above the read floor) against both limits: all data, and
    # confidential data (crm).
    authorize(base_url, svid, first["grant"], **READ_CRM, expect={"records": 170})
    authorize(
        base_url,
        svid,
        first["grant"],
        tool="payments.transfer",
        action="spend",
        args={"amount": 500},
    )

    samples = scrape(base_url)
    assert value(samples, "tether_store_up") == 1
    assert value(samples, "tether_tasks_open") == 2
    assert value(samples, "tether_approvals_pending") == 1
    assert value(samples, "tether_budget_used", kind="records", classification="any") == 170
    assert (
        value(samples, "tether_budget_used", kind="records", classification="confidential") == 170
    )

    closed = httpx.post(
        f"{base_url}/v1/tasks/{second['task_id']}/close",
        headers={"Authorization": f"Bearer {svid}"},
    )
    assert closed.status_code == 200, closed.text
    assert value(scrape(base_url), "tether_tasks_open") == 1


def test_a_store_that_cannot_be_read_is_reported_not_guessed(
    runtime: Runtime, base_url: str, svid: str
) -> None:
    open_task(base_url, svid)
    runtime.store.close()

    samples = scrape(base_url)
    assert value(samples, "tether_store_up") == 0
    assert value(samples, "tether_tasks_open") is None
    assert value(samples, "tether_approvals_pending") is None


def test_tool_label_values_are_capped(tmp_path: Path, clock: ManualClock) -> None:
    observability = Observability(metrics=Metrics(tool_cap=2))
    runtime = observed_runtime(tmp_path / "data", clock, observability)
    try:
        svid = svid_for(runtime.config.data_dir, "analyst", clock.now())
        with observed_server(runtime) as base_url:
            grant = open_task(base_url, svid)["grant"]
            for tool in ("crm.query", "crm.export", "crm.purge", "crm.merge", "crm.query"):
                authorize(base_url, svid, grant, tool=tool, action="read", dataset="crm")
            samples = scrape(base_url)
    finally:
        runtime.close()
    tools = {
        dict(labels)["tool"]: count
        for (name, labels), count in samples.items()
        if name == "tether_decisions_total"
    }
    assert tools == {"crm.query": 2, "crm.export": 1, "_other": 2}


def test_metrics_need_no_credentials_and_show_no_secrets(base_url: str, svid: str) -> None:
    opened = open_task(base_url, svid)
    verdict = authorize(base_url, svid, opened["grant"], **READ_CRM)

    response = httpx.get(f"{base_url}/metrics")  # no Authorization header
    assert response.status_code == 200
    for secret in (svid, str(opened["grant"])):
        assert secret not in response.text
    # Nor ids that would make a series per agent, task or decision.
    for word in ("spiffe://", str(opened["task_id"]), str(verdict["decision_id"])):
        assert word not in response.text


def test_metrics_can_be_turned_off(tmp_path: Path, clock: ManualClock) -> None:
    runtime = observed_runtime(tmp_path / "data", clock, metrics=False)
    try:
        with observed_server(runtime) as base_url:
            assert httpx.get(f"{base_url}/healthz").status_code == 200
            assert httpx.get(f"{base_url}/metrics").status_code == 404
    finally:
        runtime.close()
