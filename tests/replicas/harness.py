"""Several tether replicas on one real PostgreSQL database, as ``tether serve`` runs them.

Each replica is its own :class:`Runtime` (its own store handle and connection pool, its own
policy engine, its own verified-token caches) served by its own uvicorn server on 127.0.0.1. They
share only what real replicas share: the database (``store_url``) and the data directory with its
keys. In-process replicas share one :class:`ManualClock`, as replicas share NTP-synchronised time;
``test_processes`` runs real ``tether serve`` processes on the system clock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import psycopg
from psycopg import sql

from pg_server import PostgresServer
from support import INTENT, Agent, live_server, mint
from tether.core.audit import AuditRecord
from tether.core.logcheck import LogReport, verify_log
from tether.runtime import Runtime, RuntimeConfig, open_runtime, packaged_policies
from tether.service.clock import ManualClock
from tether.service.settings import ServiceSettings
from tether.store import SqlStore

R = TypeVar("R")

CRM: dict[str, object] = {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}
READ: dict[str, object] = {"tool": "crm.query", "action": "read", "dataset": "crm"}
PAY: dict[str, object] = {
    "tool": "payments.transfer",
    "actions": ["spend"],
    "constraints": {"amount": {"max": 1000}},
}
BIG_TRANSFER: dict[str, object] = {
    "tool": "payments.transfer",
    "action": "spend",
    "args": {"amount": 500, "to": "c-1042"},
}
OUTAGE_CODES = frozenset({"store_unavailable", "audit_unavailable"})


@dataclass
class Replica:
    """One replica: its runtime and where it listens."""

    name: str
    runtime: Runtime
    base_url: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30)


def replica_config(
    data_dir: Path, store_url: str, redis_url: str | None = None, replica_id: str | None = None
) -> RuntimeConfig:
    return RuntimeConfig(
        replica_id=replica_id,
        data_dir=data_dir,
        policy_dir=packaged_policies(),
        environ={},
        settings=ServiceSettings(plain_audit_args=frozenset({"amount"})),
        store_url=store_url,
        redis_url=redis_url,
    )


@contextmanager
def running_replicas(
    data_dir: Path,
    store_url: str,
    clock: ManualClock,
    count: int,
    redis_url: str | None = None,
    *,
    partitions: Sequence[str] | None = None,
) -> Iterator[list[Replica]]:
    """``count`` replicas on ``store_url`` sharing ``data_dir`` (and so its keys), and with
    ``redis_url`` the grant cache and its fan-out (:mod:`tether.cache`). Each appends to an
    audit partition of its own, named after it (``a``, ``b``...), unless ``partitions`` names
    them (the same name twice: two replicas sharing one chain head)."""
    with ExitStack() as stack:
        started: list[Replica] = []
        for n in range(count):
            name = chr(ord("a") + n)
            partition = name if partitions is None else partitions[n]
            config = replica_config(data_dir, store_url, redis_url, partition)
            runtime = open_runtime(config, clock=clock)
            stack.callback(runtime.close)
            url = stack.enter_context(live_server(runtime))
            started.append(Replica(name, runtime, url))
        yield started


@contextmanager
def fresh_database(server: PostgresServer) -> Iterator[str]:
    """A new, empty database on ``server``; its SQLAlchemy URL. Dropped afterwards."""
    name = f"r_{os.urandom(5).hex()}"
    ident = sql.Identifier(name)
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(ident))
    try:
        yield server.url(name)
    finally:
        # A connection of its own: the test may have restarted the server meanwhile.
        with psycopg.connect(server.dsn(), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


class Agents:
    """One agent identity speaking to every replica (as through a load balancer)."""

    def __init__(self, replicas: Sequence[Replica], name: str, clock: ManualClock) -> None:
        self.svid = mint(replicas[0].runtime, name, clock)
        self._clients = [r.client() for r in replicas]
        self.on = [Agent(c, self.svid) for c in self._clients]

    def close(self) -> None:
        for c in self._clients:
            c.close()


def open_task(agent: Agent, scopes: list[dict[str, object]], **extra: object) -> dict[str, str]:
    response = agent.client.post(
        "/v1/tasks",
        json={"intent": INTENT, "scopes": scopes, "ttl_seconds": 3600, **extra},
        headers=agent.headers,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def codes(verdict: dict[str, object]) -> list[str]:
    reasons = verdict["reasons"]
    assert isinstance(reasons, list)
    return [str(r["code"]) for r in reasons]


def race(calls: Sequence[Callable[[], R]]) -> list[R]:
    """Run every call at once, each on its own thread, released together by a barrier."""
    start = threading.Barrier(len(calls))
    results: list[R | BaseException] = [RuntimeError("did not run")] * len(calls)

    def run(n: int) -> None:
        start.wait()
        try:
            results[n] = calls[n]()
        except BaseException as exc:
            results[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "a racing call hung"
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results  # type: ignore[return-value]


def revoke_agent(replica: Replica, approver_token: str, agent: str) -> httpx.Response:
    """The kill switch, pulled on ``replica`` by the approver holding ``approver_token``."""
    with replica.client() as client:
        return client.post(
            "/v1/agents/revoke",
            json={"agent": agent, "reason": "exfiltrating"},
            headers={"Authorization": f"Bearer {approver_token}"},
        )


def post_authorize(replica: Replica, svid: str, body: dict[str, object]) -> httpx.Response:
    """One authorize call on its own connection, as from a separate client."""
    with replica.client() as client:
        return client.post("/v1/authorize", json=body, headers={"Authorization": f"Bearer {svid}"})


def decisions_in(records: Sequence[AuditRecord]) -> dict[str, str]:
    """decision id → decision, from the audit log's decision records."""
    found: dict[str, str] = {}
    for record in records:
        verdict = record.body.get("verdict")
        decision_id = record.body.get("decision_id")
        if isinstance(verdict, dict) and isinstance(decision_id, str):
            assert decision_id not in found, f"decision {decision_id} recorded twice"
            found[decision_id] = str(verdict.get("decision"))
    return found


def verified_log(store: SqlStore) -> tuple[list[AuditRecord], LogReport]:
    """Every partition's records, and the log checked against the stored heads: each partition
    one chain, none cut, none with a record its head does not name."""
    records = list(store.audit_records())
    report = verify_log(records, [], lambda _: False, heads=store.chain_heads())
    return records, report


@contextmanager
def auditor(url: str) -> Iterator[SqlStore]:
    """A store handle of its own on the replicas' database: an auditor's view of it."""
    store = SqlStore(url)
    try:
        yield store
    finally:
        store.close()
