"""Replicas that lose their store deny, and recover by themselves when it returns.

These tests stop and restart a PostgreSQL server, so they run on one of their own (the session's
server is shared with other suites). Clients keep calling throughout; the load is bounded in
calls and in time and stops by itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from pg_server import PostgresServer, running_postgres
from replicas.harness import (
    CRM,
    OUTAGE_CODES,
    READ,
    Agents,
    Replica,
    auditor,
    codes,
    decisions_in,
    fresh_database,
    open_task,
    running_replicas,
    verified_log,
)
from tether.service.clock import ManualClock

RECOVERY_SECONDS = 20.0
BUDGET = 10
THREADS = 4


@pytest.fixture(scope="module")
def own_server() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture
def trio(tmp_path: Path, own_server: PostgresServer, clock: ManualClock) -> Iterator[list[Replica]]:
    with (
        fresh_database(own_server) as url,
        running_replicas(tmp_path / "data", url, clock, 3) as replicas,
    ):
        yield replicas


@dataclass
class Load:
    """Clients spreading authorize calls over every replica until told to stop (or a cap)."""

    replicas: list[Replica]
    svid: str
    bodies: list[dict[str, object]]
    max_calls: int = 3000
    max_seconds: float = 30.0
    answers: list[tuple[int, dict[str, object]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, threads: int) -> None:
        for n in range(threads):
            self._threads.append(threading.Thread(target=self._run, args=(n,), daemon=True))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)
            assert not t.is_alive(), "a load thread hung"

    def wait_for(self, more: int) -> None:
        """Until ``more`` further answers came in (bounded by the load's own deadline)."""
        target = len(self.answers) + more
        deadline = time.monotonic() + self.max_seconds
        while len(self.answers) < target and time.monotonic() < deadline:
            time.sleep(0.01)  # waiting for real requests, not for tether's clock
        assert len(self.answers) >= target, "the load stalled"

    def _run(self, n: int) -> None:
        deadline = time.monotonic() + self.max_seconds
        clients = [r.client() for r in self.replicas]
        headers = {"Authorization": f"Bearer {self.svid}"}
        try:
            i = n
            while not self._stop.is_set() and time.monotonic() < deadline:
                with self._lock:
                    if len(self.answers) >= self.max_calls:
                        return
                body = self.bodies[i % len(self.bodies)]
                response = clients[i % len(clients)].post(
                    "/v1/authorize", json=body, headers=headers
                )
                with self._lock:
                    self.answers.append((response.status_code, response.json()))
                i += 1
        finally:
            for c in clients:
                c.close()


def _wait_until_allowed(replica: Replica, svid: str, grant: str) -> float:
    """Seconds until ``replica`` allows again; fails after :data:`RECOVERY_SECONDS`."""
    started = time.monotonic()
    with replica.client() as client:
        while time.monotonic() - started < RECOVERY_SECONDS:
            verdict = client.post(
                "/v1/authorize",
                json={"grant": grant, **READ},
                headers={"Authorization": f"Bearer {svid}"},
            )
            assert verdict.status_code == 200
            if verdict.json()["decision"] == "allow":
                return time.monotonic() - started
            time.sleep(0.1)  # waiting for a real server to come back, not for tether's clock
    pytest.fail(f"replica {replica.name} did not recover within {RECOVERY_SECONDS} s")


def test_replicas_deny_while_postgresql_is_down_and_recover_without_restart(
    trio: list[Replica], own_server: PostgresServer, clock: ManualClock
) -> None:
    analyst = Agents(trio, "analyst", clock)
    try:
        plain = open_task(analyst.on[0], [CRM])
        # BUDGET reads of 100 records each (a read's floor).
        budgeted = open_task(analyst.on[1], [CRM], budgets={"records": BUDGET * 100})
        bodies: list[dict[str, object]] = [
            {"grant": plain["grant"], **READ},
            {"grant": budgeted["grant"], "expect": {"records": 100}, **READ},
        ]
        load = Load(trio, analyst.svid, bodies)
        load.start(THREADS)
        try:
            load.wait_for(4 * BUDGET)  # traffic flowing on every replica, the budget used up
            own_server.stop()
            down_at = len(load.answers)
            for agent, replica in zip(analyst.on, trio, strict=True):
                denied = agent.authorize(plain["grant"], **READ)
                assert denied.status_code == 200, denied.text
                verdict = denied.json()
                assert verdict["decision"] == "deny"
                assert set(codes(verdict)) & OUTAGE_CODES, verdict
                ready = httpx.get(f"{replica.base_url}/readyz", timeout=10)
                assert ready.status_code == 503
                assert ready.json()["error"]["code"] == "store_unavailable"
                opened = agent.open_task([CRM])
                assert opened.status_code == 503, opened.text
            load.wait_for(50)  # the load keeps calling into the outage
            during = load.answers[down_at:]
            own_server.start()
            recovered = [_wait_until_allowed(r, analyst.svid, plain["grant"]) for r in trio]
            load.wait_for(50)  # and keeps calling after it
        finally:
            load.stop()
        for replica in trio:
            assert httpx.get(f"{replica.base_url}/readyz", timeout=10).status_code == 200
    finally:
        analyst.close()

    answers = load.answers
    assert {status for status, _ in answers} == {200}  # never a 500, never a hang
    # Once the server is down, nothing is allowed (past the calls in flight when it stopped).
    assert len(during) > THREADS and all(v["decision"] == "deny" for _, v in during[THREADS:])
    for _, verdict in answers:
        # Every deny is the outage's: the task is open and the call in scope, except for the
        # budgeted task once its budget is used up.
        if verdict["decision"] != "allow":
            assert set(codes(verdict)) & (OUTAGE_CODES | {"budget_exceeded"}), verdict
    assert max(recovered) < RECOVERY_SECONDS

    with auditor(trio[0].runtime.config.store_url or "") as store:
        records, report = verified_log(store)
    assert report.ok, report.problem
    recorded = decisions_in(records)
    allowed = [v for _, v in answers if v["decision"] == "allow"]
    # No allow went unrecorded: the client saw an allow only after its record committed.
    assert all(recorded.get(str(v["decision_id"])) == "allow" for v in allowed)
    task_of = {r.body.get("decision_id"): r.task_id for r in records}
    on_budget = [
        d for d, v in recorded.items() if v == "allow" and task_of[d] == budgeted["task_id"]
    ]
    # The budget was used up before the outage and held through it: never one call more.
    assert len(on_budget) == BUDGET
    assert any(codes(v) == ["budget_exceeded"] for _, v in answers)
