"""``@task.guard``: plain Python tools authorized before they run, their effects reported after,
``Denied`` and ``ApprovalRequired`` raised with what a caller needs, against a real server."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from sdk_support import INTENT, SCOPES, Approver, decisions, effects

from tether.runtime import Runtime
from tether_sdk import (
    ApprovalRejected,
    ApprovalRequired,
    ApprovalState,
    ApprovalTimeout,
    AsyncTetherClient,
    Denied,
    TetherClient,
)


def test_an_allowed_call_runs_and_its_effect_is_counted(
    sdk: TetherClient, runtime: Runtime
) -> None:
    ran: list[tuple[str, int]] = []
    with sdk.task(INTENT, SCOPES) as task:

        @task.guard(
            tool="crm.update",
            action="write",
            dataset="tickets",
            records=len,
            bytes=lambda rows: sum(len(r) for r in rows),
        )
        def update(ticket: str, discount: int = 0) -> list[str]:
            ran.append((ticket, discount))
            return ["row-1", "row-2"]

        assert update("T-1", 5) == ["row-1", "row-2"]
        assert update.__name__ == "update"  # functools.wraps
    assert ran == [("T-1", 5)]
    [effect] = effects(runtime)
    assert (effect["status"], effect["records"], effect["bytes"]) == ("ok", 2, 10)


def test_positional_arguments_and_defaults_are_sent_by_name(
    sdk: TetherClient, runtime: Runtime
) -> None:
    with sdk.task(INTENT, SCOPES) as task:

        @task.guard(tool="crm.update", action="write", dataset="tickets", exclude=["db"])
        def update(db: object, ticket: str, discount: int = 50, **extra: Any) -> str:
            return ticket

        # discount defaults to 50, above the scope's max of 10: the default is checked too
        with pytest.raises(Denied) as denied:
            update(object(), "T-2")
        assert denied.value.codes == ("constraint_violated",)
        assert update(object(), "T-2", 3, note="vip") == "T-2"
    [sent] = [d for d in runtime.store.audit_records() if d.kind.value == "decision"][-1:]
    assert set(sent.body["call"]["args"]) == {"ticket", "discount", "note"}


def test_a_denied_call_does_not_run(sdk: TetherClient, runtime: Runtime) -> None:
    ran = []
    with sdk.task(INTENT, SCOPES) as task:

        @task.guard(tool="crm.update", action="write", dataset="tickets")
        def update(ticket: str, discount: int) -> None:
            ran.append(ticket)

        with pytest.raises(Denied) as error:
            update(ticket="T-3", discount=50)
    assert ran == []
    assert error.value.decision_id.startswith("dec_")
    assert error.value.reasons[0].code == "constraint_violated"
    assert "constraint_violated" in str(error.value)
    assert effects(runtime) == []


def test_a_tool_that_raises_is_reported_as_an_error(sdk: TetherClient, runtime: Runtime) -> None:
    with sdk.task(INTENT, SCOPES) as task:

        @task.guard(tool="crm.update", action="write", dataset="tickets", records=len)
        def update(ticket: str, discount: int) -> list[str]:
            raise ValueError("crm is down")

        with pytest.raises(ValueError, match="crm is down"):
            update("T-4", 1)
    [effect] = effects(runtime)
    assert (effect["status"], effect["records"]) == ("error", None)


def test_arguments_must_be_json(sdk: TetherClient) -> None:
    with sdk.task(INTENT, SCOPES) as task:

        @task.guard(tool="crm.update", action="write", dataset="tickets")
        def update(ticket: object) -> None:
            raise AssertionError("must not run")

        with pytest.raises(TypeError, match="exclude"):
            update(object())


def test_an_approval_is_waited_for_then_the_call_runs_once(
    sdk: TetherClient, approver: Approver, runtime: Runtime
) -> None:
    sent: list[int] = []
    with sdk.task(INTENT, SCOPES) as task:

        @task.guard(tool="payments.transfer", action="spend", recipients="to")
        def transfer(amount: int, to: str) -> str:
            sent.append(amount)
            return "ok"

        with pytest.raises(ApprovalRequired) as asked:
            transfer(500, "acct-9")
        pending = asked.value
        assert pending.approval_id.startswith("apr_") and sent == []
        assert task.approval_status(pending.approval_id).state is ApprovalState.PENDING

        # a human approves a moment later, while the agent waits
        timer = threading.Timer(0.2, approver.decide, args=(pending.approval_id,))
        timer.start()
        status = pending.wait(timeout=10, poll_interval=0.05)
        timer.join()
        assert status.state is ApprovalState.APPROVED

        assert pending.retry() == "ok"
        assert sent == [500]
        with pytest.raises(Denied) as again:
            pending.retry()
        assert again.value.codes[0] == "approval_used"
    assert [d["decision"] for d in decisions(runtime)] == [
        "approval_required",
        "allow",
        "deny",
    ]
    assert effects(runtime)[0]["recipient_count"] == 1


def test_a_denied_or_undecided_approval_ends_the_wait(
    sdk: TetherClient, approver: Approver
) -> None:
    with sdk.task(INTENT, SCOPES) as task:

        @task.guard(tool="payments.transfer", action="spend")
        def transfer(amount: int) -> None:
            raise AssertionError("must not run")

        with pytest.raises(ApprovalRequired) as first:
            transfer(300)
        with pytest.raises(ApprovalTimeout) as waited:
            first.value.wait(timeout=0)
        assert waited.value.status.state is ApprovalState.PENDING
        assert isinstance(waited.value, TimeoutError)

        approver.decide(first.value.approval_id, approve=False)
        with pytest.raises(ApprovalRejected) as rejected:
            first.value.wait(timeout=1, poll_interval=0.01)
        assert rejected.value.status.state is ApprovalState.DENIED
        with pytest.raises(TypeError, match=r"error\.wait\(\)"):
            asyncio.run(first.value.wait_async())


def test_require_raises_for_a_verdict_that_is_not_an_allow(
    sdk: TetherClient, approver: Approver
) -> None:
    with sdk.task(INTENT, SCOPES) as task:
        assert task.require("payments.transfer", "spend", args={"amount": 50}).allowed
        with pytest.raises(ApprovalRequired) as asked:
            task.require("payments.transfer", "spend", args={"amount": 200})
        approver.decide(asked.value.approval_id)
        asked.value.wait(timeout=1, poll_interval=0.01)
        assert asked.value.retry().codes == ("approval_granted",)


def test_async_tools_under_the_async_client(
    base_url: str, svid: str, approver: Approver, runtime: Runtime
) -> None:
    sent: list[int] = []

    async def main() -> None:
        async with (
            AsyncTetherClient(base_url, svid=svid) as client,
            client.task(INTENT, SCOPES) as task,
        ):

            @task.guard(tool="payments.transfer", action="spend")
            async def transfer(amount: int) -> int:
                await asyncio.sleep(0)
                sent.append(amount)
                return amount

            @task.guard(tool="crm.update", action="write", dataset="tickets")
            def update(ticket: str, discount: int) -> str:  # a sync tool becomes a coroutine
                return ticket

            assert await transfer(40) == 40
            assert await update("T-5", 1) == "T-5"
            with pytest.raises(ApprovalRequired) as asked:
                await transfer(700)
            approver.decide(asked.value.approval_id)
            await asked.value.wait_async(timeout=5, poll_interval=0.01)
            assert await asked.value.retry_async() == 700
            with pytest.raises(TypeError, match=r"wait\(\)|wait_async"):
                asked.value.wait()

    asyncio.run(main())
    assert sent == [40, 700]
    assert [e["status"] for e in effects(runtime)] == ["ok", "ok", "ok"]


def test_an_async_tool_under_the_sync_client(sdk: TetherClient, approver: Approver) -> None:
    with sdk.task(INTENT, SCOPES) as task:

        @task.guard(tool="payments.transfer", action="spend")
        async def transfer(amount: int) -> int:
            return amount

        async def main() -> int:
            assert await transfer(10) == 10
            with pytest.raises(ApprovalRequired) as asked:
                await transfer(150)
            approver.decide(asked.value.approval_id)
            await asked.value.wait_async(timeout=5, poll_interval=0.01)
            result: int = await asked.value.retry_async()
            return result

        assert asyncio.run(main()) == 150
