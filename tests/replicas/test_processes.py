"""Three real ``tether serve`` processes on loopback, configured as an operator would: one
PostgreSQL database (``TETHER_DATABASE_URL``), one Redis (``TETHER_REDIS_URL``) and one shared
``TETHER_DATA_DIR``, started at the same moment on an empty directory. Parallel clients spread
their calls over the three replicas while the tests check issue 7's invariants:

1. a task closed or an agent revoked on one replica is refused by every replica within 1 s;
2. a budget is never overspent, whatever replica the calls land on;
3. an approval is used at most once;
4. the audit log is one chain, and ``tether audit verify --store-url`` proves it;
5. under faults in the middle of the load (one replica killed with SIGKILL, Redis stopped,
   PostgreSQL restarted) nothing is allowed that should not be, the replicas recover by
   themselves, and every allow a client saw is in the audit log.

The module has a PostgreSQL server and a Redis server of its own, since the last test stops and
starts them; that test also kills replica ``c``, so it stays last in the file (pytest keeps file
order). Waits are bounded polls of real sockets (a server starting, a refusal arriving), never
assertions on how long something took, except the 1 s that invariant 1 itself names.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from redis import Redis

from pg_server import PostgresServer, running_postgres
from redis_server import RedisServer, running_redis
from replicas.harness import (
    BIG_TRANSFER,
    CRM,
    OUTAGE_CODES,
    PAY,
    READ,
    auditor,
    codes,
    decisions_in,
    fresh_database,
    verified_log,
)
from support import INTENT
from tether.cache.fanout import CHANNEL_PREFIX
from tether.core.audit import AuditRecord
from tether.identity.dev_issuer import DevIssuer
from tether.runtime import RuntimeConfig, approver_registry, dev_issuer, packaged_policies

pytestmark = pytest.mark.slow

START_SECONDS = 60.0
#: Invariant 1: a revocation is refused by every replica within this many seconds.
REFUSAL_SECONDS = 1.0
#: Bound on a replica coming back after PostgreSQL returns (polling /readyz).
RECOVERY_SECONDS = 30.0
#: Bound on the load producing what a phase waits for.
PHASE_SECONDS = 30.0
REFUSED = frozenset({"grant_revoked", "task_not_open", "agent_revoked"})
#: The bundled policies let only the analyst read the CRM; the tests need many agents doing it
#: (an agent revoked is revoked for good).
FLEET_READS_CRM = """
@id("fleet-reads-crm")
permit (principal, action == Action::"read", resource == Tool::"crm.query");
"""


#: The clients speak plain HTTP on loopback. They share one TLS context rather than each building
#: its own, which costs more CPU than a call and would slow clients started in the middle of a load.
TLS = ssl.create_default_context()


@dataclass
class Replica:
    name: str
    popen: subprocess.Popen[bytes]
    base_url: str
    log: Path


@dataclass
class Cluster:
    replicas: list[Replica]
    data_dir: Path
    store_url: str
    postgres: PostgresServer
    redis: RedisServer
    issuer: DevIssuer
    approver: dict[str, str]

    def headers(self, agent: str) -> dict[str, str]:
        svid = self.issuer.mint_svid(agent, audience="tether", now=datetime.now(UTC))
        return {"Authorization": f"Bearer {svid}"}

    def spiffe_id(self, agent: str) -> str:
        return self.issuer.spiffe_id(agent)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _kill_group(popen: subprocess.Popen[bytes]) -> None:
    """SIGKILL the replica's process group (its own session), then reap it."""
    if popen.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
    popen.wait(timeout=30)


@contextmanager
def serve_processes(
    data_dir: Path, policies: Path, store_url: str, redis_url: str, count: int
) -> Iterator[list[Replica]]:
    """``count`` ``tether serve`` processes, all started before any is waited for; each in a
    process group of its own, killed on the way out whatever happened."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TETHER_", "OTEL_"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env |= {
        "TETHER_DATABASE_URL": store_url,
        "TETHER_REDIS_URL": redis_url,
        "TETHER_DATA_DIR": str(data_dir),
    }
    started: list[Replica] = []
    with ExitStack() as stack:
        for n in range(count):
            port, log = _free_port(), data_dir.parent / f"replica-{n}.log"
            handle = stack.enter_context(log.open("wb"))
            popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tether",
                    "serve",
                    "--port",
                    str(port),
                    "--policies",
                    str(policies),
                ],
                # Each replica its own audit partition, named as an operator would.
                env=env | {"TETHER_REPLICA_ID": f"replica-{n}"},
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            stack.callback(_kill_group, popen)
            started.append(Replica(chr(ord("a") + n), popen, f"http://127.0.0.1:{port}", log))
        for replica in started:
            _wait_ready(replica, START_SECONDS)
        yield started


def client(replica: Replica, timeout: float = 30.0) -> httpx.Client:
    return httpx.Client(base_url=replica.base_url, timeout=timeout, verify=TLS)


def _ready(replica: Replica) -> bool:
    try:
        return httpx.get(f"{replica.base_url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _wait_ready(replica: Replica, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not _ready(replica):
        if replica.popen.poll() is not None:
            pytest.fail(f"replica {replica.name} exited:\n{replica.log.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"replica {replica.name} was not ready within {seconds} s")
        time.sleep(0.1)  # a real process starting or reconnecting, not tether's clock


def subscribers(redis: RedisServer) -> int:
    """How many replicas are subscribed to the grant cache's invalidations on ``redis``."""
    with Redis.from_url(redis.url(), socket_timeout=5) as admin:
        counts = dict(admin.pubsub_numsub(f"{CHANNEL_PREFIX}0"))
    return int(counts.get(f"{CHANNEL_PREFIX}0".encode(), 0))


def wait_subscribed(redis: RedisServer, count: int) -> None:
    """Until ``count`` replicas listen on ``redis`` (they subscribe on threads of their own)."""
    deadline = time.monotonic() + RECOVERY_SECONDS
    while subscribers(redis) != count:
        assert time.monotonic() < deadline, f"{subscribers(redis)} replicas subscribed, not {count}"
        time.sleep(0.05)  # a real subscription coming up


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("processes")
    data_dir = base / "data"  # empty: the replicas create the keys together
    policies = base / "policies"
    shutil.copytree(packaged_policies(), policies)
    (policies / "fleet.cedar").write_text(FLEET_READS_CRM)
    with (
        running_postgres() as postgres,
        fresh_database(postgres) as store_url,
        running_redis() as redis,
        serve_processes(data_dir, policies, store_url, redis.url(), 3) as replicas,
    ):
        issuer = dev_issuer(RuntimeConfig(data_dir=data_dir, environ={}))
        # The approver registry is a file in the shared data directory: every replica reads it.
        approver = {"Authorization": f"Bearer {approver_registry(data_dir).add('oncall')}"}
        wait_subscribed(redis, 3)  # the grant caches are on, kept honest through this Redis
        yield Cluster(replicas, data_dir, store_url, postgres, redis, issuer, approver)


# --- clients -------------------------------------------------------------------------------


def open_task(
    replica: Replica, headers: dict[str, str], scopes: list[dict[str, object]], **extra: object
) -> dict[str, str]:
    response = httpx.post(
        f"{replica.base_url}/v1/tasks",
        json={"intent": INTENT, "scopes": scopes, "ttl_seconds": 600, **extra},
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def close_task(replica: Replica, headers: dict[str, str], task_id: str) -> None:
    closed = httpx.post(f"{replica.base_url}/v1/tasks/{task_id}/close", headers=headers, timeout=30)
    assert closed.status_code == 200 and closed.json()["state"] == "closed", closed.text


def revoke_agent(cluster: Cluster, replica: Replica, agent: str) -> None:
    revoked = httpx.post(
        f"{replica.base_url}/v1/agents/revoke",
        json={"agent": cluster.spiffe_id(agent), "reason": "incident drill"},
        headers=cluster.approver,
        timeout=30,
    )
    assert revoked.status_code == 200, revoked.text


def is_refusal(verdict: dict[str, object]) -> bool:
    return verdict["decision"] == "deny" and codes(verdict)[0] in REFUSED


@dataclass
class Revocation:
    since: float  # the revocation answered: committed
    confirmed: float  # every replica polled refused it
    failures: list[str]  # replicas still allowing it REFUSAL_SECONDS after ``since``

    def too_late(self, answer: Answer) -> bool:
        """An allow of a call sent when it must already have been refused."""
        return allowed(answer) and (
            answer.sent > self.confirmed or answer.sent > self.since + REFUSAL_SECONDS
        )


def revoke_and_poll(
    replicas: list[Replica],
    headers: dict[str, str],
    body: dict[str, object],
    revoke: Callable[[], None],
) -> Revocation:
    """``revoke()``, then poll every replica at once with ``body`` until it refuses it. A
    replica still allowing it :data:`REFUSAL_SECONDS` after the revocation answered is a
    failure. Each replica gets at least one call; its clients are ready before the revocation."""
    failures: list[str] = []
    lock = threading.Lock()
    go = threading.Event()
    since = 0.0

    def poll(http: httpx.Client, name: str) -> None:
        go.wait(timeout=60)
        while True:
            response = http.post("/v1/authorize", json=body, headers=headers)
            if response.status_code == 200 and is_refusal(response.json()):
                return
            if time.monotonic() - since >= REFUSAL_SECONDS:
                with lock:
                    failures.append(f"replica {name}: {response.status_code} {response.text}")
                return
            time.sleep(0.01)  # polling a real server for a refusal

    with ExitStack() as stack:
        clients = [stack.enter_context(client(r)) for r in replicas]
        threads = [
            threading.Thread(target=poll, args=(c, r.name))
            for c, r in zip(clients, replicas, strict=True)
        ]
        for t in threads:
            t.start()
        try:
            revoke()
            since = time.monotonic()
        finally:
            go.set()
            for t in threads:
                t.join(timeout=60)
                assert not t.is_alive(), "a refusal poll hung"
    return Revocation(since, time.monotonic(), failures)


@dataclass
class Answer:
    item: str
    replica: str
    sent: float
    received: float
    status: int | None  # None: no answer (connection error), i.e. no decision
    verdict: dict[str, object] | None


Condition = Callable[[list[Answer]], bool]


@dataclass
class Load:
    """Client threads calling authorize with the current items, each call on a replica picked
    at random; runs until stopped or a cap. A connection error is recorded as no decision."""

    replicas: list[Replica]
    items: dict[str, tuple[dict[str, str], dict[str, object]]]
    max_calls: int = 20000
    max_seconds: float = 90.0
    answers: list[Answer] = field(default_factory=list)
    retired: set[str] = field(default_factory=set)
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def add(self, name: str, headers: dict[str, str], body: dict[str, object]) -> None:
        with self._lock:
            self.items[name] = (headers, body)

    def retire(self, name: str) -> None:
        """Stop sending calls to replica ``name`` (a dead one)."""
        with self._lock:
            self.retired.add(name)

    def start(self, threads: int) -> Load:
        for n in range(threads):
            self._threads.append(threading.Thread(target=self._run, args=(n,), daemon=True))
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)
            assert not t.is_alive(), "a load thread hung"
        assert self.errors == []

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    def wait_until(self, what: str, condition: Condition) -> None:
        """Until ``condition(answers)`` holds, bounded by :data:`PHASE_SECONDS`."""
        deadline = time.monotonic() + PHASE_SECONDS
        while not condition(self.snapshot()):
            assert any(t.is_alive() for t in self._threads), "the load stopped"
            assert time.monotonic() < deadline, f"the load never got to: {what}"
            time.sleep(0.02)  # waiting for real requests, not for tether's clock

    def _run(self, n: int) -> None:
        deadline = time.monotonic() + self.max_seconds
        pick = random.Random(n)
        clients = {r.name: client(r, timeout=15) for r in self.replicas}
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                with self._lock:
                    if len(self.answers) >= self.max_calls:
                        return
                    name = pick.choice(sorted(self.items))
                    headers, body = self.items[name]
                    replica = pick.choice([r for r in self.replicas if r.name not in self.retired])
                sent = time.monotonic()
                try:
                    response = clients[replica.name].post(
                        "/v1/authorize", json=body, headers=headers
                    )
                    status: int | None = response.status_code
                    verdict = response.json() if status == 200 else None
                except httpx.TransportError:
                    status, verdict = None, None
                answer = Answer(name, replica.name, sent, time.monotonic(), status, verdict)
                with self._lock:
                    self.answers.append(answer)
        except BaseException as exc:  # anything but a connection error is the test's failure
            self.errors.append(exc)
        finally:
            for c in clients.values():
                c.close()


def allowed(answer: Answer) -> bool:
    return answer.verdict is not None and answer.verdict["decision"] == "allow"


def denied_for(answer: Answer, reasons: set[str] | frozenset[str]) -> bool:
    return (
        answer.verdict is not None
        and answer.verdict["decision"] == "deny"
        and codes(answer.verdict)[0] in reasons
    )


# --- audit ---------------------------------------------------------------------------------


def audit_log(cluster: Cluster) -> list[AuditRecord]:
    """The audit records as an auditor reads them, after checking they form one chain."""
    with auditor(cluster.store_url) as store:
        records, report = verified_log(store)
    assert report.ok, report.problem
    # Each replica wrote to its own partition.
    names = {f"replica-{n}" for n in range(len(cluster.replicas))}
    assert {r.partition for r in records} <= names
    return records


def verify_with_cli(cluster: Cluster) -> str:
    """``tether audit verify --store-url`` in a process of its own, with the replicas' data
    directory: its key checks the checkpoints the replicas signed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tether",
            "audit",
            "verify",
            "--store-url",
            cluster.store_url,
            "--data-dir",
            str(cluster.data_dir),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "chain intact" in result.stdout and "(postgresql store)" in result.stdout, result.stdout
    return result.stdout


def allows_recorded(records: list[AuditRecord], ids: list[str]) -> list[str]:
    """The ids among ``ids`` that the audit log does not record as an allow."""
    recorded = decisions_in(records)
    return [d for d in ids if recorded.get(d) != "allow"]


def allows_on_task(records: list[AuditRecord], task_id: str) -> int:
    recorded = decisions_in(records)
    task_of = {r.body.get("decision_id"): r.task_id for r in records}
    return sum(1 for d, v in recorded.items() if v == "allow" and task_of[d] == task_id)


# --- the invariants ------------------------------------------------------------------------


def test_a_revocation_on_one_replica_is_refused_by_every_replica_within_a_second(
    cluster: Cluster,
) -> None:
    replicas = cluster.replicas
    failures: list[str] = []
    late_allows: list[Answer] = []
    seen: list[str] = []
    for n in range(6):
        here, there = replicas[n % 3], replicas[(n + 1) % 3]
        agent = f"rogue-{n}"
        headers = cluster.headers(agent)
        task = open_task(here, headers, [CRM])
        body: dict[str, object] = {"grant": task["grant"], **READ}
        load = Load(replicas, {"grant": (headers, body)}).start(3)
        try:
            # Every replica has allowed the grant a few times: its cache holds it, warm.
            load.wait_until(
                "two allows on every replica",
                lambda answers: all(
                    sum(1 for a in answers if a.replica == r.name and allowed(a)) >= 2
                    for r in replicas
                ),
            )
            if n % 2 == 0:  # the agent ends its task on one replica
                revoked = revoke_and_poll(
                    replicas, headers, body, lambda: close_task(here, headers, task["task_id"])
                )
            else:  # a human pulls the kill switch on another
                revoked = revoke_and_poll(
                    replicas, headers, body, lambda: revoke_agent(cluster, there, agent)
                )
            failures += revoked.failures
            after = revoked.confirmed
            load.wait_until(
                "more calls after the refusal",
                lambda answers: sum(1 for a in answers if a.sent > after) >= 6,
            )
        finally:
            load.stop()
        answers = load.snapshot()
        assert {a.status for a in answers} == {200}, [a for a in answers if a.status != 200]
        assert all(allowed(a) or denied_for(a, REFUSED) for a in answers)
        # No allow after every replica refused, nor later than the bound after the revocation.
        late_allows += [a for a in answers if revoked.too_late(a)]
        seen += [str(a.verdict["decision_id"]) for a in answers if a.verdict and allowed(a)]
        if n % 2:  # a revoked agent cannot open a task either, on any replica
            for replica in replicas:
                blocked = httpx.post(
                    f"{replica.base_url}/v1/tasks",
                    json={"intent": INTENT, "scopes": [CRM]},
                    headers=headers,
                    timeout=30,
                )
                assert blocked.status_code == 403, blocked.text
                assert blocked.json()["error"]["code"] == "agent_revoked"
    assert failures == []
    assert late_allows == []
    assert allows_recorded(audit_log(cluster), seen) == []


def test_parallel_calls_across_the_replicas_never_overspend_a_budget(cluster: Cluster) -> None:
    replicas = cluster.replicas
    headers = cluster.headers("spender")
    # 54 calls of 100 records (a read's floor) on a budget of 3000
    limit, each, threads, calls = 3000, 100, 9, 6
    task = open_task(replicas[0], headers, [CRM], budgets={"records": limit})
    body: dict[str, object] = {"grant": task["grant"], "expect": {"records": each}, **READ}
    start = threading.Barrier(threads)
    verdicts: list[dict[str, object]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def spend(n: int) -> None:
        try:
            with ExitStack() as stack:
                http = [stack.enter_context(client(r)) for r in replicas]
                start.wait()
                for i in range(calls):
                    response = http[(n + i) % 3].post("/v1/authorize", json=body, headers=headers)
                    assert response.status_code == 200, response.text
                    with lock:
                        verdicts.append(response.json())
        except BaseException as exc:
            errors.append(exc)

    running = [threading.Thread(target=spend, args=(n,)) for n in range(threads)]
    for t in running:
        t.start()
    for t in running:
        t.join(timeout=60)
        assert not t.is_alive(), "a client hung"
    assert errors == []
    allows = [v for v in verdicts if v["decision"] == "allow"]
    assert len(allows) * each <= limit  # never overspent
    assert len(allows) * each == limit  # and, with no fault, used up exactly
    assert all(codes(v) == ["budget_exceeded"] for v in verdicts if v["decision"] != "allow")
    records = audit_log(cluster)
    assert allows_recorded(records, [str(v["decision_id"]) for v in allows]) == []
    assert allows_on_task(records, task["task_id"]) * each == limit


def test_an_approval_is_used_once_whatever_replica_the_retries_reach(cluster: Cluster) -> None:
    a, b, c = cluster.replicas
    headers = cluster.headers("payer")
    task = open_task(a, headers, [PAY])
    body: dict[str, object] = {"grant": task["grant"], **BIG_TRANSFER}
    asked = httpx.post(f"{a.base_url}/v1/authorize", json=body, headers=headers, timeout=30)
    assert asked.json()["decision"] == "approval_required", asked.text
    approval_id = asked.json()["approval_id"]
    again = httpx.post(f"{b.base_url}/v1/authorize", json=body, headers=headers, timeout=30)
    assert again.json()["approval_id"] == approval_id  # the same pending approval on b
    voted = httpx.post(
        f"{c.base_url}/v1/approvals/{approval_id}/approve",
        json={"reason": "agreed"},
        headers=cluster.approver,
        timeout=30,
    )
    assert voted.status_code == 200 and voted.json()["state"] == "approved", voted.text

    retry: dict[str, object] = {**body, "approval_id": approval_id}
    threads, start = 15, threading.Barrier(15)
    verdicts: list[dict[str, object]] = [{}] * threads

    def call(n: int) -> None:
        replica = cluster.replicas[n % 3]
        with client(replica) as http:
            start.wait()
            verdicts[n] = http.post("/v1/authorize", json=retry, headers=headers).json()

    running = [threading.Thread(target=call, args=(n,)) for n in range(threads)]
    for t in running:
        t.start()
    for t in running:
        t.join(timeout=60)
        assert not t.is_alive(), "a client hung"
    allows = [v for v in verdicts if v.get("decision") == "allow"]
    assert len(allows) == 1, verdicts
    assert all(codes(v)[0] == "approval_used" for v in verdicts if v is not allows[0]), verdicts
    state = httpx.get(
        f"{b.base_url}/v1/approvals/{approval_id}", headers=cluster.approver, timeout=30
    ).json()
    assert state["state"] == "used" and state["used_by"] == allows[0]["decision_id"]
    assert allows_recorded(audit_log(cluster), [str(allows[0]["decision_id"])]) == []


def test_the_audit_log_of_the_three_replicas_is_one_chain(cluster: Cluster) -> None:
    replicas = cluster.replicas
    seen: list[str] = []
    for n, replica in enumerate(replicas):  # a task per replica, used on every replica
        headers = cluster.headers(f"auditee-{n}")
        task = open_task(replica, headers, [CRM])
        for other in replicas:
            verdict = httpx.post(
                f"{other.base_url}/v1/authorize",
                json={"grant": task["grant"], **READ},
                headers=headers,
                timeout=30,
            ).json()
            assert verdict["decision"] == "allow", verdict
            seen.append(str(verdict["decision_id"]))
        close_task(replicas[(n + 1) % 3], headers, task["task_id"])
    records = audit_log(cluster)  # seq 1..head with no gap, each record linked to the last
    assert allows_recorded(records, seen) == []
    assert f"{len(records)} records, chain intact" in verify_with_cli(cluster)


# --- faults --------------------------------------------------------------------------------


@dataclass
class Window:
    """A stretch of the run, by the monotonic clock of this process."""

    start: float
    end: float = float("inf")

    def within(self, answer: Answer) -> bool:
        """Sent and answered inside: the replica handled the call wholly inside the window."""
        return self.start <= answer.sent and answer.received <= self.end

    def overlaps(self, answer: Answer) -> bool:
        return answer.received >= self.start and answer.sent <= self.end


def answered_during(window: Window, replicas: list[Replica], calls: int = 3) -> Condition:
    """Each of ``replicas`` has answered (anything, or nothing) ``calls`` calls sent in
    ``window``: the load really ran against the fault."""

    def check(answers: list[Answer]) -> bool:
        return all(
            sum(1 for x in answers if x.replica == r.name and window.within(x)) >= calls
            for r in replicas
        )

    return check


def test_faults_mid_load_allow_nothing_they_should_not_and_lose_no_decision(
    cluster: Cluster,
) -> None:
    a, b, c = cluster.replicas
    live = [a, b]
    limit = 12  # allowed calls per budget; each budgeted call declares a read's floor, 100
    each = 100
    tasks: dict[str, dict[str, str]] = {}
    revocations: dict[str, Revocation] = {}
    failures: list[str] = []

    def add(load: Load, name: str, agent: str, **extra: object) -> None:
        headers = cluster.headers(agent)
        task = open_task(live[len(tasks) % 2], headers, [CRM], **extra)
        tasks[name] = {**task, "agent": agent}
        body: dict[str, object] = {"grant": task["grant"], **READ}
        if "budgets" in extra:
            body["expect"] = {"records": each}
        load.add(name, headers, body)

    def revoke(load: Load, name: str, by: Replica, *, agent: bool = False) -> None:
        task = tasks[name]
        headers, body = load.items[name]

        def act() -> None:
            if agent:
                revoke_agent(cluster, by, task["agent"])
            else:
                close_task(by, headers, task["task_id"])

        revocations[name] = revoke_and_poll(live, headers, body, act)
        failures.extend(f"{name}: {f}" for f in revocations[name].failures)

    def allows_of(name: str, replica: Replica | None = None, after: float = 0.0) -> Condition:
        return lambda answers: any(
            a.item == name and allowed(a) and a.sent > after
            for a in answers
            if replica is None or a.replica == replica.name
        )

    def exhausted(name: str) -> Condition:
        return lambda answers: any(
            a.item == name and denied_for(a, {"budget_exceeded"}) for a in answers
        )

    load = Load(cluster.replicas, {})
    add(load, "plain", "worker")  # open throughout: allowed whenever the store is up
    add(load, "closed", "closer")  # closed under load, before the faults
    load.start(4)
    pg_down: Window | None = None
    redis_down: Window | None = None
    pg_running = True
    try:
        load.wait_until(
            "allows on every replica",
            lambda answers: all(allows_of("closed", r)(answers) for r in cluster.replicas),
        )
        revoke(load, "closed", a)

        # kill -9 one replica while a budget is being spent through all three.
        add(load, "budget-kill", "spender-1", budgets={"records": limit * each})
        load.wait_until("spending on c", allows_of("budget-kill", c))
        killed_at = time.monotonic()
        os.killpg(c.popen.pid, signal.SIGKILL)  # mid-load, possibly mid-transaction
        assert c.popen.wait(timeout=30) == -signal.SIGKILL
        load.wait_until(
            "a call on the dead replica",
            lambda answers: any(
                x.replica == c.name and x.status is None and x.sent > killed_at for x in answers
            ),
        )
        load.retire(c.name)  # as a load balancer would, once its health check failed
        load.wait_until("budget-kill used up", exhausted("budget-kill"))

        # Redis stopped for ~2 s: the replicas read the database; revocations still hold.
        add(load, "redis-close", "closer-2")
        add(load, "redis-rogue", "rogue")
        load.wait_until(
            "warm caches",
            lambda answers: all(
                allows_of(name, r)(answers) for name in ("redis-close", "redis-rogue") for r in live
            ),
        )
        cluster.redis.stop()
        redis_down = Window(time.monotonic())
        add(
            load, "budget-redis", "spender-2", budgets={"records": limit * each}
        )  # spent while down
        revoke(load, "redis-close", b)
        revoke(load, "redis-rogue", a, agent=True)
        # The outage lasts until every replica has answered calls sent during it.
        load.wait_until("calls answered without Redis", answered_during(redis_down, live))
        load.wait_until("budget-redis used up", exhausted("budget-redis"))
        redis_down.end = time.monotonic()
        cluster.redis.start()  # the same port, empty
        wait_subscribed(cluster.redis, len(live))  # the replicas subscribe again by themselves
        add(load, "redis-back-close", "closer-3")  # and revocations go through the caches again
        load.wait_until(
            "warm caches again",
            lambda answers: all(allows_of("redis-back-close", r)(answers) for r in live),
        )
        revoke(load, "redis-back-close", a)

        # PostgreSQL restarted while a budget is being spent.
        add(load, "budget-pg", "spender-3", budgets={"records": limit * each})
        load.wait_until("spending before the restart", allows_of("budget-pg"))
        pg_stopping = time.monotonic()
        pg_running = False
        cluster.postgres.stop()
        pg_down = Window(time.monotonic())
        for replica in live:  # fail-closed: not ready, and no new task
            ready = httpx.get(f"{replica.base_url}/readyz", timeout=30)
            assert ready.status_code == 503, ready.text
            assert ready.json()["error"]["code"] == "store_unavailable"
            refused = httpx.post(
                f"{replica.base_url}/v1/tasks",
                json={"intent": INTENT, "scopes": [CRM]},
                headers=cluster.headers("worker"),
                timeout=30,
            )
            assert refused.status_code == 503, refused.text
        # The outage lasts until every replica has answered calls sent during it.
        load.wait_until("calls answered without PostgreSQL", answered_during(pg_down, live))
        pg_down.end = time.monotonic()
        cluster.postgres.start()
        pg_running = True
        for replica in live:  # no restart: they reconnect by themselves
            _wait_ready(replica, RECOVERY_SECONDS)
        recovered = time.monotonic()
        for replica in live:
            load.wait_until(
                f"{replica.name} allowing again", allows_of("plain", replica, recovered)
            )
        load.wait_until("budget-pg used up", exhausted("budget-pg"))
    finally:
        load.stop()
        if not cluster.redis.running:
            cluster.redis.start()
        if not pg_running:
            cluster.postgres.start()

    answers = load.snapshot()
    assert pg_down is not None and redis_down is not None
    outage = Window(pg_stopping, recovered)  # from the stop called to every replica ready again
    assert failures == []  # invariant 1, under load, with Redis up and with Redis down
    unexpected: list[Answer] = []
    for ans in answers:
        if ans.status is None:  # no decision: only the killed replica may fail to answer
            if not (ans.replica == c.name and ans.received >= killed_at):
                unexpected.append(ans)
            continue
        if ans.status != 200:  # a 5xx is a refusal too, but only while the store is away
            if not (ans.status >= 500 and outage.overlaps(ans)):
                unexpected.append(ans)
            continue
        assert ans.verdict is not None
        if allowed(ans):
            continue
        reasons: set[str] = set(OUTAGE_CODES) if outage.overlaps(ans) else set()
        if ans.item.startswith("budget-"):
            reasons.add("budget_exceeded")
        if ans.item in revocations:
            reasons |= REFUSED
        if not denied_for(ans, reasons):
            unexpected.append(ans)  # a valid call denied, or denied for the wrong reason
    assert unexpected == [], unexpected[:10]

    # Nothing was allowed that should not have been: not while PostgreSQL was down, ...
    during_pg = [x for x in answers if pg_down.within(x)]
    assert during_pg and not any(allowed(x) for x in during_pg)
    # ... not a revoked grant, ...
    late = [x for x in answers if x.item in revocations and revocations[x.item].too_late(x)]
    assert late == []
    # ... not past a budget, as the clients saw it.
    for name in ("budget-kill", "budget-redis", "budget-pg"):
        assert sum(1 for x in answers if x.item == name and allowed(x)) <= limit, name
    # Without Redis the replicas kept answering (from the database), and allowing what is valid.
    during_redis = [x for x in answers if redis_down.within(x)]
    assert during_redis and all(x.status == 200 for x in during_redis)
    assert any(allowed(x) and x.item == "plain" for x in during_redis)
    # The killed replica answered before it died; the calls sent to it after had no decision.
    assert any(x.replica == c.name and allowed(x) for x in answers)
    assert any(x.replica == c.name and x.status is None for x in answers)

    # One chain, every allow a client saw recorded, no budget overspent by what was recorded.
    records = audit_log(cluster)
    verify_with_cli(cluster)
    seen_ids = [str(x.verdict["decision_id"]) for x in answers if x.verdict and allowed(x)]
    assert allows_recorded(records, seen_ids) == []
    for name in ("budget-kill", "budget-redis", "budget-pg"):
        assert allows_on_task(records, tasks[name]["task_id"]) == limit, name
