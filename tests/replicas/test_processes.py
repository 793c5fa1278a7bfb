"""Real ``tether serve`` processes on one PostgreSQL database, configured as an operator would:
``TETHER_DATABASE_URL`` and one shared ``TETHER_DATA_DIR``, started at the same moment on an empty
directory. Then one is killed with SIGKILL in the middle of the load."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from replicas.harness import CRM, READ, auditor, codes, decisions_in
from support import INTENT
from tether.core.audit import verify_chain
from tether.runtime import RuntimeConfig, dev_issuer

START_SECONDS = 60.0
BUDGET = 30
CALLS = 120
THREADS = 4


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    base_url: str
    log: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def serve_processes(data_dir: Path, store_url: str, count: int) -> Iterator[list[Process]]:
    """``count`` ``tether serve`` processes, all started before any is waited for."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env |= {"TETHER_DATABASE_URL": store_url, "TETHER_DATA_DIR": str(data_dir)}
    started: list[Process] = []
    with ExitStack() as stack:
        for n in range(count):
            port, log = _free_port(), data_dir.parent / f"replica-{n}.log"
            handle = stack.enter_context(log.open("wb"))
            popen = subprocess.Popen(
                [sys.executable, "-m", "tether", "serve", "--port", str(port)],
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
            stack.callback(_stop, popen)
            started.append(Process(chr(ord("a") + n), popen, f"http://127.0.0.1:{port}", log))
        for process in started:
            _wait_ready(process)
        yield started


def _stop(popen: subprocess.Popen[bytes]) -> None:
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=10)


def _wait_ready(process: Process) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            pytest.fail(f"replica {process.name} exited:\n{process.log.read_text()}")
        try:
            if httpx.get(f"{process.base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # a real process starting, not tether's clock
    pytest.fail(f"replica {process.name} was not ready within {START_SECONDS} s")


def test_two_serve_processes_keep_the_invariants_when_one_is_killed(
    tmp_path: Path, store_url: str
) -> None:
    data_dir = tmp_path / "data"  # empty: the replicas create the keys together
    with serve_processes(data_dir, store_url, 2) as (a, b):
        issuer = dev_issuer(RuntimeConfig(data_dir=data_dir, environ={}))
        svid = issuer.mint_svid("analyst", audience="tether", now=datetime.now(UTC))
        headers = {"Authorization": f"Bearer {svid}"}
        opened = httpx.post(
            f"{a.base_url}/v1/tasks",
            json={
                "intent": INTENT,
                "scopes": [CRM],
                "ttl_seconds": 600,
                "budgets": {"records": BUDGET},
            },
            headers=headers,
            timeout=30,
        )
        assert opened.status_code == 201, opened.text
        task = opened.json()
        body = {"grant": task["grant"], "expect": {"records": 1}, **READ}

        answers: list[dict[str, object]] = []
        failed_over = 0
        lock = threading.Lock()
        half_way = threading.Event()

        def client(n: int) -> None:
            nonlocal failed_over
            with httpx.Client(timeout=30) as http:
                for i in range(CALLS // THREADS):
                    first, second = (a, b) if (n + i) % 2 == 0 else (b, a)
                    try:
                        response = http.post(
                            f"{first.base_url}/v1/authorize", json=body, headers=headers
                        )
                    except httpx.TransportError:  # the killed replica: retry on the other
                        with lock:
                            failed_over += 1
                        response = http.post(
                            f"{second.base_url}/v1/authorize", json=body, headers=headers
                        )
                    assert response.status_code == 200, response.text
                    with lock:
                        answers.append(response.json())
                        if len(answers) >= CALLS // 4:
                            half_way.set()

        threads = [threading.Thread(target=client, args=(n,)) for n in range(THREADS)]
        for t in threads:
            t.start()
        assert half_way.wait(timeout=60)
        os.kill(a.popen.pid, signal.SIGKILL)  # mid-load, possibly mid-transaction
        for t in threads:
            t.join(timeout=120)
            assert not t.is_alive(), "a client hung"
        assert a.popen.wait(timeout=10) == -signal.SIGKILL

        closed = httpx.post(
            f"{b.base_url}/v1/tasks/{task['task_id']}/close", headers=headers, timeout=30
        )
        assert closed.status_code == 200
        after = httpx.post(f"{b.base_url}/v1/authorize", json=body, headers=headers, timeout=30)
        assert after.json()["decision"] == "deny"

    assert len(answers) == CALLS and failed_over > 0
    allowed = [v for v in answers if v["decision"] == "allow"]
    assert all(codes(v) == ["budget_exceeded"] for v in answers if v["decision"] != "allow")
    with auditor(store_url) as store:
        records = list(store.audit_records())
        report = verify_chain(records, store.chain_head())
    assert report.ok, report.problem  # SIGKILL left no half-written record, gap or fork
    recorded = decisions_in(records)
    assert all(recorded[str(v["decision_id"])] == "allow" for v in allowed)
    task_of = {r.body.get("decision_id"): r.task_id for r in records}
    on_task = [d for d, v in recorded.items() if v == "allow" and task_of[d] == task["task_id"]]
    assert len(on_task) == BUDGET  # used up exactly, across both processes and the kill
