"""Upstreams start on first use and together: the gateway answers before any upstream is up, one
that hangs at start holds up only what needs it, and a ``tools/list`` starts all of them at once.
(How long start-up takes is measured by ``bench/mcp_startup.py``, not here.)"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from shutil import copytree
from typing import Any

import anyio
import pytest
from mcp_harness import CRM_QUERY, PAY, UPSTREAM, open_grant, records, run, text_of

from support import make_runtime
from tether.core.audit import AuditKind
from tether.mcp import Caller, open_gateway, parse_config
from tether.runtime import Runtime, packaged_policies
from tether.service.clock import ManualClock

#: Only turns a hang into a failure; nothing here waits on it when the gateway behaves.
HANG_GUARD_SECONDS = 60
TOOLS = {
    "crm.query": {"action": "read", "dataset": "crm", "count_records": "structured.items"},
    "payments.transfer": {"action": "spend"},
}


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = make_runtime(tmp_path / "data", ManualClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC)))
    yield rt
    rt.close()


def caller(runtime: Runtime, *scopes: dict[str, object]) -> Caller:
    clock = runtime.clock
    assert isinstance(clock, ManualClock)
    keys = open_grant(runtime, clock, "analyst", *scopes)
    return Caller(runtime.verifier.verify(keys.svid, clock.now()), keys.grant)


def stdio(role: str, **extra: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": [UPSTREAM, role], **extra}


def test_an_upstream_hanging_at_start_does_not_hold_up_calls_to_the_others(
    runtime: Runtime,
) -> None:
    config = parse_config(
        {
            "upstreams": {
                "crm": stdio("crm"),
                "payments": stdio("hang", timeout_seconds=3600),  # never gives up on its own
            },
            "tools": TOOLS,
        }
    )
    gateway = open_gateway(config, runtime)
    analyst = caller(runtime, CRM_QUERY)

    async def scenario() -> tuple[Any, bool]:
        with anyio.fail_after(HANG_GUARD_SECONDS):
            async with gateway.running():
                listing_done = anyio.Event()

                async def list_everything() -> None:
                    await gateway.list_tools(analyst)  # starts both; waits on the stuck one
                    listing_done.set()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(list_everything)
                    result = await gateway.call_tool(analyst, "crm.query", {"customer": "c-7"})
                    still_listing = not listing_done.is_set()
                    tg.cancel_scope.cancel()
                return result, still_listing

    result, still_listing = run(scenario)
    assert not result.is_error, text_of(result)
    assert text_of(result) == "3 records for c-7"
    assert still_listing  # payments was starting all along, and held up only the listing
    (effect,) = records(runtime, AuditKind.EFFECT)
    assert effect.body["status"] == "ok"


def test_a_hanging_upstream_fails_as_unavailable_after_its_timeout(runtime: Runtime) -> None:
    config = parse_config(
        {
            "upstreams": {"payments": stdio("hang", timeout_seconds=2)},
            "tools": {"payments.transfer": {"action": "spend"}},
        }
    )
    gateway = open_gateway(config, runtime)
    payer = caller(runtime, PAY)

    async def scenario() -> Any:
        with anyio.fail_after(HANG_GUARD_SECONDS):
            async with gateway.running():
                return await gateway.call_tool(payer, "payments.transfer", {"amount": 5})

    result = run(scenario)
    assert result.is_error
    error = result.meta["tether/error"]
    assert error["code"] == "upstream_failed" and error["failure"] == "unavailable"
    assert "did not start within 2 s" in text_of(result)
    (failed,) = records(runtime, AuditKind.UPSTREAM_FAILED)
    assert failed.body["failure"] == "unavailable"
    assert [e.body["status"] for e in records(runtime, AuditKind.EFFECT)] == ["error"]


def test_an_upstream_that_hung_at_start_is_not_started_again_for_a_while(
    runtime: Runtime,
) -> None:
    from tether.mcp.upstreams import START_RETRY_SECONDS as retry_seconds

    config = parse_config(
        {
            "upstreams": {"payments": stdio("hang", timeout_seconds=2)},
            "tools": {"payments.transfer": {"action": "spend"}},
        }
    )
    gateway = open_gateway(config, runtime)
    payer = caller(runtime, PAY)
    clock = runtime.clock
    assert isinstance(clock, ManualClock)

    async def scenario() -> list[str]:
        answers = []
        with anyio.fail_after(HANG_GUARD_SECONDS):
            async with gateway.running():
                for advance in (0, 0, retry_seconds + 1):
                    clock.advance(advance)
                    result = await gateway.call_tool(payer, "payments.transfer", {"amount": 5})
                    assert result.is_error
                    answers.append(text_of(result))
        return answers

    first, second, later = run(scenario)
    assert "did not start within 2 s;" in first
    # Not started again: refused at once, saying when it will be tried again.
    assert "did not start within 2 s at the last attempt; the next attempt is after" in second
    assert "did not start within 2 s;" in later  # tried again once the clock moved on
    failures = [r.body["message"] for r in records(runtime, AuditKind.UPSTREAM_FAILED)]
    assert len(failures) == 3 and "the next attempt is after" in str(failures[1])
    assert [e.body["status"] for e in records(runtime, AuditKind.EFFECT)] == ["error"] * 3


def test_upstreams_are_started_together_and_only_when_first_used(tmp_path: Path) -> None:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    count = 4
    env = {"START_BARRIER_DIR": str(barrier), "START_BARRIER_COUNT": str(count)}
    names = [f"crm{n}" for n in range(count)]
    policies = tmp_path / "policies"
    copytree(packaged_policies(), policies)
    (policies / "startup.cedar").write_text(
        "".join(
            f'@id("read-{name}")\npermit (principal, action == Action::"read", '
            f'resource == Tool::"{name}.query");\n'
            for name in names
        )
    )
    clock = ManualClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    runtime = make_runtime(tmp_path / "data", clock, policy_dir=policies)
    try:
        _started_together(runtime, barrier, env, names)
    finally:
        runtime.close()


def _started_together(
    runtime: Runtime, barrier: Path, env: dict[str, str], names: list[str]
) -> None:
    count = len(names)
    config = parse_config(
        {
            # Each waits, before it initializes, until all four were started: one started
            # after another, the first would wait for the rest and never come up.
            "upstreams": {name: stdio("crm", env=env, timeout_seconds=120) for name in names},
            "tools": {f"{name}.query": {"action": "read", "dataset": "crm"} for name in names},
        }
    )
    gateway = open_gateway(config, runtime)
    scopes = [{"tool": f"{name}.query", "actions": ["read"], "datasets": ["crm"]} for name in names]
    analyst = caller(runtime, *scopes)

    async def scenario() -> tuple[list[str], list[Path]]:
        with anyio.fail_after(HANG_GUARD_SECONDS * 2):
            async with gateway.running():
                before = sorted(barrier.iterdir())  # the gateway is up; no upstream started
                listed = await gateway.list_tools(analyst)
                return [t.name for t in listed], before

    listed, before = run(scenario)
    assert before == []
    assert listed == [f"{name}.query" for name in names]
    assert len(list(barrier.glob("*.started"))) == count
    assert records(runtime, AuditKind.UPSTREAM_FAILED) == []
