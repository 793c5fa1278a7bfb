"""The sync and async clients against a real tether server on loopback: every v1 agent route,
typed answers, typed errors keyed by the server's codes, tasks that always close, and retries
that never repeat a call the server may have seen."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sdk_support import INTENT, SCOPES, TICKETS, Flaky, audit, closed_port

from support import mint
from tether.runtime import Runtime
from tether.service.clock import ManualClock
from tether_sdk import (
    AsyncTetherClient,
    Conflict,
    Decision,
    EffectStatus,
    Forbidden,
    Intent,
    InvalidRequest,
    NotFound,
    Retry,
    Scope,
    TetherClient,
    Unauthenticated,
    Unavailable,
)


def test_a_task_from_open_to_close(sdk: TetherClient, runtime: Runtime) -> None:
    task = sdk.open_task(
        Intent(**INTENT),
        [Scope("crm.update", ("write",), ("tickets",), {"discount": {"max": 10}})],
        ttl_seconds=300,
    )
    assert task.task_id.startswith("tsk_")
    assert task.granted[0].constraints == {"discount": {"max": 10}}
    assert task.refused == ()

    allowed = sdk.authorize(task.grant, "crm.update", "write", "tickets", {"discount": 5})
    assert allowed.decision is Decision.ALLOW and allowed.allowed
    assert allowed.codes == ("policy_permits",)
    assert allowed.policy_ids == ("agents-update-crm",)
    assert "ASI02" in allowed.risks

    effect = sdk.report_effect(allowed.decision_id, records=1, bytes=40, recipients=["a@x.io"])
    assert (effect.status, effect.records, effect.bytes, effect.recipient_count) == (
        EffectStatus.OK,
        1,
        40,
        1,
    )

    denied = sdk.authorize(task.grant, "crm.update", "write", "tickets", {"discount": 50})
    assert denied.decision is Decision.DENY
    assert denied.codes == ("constraint_violated",)
    assert "discount" in denied.reasons[0].message

    closed = sdk.close_task(task.task_id)
    assert closed.state == "closed" and closed.ended_at is not None
    after = sdk.authorize(task.grant, "crm.update", "write", "tickets", {"discount": 5})
    assert after.decision is Decision.DENY
    assert len(audit(runtime, "task_closed")) == 1


def test_errors_carry_the_servers_code_and_status(
    sdk: TetherClient, base_url: str, runtime: Runtime
) -> None:
    task = sdk.open_task(INTENT, [TICKETS])
    verdict = sdk.authorize(task.grant, "crm.update", "write", "tickets", {"discount": 1})
    sdk.report_effect(verdict.decision_id)

    with pytest.raises(Conflict) as twice:
        sdk.report_effect(verdict.decision_id)
    assert (twice.value.code, twice.value.status) == ("effect_already_reported", 409)

    with pytest.raises(NotFound) as unknown:
        sdk.report_effect("dec_" + "0" * 26)
    assert unknown.value.code == "decision_not_found"

    with pytest.raises(InvalidRequest) as bad_scope:
        sdk.open_task(INTENT, [{"tool": "crm.update", "actions": ["write"], "nope": 1}])
    assert bad_scope.value.status == 400

    with pytest.raises(Forbidden) as nothing:
        sdk.open_task(INTENT, [{"tool": "crm.purge", "actions": ["delete"]}])
    assert nothing.value.code == "nothing_granted"

    sdk.close_task(task.task_id)
    with pytest.raises(Conflict) as closed:
        sdk.close_task(task.task_id)
    assert closed.value.code == "task_not_open"

    with (
        TetherClient(base_url, svid="not-a-token") as stranger,
        pytest.raises(Unauthenticated) as who,
    ):
        stranger.open_task(INTENT, [TICKETS])
    assert (who.value.code, who.value.status) == ("invalid_token", 401)
    assert "not-a-token" not in str(who.value)


def test_delegation_gives_the_child_a_narrower_grant(
    sdk: TetherClient, base_url: str, runtime: Runtime, clock: ManualClock
) -> None:
    with sdk.task(INTENT, SCOPES) as task:
        narrower = [{**TICKETS, "constraints": {"discount": {"max": 5}}}]
        child = task.delegate("spiffe://tether.local/agent/helper", narrower, ttl_seconds=60)
        assert child.delegation is not None and child.delegation.depth == 1
        with TetherClient(base_url, svid=mint(runtime, "helper", clock)) as helper:
            ok = helper.authorize(child.grant, "crm.update", "write", "tickets", {"discount": 5})
            no = helper.authorize(child.grant, "crm.update", "write", "tickets", {"discount": 8})
        assert (ok.decision, no.decision) == (Decision.ALLOW, Decision.DENY)
        with pytest.raises(Forbidden) as wider:
            task.delegate(
                "spiffe://tether.local/agent/helper", [{**TICKETS, "actions": ["delete"]}]
            )
        assert wider.value.code == "delegation_widens"


def test_health_routes_need_no_svid(base_url: str) -> None:
    with TetherClient(base_url, svid=lambda: "unused") as client:
        assert client.healthz().status == "ok"
        ready = client.readyz()
        assert ready.status == "ready" and ready.policy_revision


def test_the_task_block_closes_the_task_even_when_it_raises(
    sdk: TetherClient, runtime: Runtime
) -> None:
    with pytest.raises(RuntimeError, match="tool blew up"), sdk.task(INTENT, [TICKETS]) as task:
        assert task.authorize("crm.update", "write", "tickets", {"discount": 1}).allowed
        raise RuntimeError("tool blew up")
    assert audit(runtime, "task_closed")[-1]["state"] == "closed"
    late = sdk.authorize(task.grant, "crm.update", "write", "tickets", {"discount": 1})
    assert late.decision is Decision.DENY


def test_a_task_closed_inside_the_block_is_left_alone(sdk: TetherClient) -> None:
    with sdk.task(INTENT, [TICKETS]) as task:
        sdk.close_task(task.task_id)
    assert "closed" in repr(task)


def test_the_async_client_speaks_the_same_api(base_url: str, svid: str, runtime: Runtime) -> None:
    async def main() -> None:
        async with AsyncTetherClient(base_url, svid=svid) as client:
            assert (await client.healthz()).status == "ok"
            async with client.task(INTENT, SCOPES, ttl_seconds=120) as task:
                verdict = await task.authorize("crm.update", "write", "tickets", {"discount": 2})
                assert verdict.allowed
                effect = await task.report_effect(verdict.decision_id, records=3)
                assert effect.records == 3
                child = await task.delegate("spiffe://tether.local/agent/helper", [TICKETS])
                assert child.delegation is not None
                with pytest.raises(Conflict):
                    await task.report_effect(verdict.decision_id)
            with pytest.raises(NotFound):
                await client.approval_status("apr_" + "0" * 26)

    asyncio.run(main())
    assert len(audit(runtime, "task_closed")) == 1


# -- retries ---------------------------------------------------------------------------------


@pytest.fixture
def flaky() -> Iterator[Flaky]:
    server = Flaky()
    yield server
    server.close()


def _sleeps() -> tuple[list[float], Retry]:
    return [], Retry(attempts=3, backoff=0.1, max_backoff=0.15)


def test_a_post_the_server_may_have_seen_is_never_repeated(flaky: Flaky) -> None:
    slept, retry = _sleeps()
    with TetherClient(flaky.url, svid="s", retry=retry, sleep=slept.append) as client:
        with pytest.raises(Unavailable) as error:
            client.authorize("grant", "crm.update", "write", args={"discount": 1})
        with pytest.raises(Unavailable):
            client.report_effect("dec_x")
        with pytest.raises(Unavailable):
            client.open_task(INTENT, [TICKETS])
    assert flaky.seen == ["POST", "POST", "POST"]
    assert slept == []
    assert error.value.code == "unreachable" and error.value.status is None


def test_a_get_is_retried_with_backoff(flaky: Flaky) -> None:
    slept, retry = _sleeps()
    with (
        TetherClient(flaky.url, svid="s", retry=retry, sleep=slept.append) as client,
        pytest.raises(Unavailable),
    ):
        client.approval_status("apr_x")
    assert flaky.seen == ["GET", "GET", "GET"]
    assert slept == [0.1, 0.15]


def test_a_get_is_retried_after_a_503_then_succeeds() -> None:
    server = Flaky(answers=[503, 200])
    slept, retry = _sleeps()
    try:
        with TetherClient(server.url, svid="s", retry=retry, sleep=slept.append) as client:
            assert client.healthz().status == "ok"
    finally:
        server.close()
    assert server.seen == ["GET", "GET"] and slept == [0.1]


def test_readyz_reports_503_without_retrying() -> None:
    server = Flaky(answers=[503])
    slept, retry = _sleeps()
    try:
        with (
            TetherClient(server.url, svid="s", retry=retry, sleep=slept.append) as client,
            pytest.raises(Unavailable) as error,
        ):
            client.readyz()
    finally:
        server.close()
    assert (error.value.code, error.value.status) == ("store_unavailable", 503)
    assert server.seen == ["GET"] and slept == []


def test_any_call_is_retried_when_it_could_not_connect() -> None:
    slept, retry = _sleeps()
    with (
        TetherClient(closed_port(), svid="s", retry=retry, sleep=slept.append) as client,
        pytest.raises(Unavailable, match="tried 3 times"),
    ):
        client.authorize("grant", "crm.update", "write")
    assert slept == [0.1, 0.15]

    async def main() -> list[float]:
        waited: list[float] = []

        async def sleep(seconds: float) -> None:
            waited.append(seconds)

        async with AsyncTetherClient(closed_port(), svid="s", retry=retry, sleep=sleep) as ac:
            with pytest.raises(Unavailable):
                await ac.open_task(INTENT, [TICKETS])
        return waited

    assert asyncio.run(main()) == [0.1, 0.15]
