"""A gateway deciding in process decides as serve's hot path does: on the event loop (SQLite),
its write in the loop's group commit, so calls of several agents decided in the same turns share
one commit and none holds the loop while another's commit is made."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from support import INTENT, make_runtime, mint
from tether.core.errors import ErrorCode
from tether.core.scope import ActionKind, Scope
from tether.core.task import Intent
from tether.core.verdict import Decision
from tether.mcp.callers import Caller
from tether.mcp.server import deps_from_runtime
from tether.service.clock import ManualClock
from tether.service.enforce import CallRequest

CRM = {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}


def test_calls_decided_in_the_same_turn_share_one_commit(
    tmp_path: Path, clock: ManualClock
) -> None:
    runtime = make_runtime(tmp_path / "data", clock)
    try:
        pdp = deps_from_runtime(runtime).pdp
        callers = []
        for n in range(6):
            svid = mint(runtime, "analyst", clock)
            workload = runtime.verifier.verify(svid, clock.now())
            task = runtime.tasks.open_task(workload, Intent(**INTENT), [Scope.from_json(CRM)], 600)
            callers.append(Caller(workload, task.token))
        db = runtime.store._decisions._db  # type: ignore[attr-defined]
        with db.write(ErrorCode.STORE_UNAVAILABLE, "open the write connection", lean=True):
            pass
        raw = db._write_conn.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        commits: list[str] = []
        raw.set_trace_callback(lambda s: commits.append(s) if s.upper() == "COMMIT" else None)
        request = CallRequest("crm.query", ActionKind.READ, "crm", {"customer": "c-1"})

        async def decide_all() -> list[Decision]:
            verdicts = await asyncio.gather(*(pdp.enforce(c, request) for c in callers))
            return [v.decision for v in verdicts]

        assert asyncio.run(decide_all()) == [Decision.ALLOW] * 6
        # One commit for all six (each alone, holding the loop through its commit, made six).
        assert len(commits) == 1, commits
    finally:
        runtime.close()
