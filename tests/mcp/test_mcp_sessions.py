"""Per-agent upstream sessions: what one agent's session holds upstream is never another's; an
upstream opts into one shared session with ``share_sessions: true``."""

from __future__ import annotations

import sys
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from mcp_harness import CRM_UPDATE, MAIL, UPSTREAM, Gw, connect, open_grant, run, text_of

from support import make_runtime
from tether.mcp import Caller, open_gateway, parse_config
from tether.service.clock import ManualClock

PID = {"ticket": "pid", "discount": 0}


def test_each_agent_gets_its_own_stdio_process_and_http_session(gw: Gw) -> None:
    agents = [gw.grant(name, CRM_UPDATE, MAIL) for name in ("agent-a", "agent-b")]

    async def scenario() -> list[tuple[str, str | None]]:
        seen = []
        for keys in [*agents, agents[0]]:  # agent-a again, on a new connection to the gateway
            async with connect(gw.url, keys) as client:
                pid = await client.call_tool("crm.update", PID)
                assert not pid.is_error, text_of(pid)
                sent = await client.call_tool("email.send", {"to": "bob@example.com"})
                assert not sent.is_error, text_of(sent)
                seen.append((text_of(pid), gw.mail.sessions[-1]))
        return seen

    (a_pid, a_session), (b_pid, b_session), (a_again_pid, a_again_session) = run(scenario)
    assert a_pid != b_pid  # two processes: nothing one holds is the other's
    assert a_session is not None and b_session is not None and a_session != b_session
    assert (a_again_pid, a_again_session) == (a_pid, a_session)  # the agent's own, kept


def test_an_upstream_may_opt_into_one_session_shared_by_every_agent(tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    runtime = make_runtime(tmp_path / "data", clock)
    config = parse_config(
        {
            "upstreams": {
                "crm": {"command": sys.executable, "args": [UPSTREAM, "crm"]},
            },
            "tools": {"crm.update": {"action": "write", "dataset": "tickets"}},
        }
    )
    shared = parse_config(
        {
            "upstreams": {
                "crm": {
                    "command": sys.executable,
                    "args": [UPSTREAM, "crm"],
                    "share_sessions": True,
                }
            },
            "tools": {"crm.update": {"action": "write", "dataset": "tickets"}},
        }
    )
    callers = [
        Caller(runtime.verifier.verify(k.svid, clock.now()), k.grant)
        for k in (open_grant(runtime, clock, name, CRM_UPDATE) for name in ("a", "b"))
    ]

    async def pids(config: object) -> list[str]:
        gateway = open_gateway(config, runtime)  # type: ignore[arg-type]
        async with gateway.running():
            out = []
            for caller in callers:
                result = await gateway.call_tool(caller, "crm.update", PID)
                assert not result.is_error, text_of(result)
                out.append(text_of(result))
            return out

    try:
        a, b = run(lambda: pids(config))
        assert a != b
        a, b = run(lambda: pids(shared))
        assert a == b
    finally:
        runtime.close()


def test_an_upstream_log_message_reaches_only_the_agent_whose_session_sent_it(gw: Gw) -> None:
    agents = {name: gw.grant(name, CRM_UPDATE) for name in ("logger-a", "logger-b")}
    heard: dict[str, list[str]] = {name: [] for name in agents}

    async def scenario() -> dict[str, str]:
        pids = {}
        async with AsyncExitStack() as stack:
            clients = {}
            for name, keys in agents.items():

                async def hear(params: Any, name: str = name) -> None:
                    heard[name].append(str(params.data))

                clients[name] = await stack.enter_async_context(
                    connect(gw.url, keys, mode="legacy", logging_callback=hear)
                )
            for name, client in clients.items():
                pid = await client.call_tool("crm.update", PID)
                pids[name] = text_of(pid)
                logged = await client.call_tool("crm.update", {"ticket": "log", "discount": 0})
                assert not logged.is_error, text_of(logged)
            with anyio.fail_after(10):
                while not all(heard.values()):
                    await anyio.sleep(0.01)
        return pids

    pids = run(scenario)
    for name, pid in pids.items():
        assert heard[name] == [f"crm pid {pid}"], (name, heard)
