"""``tether serve --workers 2``: two worker processes on one port and one SQLite file, and one
``/metrics`` that adds up what both of them did, whichever of them answers the scrape."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
from ops_support import (
    READ_CRM,
    ServeProcess,
    open_task,
    scrape,
    serve_process,
    svid_for,
    value,
)

from pg_server import PostgresServer, postgres_server
from replicas.harness import fresh_database
from tether.core.audit import AuditKind
from tether.datadir import hold_first_free
from tether.store.sql import SqlStore

__all__ = ["postgres_server"]

MAX_CALLS = 200  # a bound on waiting for the second worker to take a connection


def decision_pids(lines: list[str]) -> dict[str, int]:
    """decision id -> pid of the worker that logged it."""
    return {
        entry["decision_id"]: entry["pid"]
        for entry in map(json.loads, lines)
        if entry.get("event") == "decision"
    }


def written_decisions(server: ServeProcess, made: list[str]) -> dict[str, int]:
    """:func:`decision_pids` once every decision in ``made`` is logged (log lines are written
    by a thread of their own, just after the answer), or after a bounded wait."""
    deadline = time.monotonic() + 30
    logged = decision_pids(server.log_lines())
    while not set(made) <= set(logged) and time.monotonic() < deadline:
        threading.Event().wait(0.01)  # waiting on the log file, not on tether's clock
        logged = decision_pids(server.log_lines())
    return logged


def test_two_workers_share_the_port_and_metrics_add_up_across_them(tmp_path: Path) -> None:
    data_dir, scratch = tmp_path / "data", tmp_path / "tmp"
    scratch.mkdir()
    env = {"TMPDIR": str(scratch)}  # where the replica keeps its multiprocess metrics files
    with serve_process(data_dir, "--workers", "2", "--log-format", "json", env=env) as server:
        assert [p.name[:15] for p in scratch.iterdir()] == ["tether-metrics-"]
        svid = svid_for(data_dir, "analyst")
        opened = open_task(server.base_url, svid)
        made: list[str] = []
        # Each call on a new connection; the kernel hands connections to either worker.
        while len(made) < MAX_CALLS:
            response = httpx.post(
                f"{server.base_url}/v1/authorize",
                json={"grant": opened["grant"], **READ_CRM},
                headers={"Authorization": f"Bearer {svid}"},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            assert response.json()["decision"] == "allow"
            made.append(response.json()["decision_id"])
            if len(set(decision_pids(server.log_lines()).values())) == 2:
                break
        logged = written_decisions(server, made)
        assert len(set(logged.values())) == 2, "one worker answered every call"
        assert set(logged) == set(made)

        # Every scrape, on its own connection, sees both workers' decisions and the shared store.
        for _ in range(6):
            samples = scrape(server.base_url)
            assert value(
                samples, "tether_decisions_total", decision="allow", tool="crm.query", reason=""
            ) == len(made)
            assert value(samples, "tether_authorize_seconds_count") == len(made)
            assert value(samples, "tether_audit_append_seconds_count") == len(made)
            assert value(samples, "tether_tasks_open") == 1
            assert value(samples, "tether_store_up") == 1
        server.stop()
    assert list(scratch.iterdir()) == []  # the metrics files went with the replica


def test_workers_on_postgresql_each_append_to_a_partition_of_their_own(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """Even under one ``--replica-id``: the workers of one replica serve at once, so they must
    not take turns on one chain head. Calls go until both workers have decided some; then each
    worker's decisions are in a partition of its own."""
    data_dir = tmp_path / "data"
    with fresh_database(postgres_server) as url:
        args = ("--workers", "2", "--replica-id", "web-1", "--log-format", "json")
        with serve_process(data_dir, *args, env={"TETHER_DATABASE_URL": url}) as server:
            svid = svid_for(data_dir, "analyst")
            opened = open_task(server.base_url, svid)
            made: list[str] = []
            while len(made) < MAX_CALLS:  # each on a new connection: either worker takes it
                response = httpx.post(
                    f"{server.base_url}/v1/authorize",
                    json={"grant": opened["grant"], **READ_CRM},
                    headers={"Authorization": f"Bearer {svid}"},
                    timeout=30,
                )
                assert response.json()["decision"] == "allow", response.text
                made.append(response.json()["decision_id"])
                if len(set(decision_pids(server.log_lines()).values())) == 2:
                    break
            logged = written_decisions(server, made)
            assert len(set(logged.values())) == 2, "one worker answered every call"
            server.stop()
        store = SqlStore(url, partition="web-1")
        try:
            partitions = {
                r.body["decision_id"]: r.partition
                for r in store.audit_records()
                if r.kind is AuditKind.DECISION
            }
        finally:
            store.close()
    # Each worker wrote all its decisions to one partition, and the two never shared one.
    by_worker: dict[int, set[str]] = {}
    for decision_id, pid in logged.items():
        by_worker.setdefault(pid, set()).add(partitions[decision_id])
    assert sorted(len(p) for p in by_worker.values()) == [1, 1]
    assert set.union(*by_worker.values()) == {"web-1", "web-1.1"}
    # Gone with the workers: the names are free for the next start.
    name, held = hold_first_free(data_dir / "run", ["web-1", "web-1.1"])
    held.close()
    assert name == "web-1"
