"""HTTP authorize throughput on one replica and on two, on one PostgreSQL database, side by side.

Two ``tether serve`` processes on loopback share one PostgreSQL database and one data directory
(``TETHER_DATABASE_URL``, ``TETHER_DATA_DIR``), as replicas behind a load balancer do. This process
is the load: ``--concurrency`` clients (asyncio, one keep-alive connection each, each with a task
of its own) call ``POST /v1/authorize`` with an allowed ``crm.query`` read, so every call does the
whole job: SVID and grant verification, the grant and task reads, scope and Cedar, and the
decision's audit record committed under the chain head lock.

Rounds alternate, so both configurations share the machine's noise: every client on replica ``a``
("1 replica"), then the same clients spread over ``a`` and ``b`` ("2 replicas"). Each round runs a
fixed time after a warm-up. Prints decisions/s per round, the medians and their ratio, and p50/p99
latency per configuration. A bounded run: ``rounds x 2 x seconds`` plus start-up, loopback only.

    .venv/bin/python bench/replicas.py [--rounds 5] [--seconds 3] [--concurrency 16]
                                       [--store-url postgresql://...]

Without ``--store-url`` it starts a throw-away PostgreSQL cluster on 127.0.0.1 with the test
suite's helper (``tests/pg_server.py``: ``fsync`` and ``synchronous_commit`` off, so the figures
are CPU- and lock-bound, not disk-bound). Quote figures measured in one run, with the CPU count.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg

from tether.runtime import RuntimeConfig, dev_issuer

INTENT = {"workflow": "support-triage", "purpose": "measure", "on_behalf_of": "user:bench"}
SCOPE = {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}
READ = {"tool": "crm.query", "action": "read", "dataset": "crm"}
ONE, TWO = "1 replica", "2 replicas"


@dataclass
class Round:
    decisions: int
    seconds: float
    latencies_ms: list[float]
    #: Share of the machine's CPU time that was busy during the round (Linux), or None.
    busy: float | None = None

    @property
    def rate(self) -> float:
        return self.decisions / self.seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine from /proc/stat; None off Linux."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def throwaway_database() -> Iterator[str]:
    """A fresh PostgreSQL cluster on loopback (the tests' helper) and a database on it."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from pg_server import running_postgres

    with running_postgres() as server:
        with psycopg.connect(server.dsn(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
            # The helper logs every statement for the tests; a benchmark measures tether.
            admin.execute("ALTER SYSTEM SET log_statement = 'none'")
            admin.execute("SELECT pg_reload_conf()")
        yield server.url("bench")


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"a replica exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # a bounded wait for a process to start
    raise SystemExit(f"the replica at {url} was not ready in 60 s")


@contextmanager
def replicas(store_url: str, data_dir: Path, count: int) -> Iterator[list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env |= {"TETHER_DATABASE_URL": store_url, "TETHER_DATA_DIR": str(data_dir)}
    with ExitStack() as stack:
        urls: list[str] = []
        processes: list[subprocess.Popen[bytes]] = []
        for _ in range(count):
            port = free_port()
            command = [sys.executable, "-m", "tether", "serve", "--port", str(port)]
            process = subprocess.Popen(
                [*command, "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL
            )
            stack.callback(stop, process)
            processes.append(process)
            urls.append(f"http://127.0.0.1:{port}")
        for url, process in zip(urls, processes, strict=True):
            wait_ready(url, process)
        yield urls


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=20)


async def client(
    url: str, headers: dict[str, str], grant: str, until: float, latencies: list[float]
) -> None:
    body = {"grant": grant, **READ}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        while time.perf_counter() < until:
            start = time.perf_counter()
            response = await http.post("/v1/authorize", json=body)
            latencies.append((time.perf_counter() - start) * 1000)
            verdict = response.json()
            if response.status_code != 200 or verdict.get("decision") != "allow":
                raise SystemExit(f"unexpected answer {response.status_code}: {verdict}")


async def run_round(
    targets: list[str], headers: dict[str, str], grants: list[str], seconds: float
) -> Round:
    latencies: list[float] = []
    cpu_before = cpu_times()
    start = time.perf_counter()
    until = start + seconds
    await asyncio.gather(
        *(
            client(targets[n % len(targets)], headers, grant, until, latencies)
            for n, grant in enumerate(grants)
        )
    )
    elapsed = time.perf_counter() - start
    cpu_after = cpu_times()
    busy = None
    if cpu_before is not None and cpu_after is not None and cpu_after[1] > cpu_before[1]:
        busy = (cpu_after[0] - cpu_before[0]) / (cpu_after[1] - cpu_before[1])
    return Round(len(latencies), elapsed, latencies, busy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--store-url", help="an empty PostgreSQL database to use instead")
    options = parser.parse_args()

    with ExitStack() as stack:
        store_url = options.store_url or stack.enter_context(throwaway_database())
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "data"
        a, b = stack.enter_context(replicas(store_url, data_dir, 2))
        issuer = dev_issuer(RuntimeConfig(data_dir=data_dir, environ={}))
        svid = issuer.mint_svid("analyst", audience="tether", now=datetime.now(UTC))
        headers = {"Authorization": f"Bearer {svid}"}
        grants = []
        for _ in range(options.concurrency):
            opened = httpx.post(
                f"{a}/v1/tasks",
                json={"intent": INTENT, "scopes": [SCOPE], "ttl_seconds": 3600},
                headers=headers,
                timeout=30,
            )
            if opened.status_code != 201:
                raise SystemExit(f"opening a task failed: {opened.text}")
            grants.append(opened.json()["grant"])
        layouts = {ONE: [a], TWO: [a, b]}
        for targets in layouts.values():
            asyncio.run(run_round(targets, headers, grants, options.warmup))
        results: dict[str, list[Round]] = {ONE: [], TWO: []}
        for _ in range(options.rounds):
            for name, targets in layouts.items():
                results[name].append(
                    asyncio.run(run_round(targets, headers, grants, options.seconds))
                )

    print(
        f"POST /v1/authorize (allowed read, durable audit), {options.concurrency} clients, "
        f"{options.rounds} x {options.seconds:g} s rounds interleaved, loopback, "
        f"{os.cpu_count()} CPUs shared by load, replicas and PostgreSQL"
    )
    print(f"{'round':<8}{ONE + ' /s':>16}{TWO + ' /s':>16}")
    for n, (one, two) in enumerate(zip(results[ONE], results[TWO], strict=True), start=1):
        print(f"{n:<8}{one.rate:>16.0f}{two.rate:>16.0f}")
    medians = {name: statistics.median(r.rate for r in rounds) for name, rounds in results.items()}
    print(f"{'median':<8}{medians[ONE]:>16.0f}{medians[TWO]:>16.0f}")
    print(f"ratio 2 replicas / 1 replica: {medians[TWO] / medians[ONE]:.2f}x")
    for name, rounds in results.items():
        latencies = [ms for r in rounds for ms in r.latencies_ms]
        busy = [r.busy for r in rounds if r.busy is not None]
        machine = f"  machine CPU busy {statistics.median(busy):.0%}" if busy else ""
        print(
            f"{name:<12} latency p50 {percentile(latencies, 0.5):6.1f} ms  "
            f"p99 {percentile(latencies, 0.99):6.1f} ms{machine}"
        )


if __name__ == "__main__":
    main()
