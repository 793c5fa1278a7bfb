"""HTTP authorize on 1, 2 and 4 replicas of one PostgreSQL database: throughput, the time
decisions spend waiting on locks, and CPU per decision, side by side in one run.

``tether serve`` processes on loopback share one PostgreSQL database and one data directory
(``TETHER_DATABASE_URL``, ``TETHER_DATA_DIR``), as replicas behind a load balancer do. Replicas
``a``..``d`` each have a replica id of their own (``TETHER_REPLICA_ID``), so each appends to its
own audit partition; ``e`` and ``f`` are configured with *one* id, so they share one partition
and its chain head, as every replica did before the log was partitioned. This process is the
load: ``--concurrency`` clients (asyncio, one keep-alive connection each, each with a task of its
own) call ``POST /v1/authorize`` with an allowed ``crm.query`` read, so every call does the whole
job: SVID and grant verification, the grant and task reads, scope and Cedar, and the decision's
audit record committed under its partition's head lock.

Rounds alternate between the layouts (1 replica, 2, 4, and 2 sharing one head), so they share
the machine's noise; each round runs a fixed time after a warm-up. Per layout it prints the
median decisions/s and its ratio to one replica, latency p50/p99, and:

- **lock wait per decision**: PostgreSQL sessions of the database waiting on a lock
  (``pg_stat_activity.wait_event_type = 'Lock'``: a head row, a task row...), sampled every
  ``--sample-ms``; the sum of waiting sessions x interval, over the decisions made;
- **CPU per decision**: CPU time (user + system, from ``/proc``) of the replica processes, and
  of PostgreSQL's processes, over the decisions made;
- the load average before and after the run, and the machine's busy share per round.

    .venv/bin/python bench/replicas.py [--rounds 5] [--seconds 3] [--concurrency 16]
                                       [--store-url postgresql://...]

Without ``--store-url`` it starts a throw-away PostgreSQL cluster on 127.0.0.1 with the test
suite's helper (``tests/pg_server.py``: ``fsync`` and ``synchronous_commit`` off, so the figures
are CPU- and lock-bound, not disk-bound). Quote figures measured in one run, with the CPU count.
Linux only for the CPU figures (``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
from _servers import cpu_times, free_port, processes_cpu, stop

from tether.runtime import RuntimeConfig, dev_issuer

INTENT = {"workflow": "support-triage", "purpose": "measure", "on_behalf_of": "user:bench"}
SCOPE = {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}
READ = {"tool": "crm.query", "action": "read", "dataset": "crm"}
ONE, TWO, FOUR, SHARED = "1 replica", "2 replicas", "4 replicas", "2 sharing a head"
#: Each replica's TETHER_REPLICA_ID: a..d their own, e and f one between them.
REPLICA_IDS = ("a", "b", "c", "d", "shared", "shared")


@dataclass
class Round:
    decisions: int
    seconds: float
    latencies_ms: list[float]
    #: Share of the machine's CPU time that was busy during the round (Linux), or None.
    busy: float | None = None
    #: Seconds PostgreSQL sessions spent waiting on a lock (sampled), over the round.
    lock_wait: float = 0.0
    row_lock_wait: float = 0.0
    #: CPU seconds of the replicas serving the round, and of PostgreSQL, or None off Linux.
    replica_cpu: float | None = None
    postgres_cpu: float | None = None

    @property
    def rate(self) -> float:
        return self.decisions / self.seconds

    def per_decision_ms(self, seconds: float | None) -> float | None:
        return None if seconds is None or not self.decisions else seconds / self.decisions * 1000


def postgres_pids(store_url: str) -> list[int]:
    """The postmaster and its children (backends, walwriter...), when the server is local."""
    with psycopg.connect(store_url, autocommit=True) as conn:
        row = conn.execute("SHOW data_directory").fetchone()
    if row is None:
        return []
    try:
        master = int(Path(row[0], "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    return children_of(master)


def _each_cpu(pids: list[int]) -> dict[int, float]:
    """Each live process's CPU seconds so far."""
    found = {pid: processes_cpu([pid]) for pid in pids}
    return {pid: used for pid, used in found.items() if used is not None}


def children_of(master: int) -> list[int]:
    """``master`` and its live children (PostgreSQL forks a backend per connection)."""
    pids = [master]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == master:
            pids.append(int(stat.parent.name))
    return pids


class LockSampler:
    """Samples, every ``interval`` seconds in a thread of its own, how many sessions of the
    database wait on a lock; :attr:`waited` is their sum times the interval: seconds waited.
    :attr:`row_waited` is the part spent waiting on a row another transaction locked
    (``tuple``, ``transactionid``: a chain head, a task); the rest is mostly ``extend`` (two
    inserts growing one table at once)."""

    QUERY = (
        "SELECT count(*), count(*) FILTER (WHERE wait_event IN ('tuple', 'transactionid')) "
        "FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )

    def __init__(self, store_url: str, interval: float) -> None:
        self._url, self._interval = store_url, interval
        self._stop = threading.Event()
        self.waited = 0.0
        self.row_waited = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LockSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with psycopg.connect(self._url, autocommit=True) as conn:
            last = time.perf_counter()
            while not self._stop.wait(self._interval):
                row = conn.execute(self.QUERY).fetchone()
                now = time.perf_counter()
                if row is not None:
                    self.waited += row[0] * (now - last)
                    self.row_waited += row[1] * (now - last)
                last = now


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


@dataclass
class Served:
    url: str
    pid: int


@contextmanager
def replicas(store_url: str, data_dir: Path, ids: tuple[str, ...]) -> Iterator[list[Served]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env |= {"TETHER_DATABASE_URL": store_url, "TETHER_DATA_DIR": str(data_dir)}
    with ExitStack() as stack:
        served: list[Served] = []
        processes: list[subprocess.Popen[bytes]] = []
        for replica_id in ids:
            port = free_port()
            command = [sys.executable, "-m", "tether", "serve", "--port", str(port)]
            process = subprocess.Popen(
                [*command, "--log-level", "warning"],
                env=env | {"TETHER_REPLICA_ID": replica_id},
                stdout=subprocess.DEVNULL,
            )
            stack.callback(stop, process)
            processes.append(process)
            served.append(Served(f"http://127.0.0.1:{port}", process.pid))
        for replica, process in zip(served, processes, strict=True):
            wait_ready(replica.url, process)
        yield served


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


async def _load(
    targets: list[Served], headers: dict[str, str], grants: list[str], seconds: float
) -> list[float]:
    latencies: list[float] = []
    until = time.perf_counter() + seconds
    await asyncio.gather(
        *(
            client(targets[n % len(targets)].url, headers, grant, until, latencies)
            for n, grant in enumerate(grants)
        )
    )
    return latencies


def run_round(
    targets: list[Served],
    headers: dict[str, str],
    grants: list[str],
    seconds: float,
    *,
    store_url: str,
    postgres: list[int],
    sample: float,
) -> Round:
    pids = [t.pid for t in targets]
    cpu_before = cpu_times()
    postgres = children_of(postgres[0]) if postgres else []
    replica_before, postgres_before = processes_cpu(pids), _each_cpu(postgres)
    start = time.perf_counter()
    with LockSampler(store_url, sample) as locks:
        latencies = asyncio.run(_load(targets, headers, grants, seconds))
    elapsed = time.perf_counter() - start
    cpu_after = cpu_times()
    replica_after, postgres_after = processes_cpu(pids), _each_cpu(postgres)
    busy = None
    if cpu_before is not None and cpu_after is not None and cpu_after[1] > cpu_before[1]:
        busy = (cpu_after[0] - cpu_before[0]) / (cpu_after[1] - cpu_before[1])
    replica_cpu = postgres_cpu = None
    if replica_before is not None and replica_after is not None:
        replica_cpu = replica_after - replica_before
    if postgres:  # the processes alive at both ends (a backend may exit meanwhile)
        postgres_cpu = sum(
            postgres_after[pid] - used
            for pid, used in postgres_before.items()
            if pid in postgres_after
        )
    return Round(
        len(latencies),
        elapsed,
        latencies,
        busy,
        locks.waited,
        locks.row_waited,
        replica_cpu,
        postgres_cpu,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sample-ms", type=float, default=5.0, help="lock sampling interval")
    parser.add_argument("--store-url", help="an empty PostgreSQL database to use instead")
    options = parser.parse_args()

    load_before = os.getloadavg()
    with ExitStack() as stack:
        store_url = options.store_url or stack.enter_context(throwaway_database())
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "data"
        served = stack.enter_context(replicas(store_url, data_dir, REPLICA_IDS))
        libpq_url = store_url.replace("postgresql+psycopg://", "postgresql://", 1)
        postgres = postgres_pids(libpq_url)
        issuer = dev_issuer(RuntimeConfig(data_dir=data_dir, environ={}))
        svid = issuer.mint_svid("analyst", audience="tether", now=datetime.now(UTC))
        headers = {"Authorization": f"Bearer {svid}"}
        grants = []
        for _ in range(options.concurrency):
            opened = httpx.post(
                f"{served[0].url}/v1/tasks",
                json={"intent": INTENT, "scopes": [SCOPE], "ttl_seconds": 3600},
                headers=headers,
                timeout=30,
            )
            if opened.status_code != 201:
                raise SystemExit(f"opening a task failed: {opened.text}")
            grants.append(opened.json()["grant"])
        layouts = {ONE: served[:1], TWO: served[:2], FOUR: served[:4], SHARED: served[4:6]}
        measure = {"store_url": libpq_url, "postgres": postgres, "sample": options.sample_ms / 1000}
        for targets in layouts.values():
            run_round(targets, headers, grants, options.warmup, **measure)
        results: dict[str, list[Round]] = {name: [] for name in layouts}
        for _ in range(options.rounds):
            for name, targets in layouts.items():
                results[name].append(
                    run_round(targets, headers, grants, options.seconds, **measure)
                )
    load_after = os.getloadavg()
    report(options, results, load_before, load_after)


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _ms(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:6.3f}"


def report(
    options: argparse.Namespace,
    results: dict[str, list[Round]],
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> None:
    print(
        f"POST /v1/authorize (allowed read, durable audit), {options.concurrency} clients, "
        f"{options.rounds} x {options.seconds:g} s rounds interleaved, loopback, "
        f"{os.cpu_count()} CPUs shared by load, replicas and PostgreSQL; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (1 min)"
    )
    names = list(results)
    print(f"{'round':<8}" + "".join(f"{name + ' /s':>20}" for name in names))
    for n in range(options.rounds):
        print(f"{n + 1:<8}" + "".join(f"{results[name][n].rate:>20.0f}" for name in names))
    medians = {name: statistics.median(r.rate for r in rounds) for name, rounds in results.items()}
    print(f"{'median':<8}" + "".join(f"{medians[name]:>20.0f}" for name in names))
    print(
        "ratio to 1 replica: "
        + ", ".join(f"{name} {medians[name] / medians[ONE]:.2f}x" for name in names[1:])
    )
    print(
        f"{'layout':<18}{'lock wait ms/dec':>17}{'on rows':>9}{'replica CPU ms/dec':>20}"
        f"{'PostgreSQL CPU ms/dec':>23}{'p50 ms':>8}{'p99 ms':>8}{'busy':>6}"
    )
    for name, rounds in results.items():
        wait = _median([r.per_decision_ms(r.lock_wait) for r in rounds])
        row_wait = _median([r.per_decision_ms(r.row_lock_wait) for r in rounds])
        replica = _median([r.per_decision_ms(r.replica_cpu) for r in rounds])
        pg = _median([r.per_decision_ms(r.postgres_cpu) for r in rounds])
        busy = _median([r.busy for r in rounds])
        latencies = [ms for r in rounds for ms in r.latencies_ms]
        print(
            f"{name:<18}{_ms(wait):>17}{_ms(row_wait):>9}{_ms(replica):>20}{_ms(pg):>23}"
            f"{percentile(latencies, 0.5):>8.1f}{percentile(latencies, 0.99):>8.1f}"
            + (f"{busy:>6.0%}" if busy is not None else "   n/a")
        )


if __name__ == "__main__":
    main()
