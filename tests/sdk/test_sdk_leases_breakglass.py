"""The SDK's lease and break-glass methods against a real server: an agent lists its task's
leases, ends one, a downstream API introspects the token, and an agent asks for break-glass that
humans then approve."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sdk_support import INTENT, PAYMENTS

from support import mint
from tether.runtime import Runtime
from tether.service.clock import ManualClock
from tether_sdk import (
    AsyncTetherClient,
    BreakGlass,
    Lease,
    NotFound,
    Retry,
    TetherClient,
    Unauthenticated,
)

AUDIENCE = "https://payments.example"  # the example policies' payments-api issuer
PURGE = {"tool": "crm.purge", "actions": ["delete"], "datasets": ["crm"]}


def test_an_agent_lists_and_ends_its_leases_and_an_api_introspects_them(
    sdk: TetherClient, base_url: str, runtime: Runtime, clock: ManualClock
) -> None:
    with sdk.task(intent=INTENT, scopes=[PAYMENTS]) as task:
        verdict = task.require("payments.transfer", "spend", args={"amount": 50})
        assert verdict.credential is not None
        token, lease_id = verdict.credential.value, verdict.credential.lease_id

        (lease,) = task.leases()
        assert isinstance(lease, Lease)
        assert (lease.lease_id, lease.task_id, lease.state) == (lease_id, task.task_id, "active")
        assert lease.scope["tool"] == "payments.transfer"

        api = TetherClient(base_url, svid=mint(runtime, "payments-api", clock))
        with api:
            live = api.introspect_lease(token, AUDIENCE)
            assert live.active and live.lease_id == lease_id
            assert live.scope == "payments.transfer:spend"
            assert not api.introspect_lease(token, "https://elsewhere.example").active

            ended = sdk.revoke_lease(lease_id)
            assert ended.state == "revoked" and ended.ended_at is not None
            assert not api.introspect_lease(token, AUDIENCE).active
        assert [each.state for each in task.leases()] == ["revoked"]


def test_another_agents_lease_is_not_found(
    sdk: TetherClient, base_url: str, runtime: Runtime, clock: ManualClock
) -> None:
    with sdk.task(intent=INTENT, scopes=[PAYMENTS]) as task:
        verdict = task.require("payments.transfer", "spend", args={"amount": 20})
        assert verdict.credential is not None
        with TetherClient(base_url, svid=mint(runtime, "intruder", clock)) as intruder:
            with pytest.raises(NotFound) as stolen:
                intruder.revoke_lease(verdict.credential.lease_id)
            assert stolen.value.code == "lease_not_found" and stolen.value.status == 404
            with pytest.raises(NotFound) as listed:
                intruder.task_leases(task.task_id)
            assert listed.value.code == "task_not_found"


def _approve(base_url: str, runtime: Runtime, breakglass_id: str, *names: str) -> dict[str, Any]:
    answer: dict[str, Any] = {}
    for name in names:
        response = httpx.post(
            f"{base_url}/v1/breakglass/{breakglass_id}/approve",
            json={"reason": "incident INC-7"},
            headers={"Authorization": f"Bearer {runtime.approvers.add(name)}"},
        )
        assert response.status_code == 200, response.text
        answer = response.json()
    return answer


def test_an_agent_asks_for_break_glass_and_uses_it_once_humans_approve(
    sdk: TetherClient, base_url: str, runtime: Runtime
) -> None:
    with sdk.task(intent=INTENT, scopes=[PAYMENTS]) as task:
        purge = {"tool": "crm.purge", "action": "delete", "dataset": "crm", "args": {}}
        before = task.authorize(**purge)
        assert before.decision == "deny"

        asked = task.request_breakglass([PURGE], "purge a poisoned record", window_seconds=600)
        assert isinstance(asked, BreakGlass)
        assert (asked.state, asked.task_id, asked.approvals) == ("pending", task.task_id, 0)
        assert asked.agent.endswith("/analyst") and asked.requested_by == asked.agent
        assert asked.scopes[0]["tool"] == "crm.purge" and asked.required >= 2
        assert asked.needs_review is False and asked.active_until is None

        state = _approve(base_url, runtime, asked.breakglass_id, "security", "ops-lead")
        assert state["state"] == "active"
        after = task.authorize(**purge)
        assert after.decision == "allow" and "break_glass" in after.codes


def test_break_glass_on_an_unknown_task_is_not_found(sdk: TetherClient) -> None:
    with pytest.raises(NotFound) as missing:
        sdk.request_breakglass("tsk_" + "0" * 26, [PURGE], "why")
    assert missing.value.status == 404


def test_the_async_client_has_the_same_methods(
    base_url: str, runtime: Runtime, clock: ManualClock
) -> None:
    async def run() -> None:
        svid = mint(runtime, "analyst", clock)
        client = AsyncTetherClient(base_url, svid=svid, retry=Retry(attempts=1))
        async with client, client.task(intent=INTENT, scopes=[PAYMENTS]) as task:
            verdict = await task.require("payments.transfer", "spend", args={"amount": 5})
            assert verdict.credential is not None
            (lease,) = await task.leases()
            live = await client.introspect_lease(verdict.credential.value, AUDIENCE)
            assert live.active and live.lease_id == lease.lease_id
            assert (await client.revoke_lease(lease.lease_id)).state == "revoked"
            asked = await task.request_breakglass([PURGE], "purge now")
            assert asked.state == "pending"
        async with AsyncTetherClient(base_url, svid="not-a-token") as stranger:
            with pytest.raises(Unauthenticated):
                await stranger.task_leases("tsk_" + "0" * 26)

    asyncio.run(run())
