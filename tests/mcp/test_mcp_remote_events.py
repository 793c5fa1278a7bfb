"""A remote gateway's own records reach ``tether serve`` exactly once (``POST
/v1/gateway/events``): real ``tether serve`` processes on SQLite and on PostgreSQL (two replicas
on one database), the gateway's real decision point and outbox
(:class:`~tether.mcp.pdp_remote.RemoteDecisionPoint`), and a loopback proxy that loses serve's
answers after serve has acted, as a dropped connection or a load balancer's timeout would.

Each event carries an id the gateway chose and keeps across retries; serve records an id once
per gateway and refuses a repeat with ``409 event_replayed``, which the outbox takes as
delivered.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio
import httpx
import pytest
from loopback import LosingProxy, losing_proxy

from ops.ops_support import ServeProcess, serve_process
from pg_server import PostgresServer, postgres_server
from replicas.harness import fresh_database
from support import make_runtime, mint
from tether.core.audit import AuditKind, AuditRecord
from tether.core.ids import IdFactory
from tether.mcp.pdp_remote import RemoteDecisionPoint, RemoteEvents
from tether.runtime import open_store
from tether.service.clock import ManualClock

__all__ = ["postgres_server"]

EVENTS = "/v1/gateway/events"


@dataclass
class Served:
    """One or two serve processes on one store, and the gateway's SVID they accept."""

    replicas: list[ServeProcess]
    data: Path
    store_url: str | None
    clock: ManualClock
    gateway_svid: str
    gateway_id: str
    agent_svid: str

    def records(self, event_id: str) -> list[AuditRecord]:
        store = open_store(self.data, self.store_url)
        try:
            return [r for r in store.audit_records() if r.body.get("event_id") == event_id]
        finally:
            store.close()

    def count(self) -> int:
        store = open_store(self.data, self.store_url)
        try:
            return sum(1 for _ in store.audit_records())
        finally:
            store.close()

    def post(self, body: object, replica: int = 0, svid: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {svid or self.gateway_svid}"}
        url = self.replicas[replica].base_url + EVENTS
        return httpx.post(url, json=body, headers=headers, timeout=30)


def _event_id() -> str:
    return IdFactory(os.urandom).gateway_event()


def _event(event_id: str, tool: str = "crm.query") -> dict[str, object]:
    return {
        "event_id": event_id,
        "kind": "tool_pinned",
        "body": {"tool": tool, "sha256": "ab" * 32},
    }


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    root = tmp_path_factory.mktemp(f"events-{request.param}")
    data = root / "data"
    clock = ManualClock(datetime.now(UTC))  # the serve processes run on the system clock
    runtime = make_runtime(data, clock)  # the data directory's keys: the dev issuer's, serve's
    try:
        gateway_svid = mint(runtime, "mcp-gateway", clock)
        gateway_id = runtime.verifier.verify(gateway_svid, clock.now()).id
        agent_svid = mint(runtime, "analyst", clock)
    finally:
        runtime.close()
    with ExitStack() as stack:
        store_url: str | None = None
        envs: list[dict[str, str]] = [{}]
        if request.param == "postgresql":
            server: PostgresServer = request.getfixturevalue("postgres_server")
            store_url = stack.enter_context(fresh_database(server))
            base = {"TETHER_DATABASE_URL": store_url}
            envs = [base | {"TETHER_REPLICA_ID": name} for name in ("a", "b")]
        replicas = [
            stack.enter_context(serve_process(data, "--gateway-ids", gateway_id, env=env))
            for env in envs
        ]
        yield Served(replicas, data, store_url, clock, gateway_svid, gateway_id, agent_svid)


@pytest.fixture
def proxy(served: Served) -> Iterator[LosingProxy]:
    with losing_proxy(served.replicas[0].base_url) as server:
        yield server


def _gateway(served: Served, proxy: LosingProxy) -> tuple[RemoteDecisionPoint, RemoteEvents]:
    """The gateway's decision point on serve through ``proxy``, and its outbox."""
    url = f"http://127.0.0.1:{proxy.server_address[1]}"
    pdp = RemoteDecisionPoint(url, served.clock, lambda: served.gateway_svid, timeout=10)
    events = pdp.events
    assert isinstance(events, RemoteEvents)
    return pdp, events


def test_a_replayed_event_is_refused_and_recorded_once(served: Served) -> None:
    event_id = _event_id()
    first = served.post(_event(event_id))
    assert first.status_code == 201, first.text
    before = served.count()
    replay = served.post(_event(event_id), replica=len(served.replicas) - 1)
    assert replay.status_code == 409, replay.text
    assert replay.json()["error"]["code"] == "event_replayed"
    # The same id with another body is the same event: refused too, not a second record.
    altered = served.post(_event(event_id, tool="payments.transfer"))
    assert altered.status_code == 409 and altered.json()["error"]["code"] == "event_replayed"
    assert served.count() == before
    (record,) = served.records(event_id)
    assert record.kind is AuditKind.TOOL_PINNED
    assert record.record_id == first.json()["record_id"]
    assert record.body["reported_by"] == served.gateway_id
    assert record.body["tool"] == "crm.query"
    # A fresh id from the same gateway is a new event.
    assert served.post(_event(_event_id())).status_code == 201


def test_an_event_id_missing_malformed_or_oversized_is_refused_and_nothing_recorded(
    served: Served,
) -> None:
    before = served.count()
    body = _event(_event_id())
    missing = served.post({k: v for k, v in body.items() if k != "event_id"})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "invalid_field"
    assert "event_id" in missing.json()["error"]["message"]
    refusals = {
        "gev_short": (400, "invalid_field"),
        "aud_" + "0" * 26: (400, "invalid_field"),  # another kind of id
        "gev_" + "U" * 26: (400, "invalid_field"),  # not Crockford base32 (lower case only)
        "gev_" + "0" * 4000: (413, "payload_too_large"),
        "": (400, "invalid_field"),
    }
    for event_id, (status, code) in refusals.items():
        answer = served.post({**body, "event_id": event_id})
        assert answer.status_code == status, (event_id[:40], answer.text)
        assert answer.json()["error"]["code"] == code
        assert "event_id" in answer.json()["error"]["message"]
    number = served.post({**body, "event_id": 12345})
    assert number.status_code == 400 and number.json()["error"]["code"] == "invalid_field"
    # An agent is not a gateway, whatever id it sends.
    agent = served.post(body, svid=served.agent_svid)
    assert agent.status_code == 403 and agent.json()["error"]["code"] == "not_a_gateway"
    assert served.count() == before


def test_a_retry_after_a_lost_answer_is_recorded_exactly_once(
    served: Served, proxy: LosingProxy
) -> None:
    pdp, events = _gateway(served, proxy)

    async def scenario() -> None:
        proxy.losing.set()
        await events.append_async(AuditKind.TOOL_PINNED, {"tool": "crm.lost", "sha256": "cd" * 32})
        assert proxy.lost == 1
        assert events.pending == 1  # kept: no answer came
        proxy.losing.clear()
        await events.flush()  # the retry carries the same id
        assert events.pending == 0  # serve's event_replayed read as delivered
        await pdp.aclose()

    anyio.run(scenario)
    records = [
        r
        for r in _all(served)
        if r.kind is AuditKind.TOOL_PINNED and r.body.get("tool") == "crm.lost"
    ]
    assert len(records) == 1
    assert records[0].body["reported_by"] == served.gateway_id
    assert str(records[0].body["event_id"]).startswith("gev_")


def test_a_retry_after_an_answer_that_came_is_never_sent(
    served: Served, proxy: LosingProxy
) -> None:
    pdp, events = _gateway(served, proxy)

    async def scenario() -> None:
        for n in range(3):
            await events.append_async(
                AuditKind.UPSTREAM_FAILED, {"upstream": f"crm-{n}", "failure": "timeout"}
            )
        assert events.pending == 0 and proxy.lost == 0
        await pdp.aclose()

    anyio.run(scenario)
    failed = [r for r in _all(served) if r.kind is AuditKind.UPSTREAM_FAILED]
    ids = [r.body["event_id"] for r in failed if str(r.body.get("upstream")).startswith("crm-")]
    assert len(ids) == 3 and len(set(ids)) == 3  # three events, three ids, each once


@pytest.mark.parametrize("served", ["postgresql"], indirect=True)
def test_two_replicas_racing_on_one_id_record_it_once(served: Served) -> None:
    assert len(served.replicas) == 2
    ids = [_event_id() for _ in range(8)]
    start = threading.Barrier(2)
    answers: dict[int, list[int]] = {0: [], 1: []}

    def post_all(replica: int) -> None:
        with httpx.Client(timeout=30) as client:
            for event_id in ids:
                start.wait(timeout=30)
                answer = client.post(
                    served.replicas[replica].base_url + EVENTS,
                    json=_event(event_id),
                    headers={"Authorization": f"Bearer {served.gateway_svid}"},
                )
                answers[replica].append(answer.status_code)

    threads = [threading.Thread(target=post_all, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for n, event_id in enumerate(ids):
        assert sorted((answers[0][n], answers[1][n])) == [201, 409]
        assert len(served.records(event_id)) == 1


def _all(served: Served) -> list[AuditRecord]:
    store = open_store(served.data, served.store_url)
    try:
        return list(store.audit_records())
    finally:
        store.close()
