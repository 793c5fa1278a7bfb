"""A gateway deciding in process on PostgreSQL (alone, or behind the Redis cache) decides off its
event loop: while one call's decision waits on the database, the loop goes on serving the
gateway's other agents. Real runtime, real PostgreSQL and Redis, the gateway's own decision
point."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url

from redis_server import RedisServer, redis_server
from replicas.harness import CRM, replica_config
from support import INTENT
from tether.core.identity import Workload
from tether.core.scope import ActionKind, Scope
from tether.core.task import Intent
from tether.core.verdict import Decision
from tether.mcp.callers import Caller
from tether.mcp.server import deps_from_runtime
from tether.runtime import Runtime, open_runtime
from tether.service.clock import ManualClock
from tether.service.enforce import CallRequest

__all__ = ["redis_server"]

ANALYST = Workload.from_spiffe_id("spiffe://tether.local/agent/analyst")
READ = CallRequest("crm.query", ActionKind.READ, "crm", {"limit": 5})


@pytest.fixture(params=["postgresql", "postgresql+redis"])
def runtime(
    request: pytest.FixtureRequest, tmp_path: Path, store_url: str, clock: ManualClock
) -> Iterator[Runtime]:
    redis_url = None
    if request.param.endswith("redis"):
        server: RedisServer = request.getfixturevalue("redis_server")
        redis_url = server.url()
    config = replica_config(tmp_path / "data", store_url, redis_url, replica_id="a")
    opened = open_runtime(config, clock=clock)
    yield opened
    opened.close()


def test_the_loop_serves_others_while_a_decision_waits_on_the_database(
    runtime: Runtime, store_url: str
) -> None:
    token = runtime.tasks.open_task(
        ANALYST, Intent(**INTENT), [Scope.from_json(CRM)], ttl_seconds=600
    ).token
    pdp = deps_from_runtime(runtime).pdp
    libpq = make_url(store_url).set(drivername="postgresql").render_as_string(hide_password=False)

    async def scenario() -> tuple[bool, Decision]:
        with psycopg.connect(libpq) as holder:
            # Another session holds this replica's chain head: the decision's write must wait.
            holder.execute("SELECT seq FROM audit_head WHERE partition_id = 'a' FOR UPDATE")
            deciding = asyncio.ensure_future(pdp.enforce(Caller(ANALYST, token), READ))
            for _ in range(50):
                await asyncio.sleep(0)  # turns of the loop another agent's request would use
            # A decision made on the loop would have held it until the lock wait gave up.
            in_flight = not deciding.done()
            holder.rollback()
        verdict = await deciding
        return in_flight, verdict.decision

    in_flight, decision = asyncio.run(scenario())
    assert in_flight
    assert decision is Decision.ALLOW
