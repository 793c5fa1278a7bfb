"""An agent's upstream session unused for its upstream's ``idle_timeout_seconds`` is closed (its
stdio process stops, its HTTP session ends); one in use, or used recently, is kept. The tests
move the gateway's clock; nothing here waits for the idle time to pass."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from mcp_harness import CRM_UPDATE, MAIL, UPSTREAM, Gw, connect, open_grant, run, text_of

from support import make_runtime
from tether.mcp import Caller, open_gateway, parse_config
from tether.mcp.config import DEFAULT_IDLE_TIMEOUT_SECONDS
from tether.service.clock import ManualClock

PID = {"ticket": "pid", "discount": 0}
#: Only turns a hang into a failure; nothing here waits on it when the gateway behaves.
HANG_GUARD_SECONDS = 60


async def gone(pid: int) -> bool:
    """Wait until process ``pid`` has exited (a condition, bounded by the caller's guard)."""
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        await anyio.sleep(0.01)


def test_an_idle_agent_session_is_closed_and_a_recently_used_one_kept(gw: Gw) -> None:
    idle = DEFAULT_IDLE_TIMEOUT_SECONDS  # gateway.yaml of the fixture sets none

    async def use(agent: str) -> tuple[int, str | None]:
        """The agent's crm process id and mail session id, from a call to each."""
        keys = gw.grant(agent, CRM_UPDATE, MAIL)  # a fresh grant: the clock moves on
        async with connect(gw.url, keys) as client:
            pid = await client.call_tool("crm.update", PID)
            assert not pid.is_error, text_of(pid)
            sent = await client.call_tool("email.send", {"to": "bob@example.com"})
            assert not sent.is_error, text_of(sent)
            return int(text_of(pid)), gw.mail.sessions[-1]

    async def scenario() -> None:
        with anyio.fail_after(HANG_GUARD_SECONDS):
            a_pid, a_session = await use("idle-a")
            b = await use("idle-b")
            gw.clock.advance(idle / 2)
            assert await use("idle-b") == b  # b used again: its sessions are kept
            gw.clock.advance(idle / 2)  # a: unused for the whole idle time; b: for half
            # b's requests look for idle sessions and close a's (a's process stops).
            assert await use("idle-b") == b
            assert await gone(a_pid)
            again_pid, again_session = await use("idle-a")
            assert again_pid != a_pid  # a new process for a
            assert again_session is not None and again_session != a_session  # a new session

    run(scenario)


def test_each_upstream_has_its_own_idle_timeout(tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    runtime = make_runtime(tmp_path / "data", clock)
    config = parse_config(
        {
            "upstreams": {
                "crm": {
                    "command": sys.executable,
                    "args": [UPSTREAM, "crm"],
                    "idle_timeout_seconds": 60,
                },
                "payments": {"command": sys.executable, "args": [UPSTREAM, "payments"]},
            },
            "tools": {
                "crm.update": {"action": "write", "dataset": "tickets"},
                "payments.transfer": {"action": "spend"},
            },
        }
    )
    assert config.upstreams[0].idle_timeout_seconds == 60
    pay = {"tool": "payments.transfer", "actions": ["spend"]}
    keys = open_grant(runtime, clock, "analyst", CRM_UPDATE, pay)
    analyst = Caller(runtime.verifier.verify(keys.svid, clock.now()), keys.grant)
    gateway = open_gateway(config, runtime)

    async def scenario() -> tuple[list[int], int, int]:
        with anyio.fail_after(HANG_GUARD_SECONDS):
            async with gateway.running():

                async def pid() -> int:
                    result: Any = await gateway.call_tool(analyst, "crm.update", PID)
                    assert not result.is_error, text_of(result)
                    return int(text_of(result))

                paid = await gateway.call_tool(analyst, "payments.transfer", {"amount": 5})
                assert not paid.is_error, text_of(paid)
                first = await pid()
                clock.advance(59)
                closed_early = gateway.close_idle_sessions()
                kept = await pid()
                clock.advance(60)
                closed = gateway.close_idle_sessions()  # crm's only: payments has 15 minutes
                await gone(first)
                return [first, kept, await pid()], closed_early, closed

    try:
        (first, kept, after), closed_early, closed = run(scenario)
    finally:
        runtime.close()
    assert closed_early == 0 and kept == first
    assert closed == 1 and after != first
