"""Authorize decisions per second over HTTP with durable audit, against the floor of the HTTP stack.

    .venv/bin/python bench/throughput.py [--quick] [--rounds 3] [--seconds 5] [--concurrency 16]
                                         [--scenarios floor,sqlite,postgres]
                                         [--store-url postgresql://...]
                                         [--baseline-src OLD/src] [--log-level info]

Three servers run side by side on 127.0.0.1, each a real process:

  floor   a trivial ASGI app (``bench/_floor.py``: read the body, answer 200 with a small JSON
          body) under ``uvicorn.run`` with the arguments ``tether serve`` passes: one process, one
          worker, the same event loop and HTTP implementation. What HTTP on this stack can do.
  A       ``tether serve``, 1 replica, the embedded SQLite store in a fresh data directory.
  A0      (``--baseline-src OLD/src --scenarios floor,baseline,sqlite``) A, with tether imported
          from another source tree: the code before a change, interleaved with the code after.
  B       ``tether serve``, 2 replicas on one PostgreSQL database and one data directory, as
          behind a load balancer; the load alternates its connections between them.
  B0      (``--baseline-src OLD/src --scenarios floor,baseline-postgres,postgres``) B, with
          tether from the other source tree, on a database of its own on the same server.

Each ``tether serve`` runs as it ships: at its default log level, ``info``, a JSON line per
decision to its stderr (a file here); ``--log-level warning`` measures it without them.

For A and B the agent ``analyst`` gets a JWT-SVID from the development issuer of the data directory
(what ``tether dev svid`` prints) and opens one task per connection (``POST /v1/tasks``, over
HTTP); then the load sends ``POST /v1/authorize`` for the allowed ``crm.query`` read of the example
policies. So every call does the whole job: SVID and grant verification, the grant and task reads,
scope and Cedar, and the decision's audit record committed before the answer. The floor gets the
very same request bytes.

The load is a second process (``bench/_loadgen.py``) holding ``--concurrency`` keep-alive
connections, one request in flight on each. Rounds are interleaved (floor, A, B, floor, A, B, ...,
after one warm-up round each), so the shared machine's noise falls on all three alike; the report
gives per-round rates, their medians, p50/p99 latency over every round's requests, each
scenario's ratio to the floor (ratio of the medians, with the range of the per-round ratios), and
the CPU the servers and the load used (server CPU per request is the figure least moved by other
work on the machine; a load process near 100% of a core would mean the load, not the server,
bounded the rate). Server CPU counts tether's processes only; for B and B0 PostgreSQL's CPU per
request is a column of its own (all of the server's processes during the round, backends and
background alike, read from ``/proc`` when the server runs on this machine).
Quote the ratios, with the CPU count, not the absolute rates: the load, the servers and PostgreSQL
share the machine. The issue's target is 1 replica at >= 50% of the floor; the script says whether
this run meets it and asserts nothing.

Without ``--store-url`` B gets a throw-away PostgreSQL cluster on loopback from the test suite's
helper (``tests/pg_server.py``, via ``bench/_servers.py``), restarted with the production defaults
``fsync``, ``synchronous_commit`` and ``full_page_writes`` on (the helper turns them off for
tests), so its audit is as durable as a production commit. SQLite runs as tether ships it: WAL
with ``synchronous = NORMAL`` (a commit survives the process crashing, not the machine losing
power). The report prints the settings each store actually ran with.

Every process and temporary directory is removed at the end, on an error and on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import httpx
import psycopg
from _servers import (
    cpu_times,
    postgres_settings,
    processes_cpu,
    server_env,
    stack_description,
    start_server,
    stop,
    tether_command,
    throwaway_postgres,
)
from psycopg import sql
from sqlalchemy import make_url

from tether.runtime import RuntimeConfig, dev_issuer

BENCH = Path(__file__).resolve().parent
INTENT = {"workflow": "support-triage", "purpose": "measure", "on_behalf_of": "user:bench"}
SCOPE = {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}
READ = {"tool": "crm.query", "action": "read", "dataset": "crm"}
FLOOR, SQLITE, POSTGRES = "floor", "sqlite", "postgres"
SCENARIOS = (FLOOR, SQLITE, POSTGRES)
#: A and B, run from another copy of tether's source (``--baseline-src``): before and after a
#: change, interleaved in one run.
BASELINE, BASELINE_POSTGRES = "baseline", "baseline-postgres"
SHORT = {FLOOR: "floor", SQLITE: "A", POSTGRES: "B", BASELINE: "A0", BASELINE_POSTGRES: "B0"}
TARGET = 0.50  # issue 11: one replica at >= 50% of the floor's throughput
HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # ignored while the clean-up runs


@dataclass(frozen=True)
class Scenario:
    """A server set-up under load: where the connections go and what a right answer is."""

    name: str
    label: str
    #: One ready-made HTTP/1.1 request per connection, with the port it goes to.
    connections: list[tuple[int, str]]
    answer_key: str
    expected: str
    #: The server processes (not PostgreSQL's), whose CPU time a round reports.
    server_pids: list[int]
    #: The PostgreSQL database the servers use (B, B0; a URL), whose backends' CPU a round
    #: reports.
    database: str | None = None


@dataclass
class Round:
    """One scenario's measured round, as the load process reported it."""

    scenario: str
    elapsed: float
    sent: int
    answered: int
    statuses: dict[str, int]
    answers: dict[str, int]
    latencies_ms: list[float]
    load_cpu_seconds: float
    reconnects: int
    errors: list[str]
    expected: str
    #: Share of the whole machine's CPU time that was busy during the round (Linux), or None.
    machine_busy: float | None = None
    #: CPU seconds the scenario's server processes used during the round (Linux), or None.
    server_cpu_seconds: float | None = None
    #: CPU seconds PostgreSQL used during the round, all its processes (:class:`PostgresCpu`);
    #: None without a database, or when the server's processes are not on this machine.
    pg_cpu_seconds: float | None = None

    @property
    def rate(self) -> float:
        return self.answered / self.elapsed

    @property
    def load_cpu(self) -> float:
        """The load process's CPU time as a share of one core over the round."""
        return self.load_cpu_seconds / self.elapsed

    @property
    def server_cpu(self) -> float | None:
        """The server processes' CPU time as a share of one core over the round."""
        if self.server_cpu_seconds is None:
            return None
        return self.server_cpu_seconds / self.elapsed

    def problems(self) -> list[str]:
        """Everything that makes this round's count not a count of right answers."""
        found = [f"{e}" for e in self.errors]
        if self.answered != self.sent:
            found.append(f"{self.sent} sent but {self.answered} answered")
        wrong_status = {s: n for s, n in self.statuses.items() if s != "200"}
        if wrong_status:
            found.append(f"statuses other than 200: {wrong_status}")
        wrong = {a: n for a, n in self.answers.items() if a != self.expected}
        if wrong:
            found.append(f"answers other than {self.expected!r}: {wrong}")
        return found


@dataclass
class Results:
    """Every measured round per scenario, in the order they ran, and what ran them."""

    rounds: dict[str, list[Round]]
    labels: dict[str, str]
    concurrency: int
    #: How a round ends: "5 s", "40 requests".
    round_length: str
    notes: list[str] = field(default_factory=list)


class PostgresCpu:
    """CPU time of a local PostgreSQL server, every process of it, from ``/proc``.

    The pool opens and closes connections under load, so backends come and go within a round:
    the total is the postmaster's own time, the time of its children it has reaped (``cutime``,
    ``cstime``) and the time of those alive. Rounds run one at a time, so what the server used
    in a round is that round's (the other scenario's connections sit idle meanwhile)."""

    def __init__(self, stack: ExitStack) -> None:
        self._conns: dict[str, psycopg.Connection[Any]] = {}
        stack.callback(self.close)

    def snapshot(self, database_url: str) -> float | None:
        """CPU seconds the server used so far, but for this probe's own backend."""
        conn = self._conns.get(database_url)
        if conn is None:
            libpq = make_url(database_url).set(drivername="postgresql")
            conn = psycopg.connect(libpq.render_as_string(hide_password=False), autocommit=True)
            self._conns[database_url] = conn
        me = conn.info.backend_pid
        try:
            postmaster = int(_stat(me)[1])
            own = _stat(postmaster)
            total = sum(int(v) for v in own[11:15])  # utime, stime, cutime, cstime
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit() or int(entry.name) in (me, postmaster):
                    continue
                with suppress(OSError, IndexError, ValueError):
                    fields = _stat(int(entry.name))
                    if int(fields[1]) == postmaster:
                        total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            return None  # not on this machine, or not Linux
        return total / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (the 3rd field first)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def pg_cpu_between(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


class LoadProcess:
    """The second process that generates the load (``bench/_loadgen.py``), one round at a time."""

    def __init__(self, stack: ExitStack) -> None:
        self._process = subprocess.Popen(
            [sys.executable, str(BENCH / "_loadgen.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        stack.callback(self.close)

    def run(
        self,
        scenario: Scenario,
        *,
        seconds: float | None,
        requests: int | None,
        pg: PostgresCpu | None = None,
    ) -> Round:
        assert self._process.stdin is not None and self._process.stdout is not None
        probe = pg if scenario.database is not None else None
        pg_before = None if probe is None else probe.snapshot(str(scenario.database))
        spec = {
            "connections": [
                {"host": "127.0.0.1", "port": port, "request": request}
                for port, request in scenario.connections
            ],
            "seconds": seconds,
            "requests": requests,
            "answer_key": scenario.answer_key,
            "timeout": (seconds or 0) + 300,
        }
        before, servers_before = cpu_times(), processes_cpu(scenario.server_pids)
        self._process.stdin.write(json.dumps(spec) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        after, servers_after = cpu_times(), processes_cpu(scenario.server_pids)
        pg_after = None if probe is None else probe.snapshot(str(scenario.database))
        if not line:
            raise RuntimeError(f"the load process exited with {self._process.wait()}")
        answer = json.loads(line)
        if "fatal" in answer:
            raise RuntimeError(f"the load process failed on {scenario.name}: {answer['fatal']}")
        busy = None
        if before is not None and after is not None and after[1] > before[1]:
            busy = (after[0] - before[0]) / (after[1] - before[1])
        return Round(
            scenario=scenario.name,
            elapsed=answer["elapsed"],
            sent=answer["sent"],
            answered=answer["answered"],
            statuses=answer["statuses"],
            answers=answer["answers"],
            latencies_ms=answer["latencies_ms"],
            load_cpu_seconds=answer["cpu_seconds"],
            reconnects=answer["reconnects"],
            errors=answer["errors"],
            expected=scenario.expected,
            machine_busy=busy,
            server_cpu_seconds=(
                servers_after - servers_before
                if servers_before is not None and servers_after is not None
                else None
            ),
            pg_cpu_seconds=pg_cpu_between(pg_before, pg_after),
        )

    def close(self) -> None:
        stdin = self._process.stdin
        if stdin is not None and not stdin.closed:
            with suppress(OSError):  # it may be gone already
                stdin.close()  # end of rounds: the process exits by itself
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            stop(self._process)
        if self._process.stdout is not None:
            self._process.stdout.close()


# --- scenarios -----------------------------------------------------------------------------------


def http_request(port: int, svid: str, body: dict[str, Any]) -> str:
    text = json.dumps(body, separators=(",", ":"))  # ASCII: characters are bytes
    return (
        f"POST /v1/authorize HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {svid}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(text)}\r\n\r\n{text}"
    )


def agent_requests(data_dir: Path, ports: Sequence[int], concurrency: int) -> list[tuple[int, str]]:
    """The agent's SVID, one task per connection opened over HTTP, and the authorize requests
    (connection ``n`` goes to ``ports[n % len(ports)]``; tasks are all opened on the first)."""
    issuer = dev_issuer(RuntimeConfig(data_dir=data_dir, environ={}))
    svid = issuer.mint_svid("analyst", audience="tether", now=datetime.now(UTC), ttl_seconds=3600)
    requests = []
    with httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}", timeout=30) as http:
        for n in range(concurrency):
            opened = http.post(
                "/v1/tasks",
                json={"intent": INTENT, "scopes": [SCOPE], "ttl_seconds": 3600},
                headers={"Authorization": f"Bearer {svid}"},
            )
            if opened.status_code != 201:
                raise RuntimeError(f"opening a task failed ({opened.status_code}): {opened.text}")
            port = ports[n % len(ports)]
            requests.append(
                (port, http_request(port, svid, {"grant": opened.json()["grant"], **READ}))
            )
    return requests


def set_up(
    stack: ExitStack,
    names: Sequence[str],
    concurrency: int,
    store_url: str | None,
    baseline_src: Path | None = None,
    log_level: str = "info",
) -> tuple[list[Scenario], list[str]]:
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tether-throughput-")))
    built: dict[str, Scenario] = {}
    notes: list[str] = []
    if SQLITE in names:
        data = workdir / "sqlite"
        port, pid = start_server(
            stack, tether_command(data, log_level), server_env(), workdir / "sqlite.log"
        )
        built[SQLITE] = Scenario(
            SQLITE,
            "1 replica, SQLite (WAL, synchronous=NORMAL)",
            agent_requests(data, [port], concurrency),
            "decision",
            "allow",
            [pid],
        )
    if BASELINE in names:
        if baseline_src is None:
            raise ValueError("the baseline scenario needs --baseline-src")
        data = workdir / "baseline"
        env = server_env(PYTHONPATH=str(baseline_src))
        port, pid = start_server(
            stack, tether_command(data, log_level), env, workdir / "baseline.log"
        )
        built[BASELINE] = Scenario(
            BASELINE,
            f"1 replica, SQLite, tether from {baseline_src}",
            agent_requests(data, [port], concurrency),
            "decision",
            "allow",
            [pid],
        )
    if POSTGRES in names or BASELINE_POSTGRES in names:
        url = store_url or stack.enter_context(throwaway_postgres())
        notes.append(f"PostgreSQL: {postgres_settings(url)}")
    for name in (BASELINE_POSTGRES, POSTGRES):
        if name not in names:
            continue
        env = server_env(TETHER_DATABASE_URL=url)
        database = url
        label = "2 replicas, PostgreSQL"
        if name == BASELINE_POSTGRES:
            if baseline_src is None:
                raise ValueError("the baseline-postgres scenario needs --baseline-src")
            beside = database_beside(url, "baseline")
            database = beside
            env = server_env(TETHER_DATABASE_URL=beside, PYTHONPATH=str(baseline_src))
            label = f"{label}, tether from {baseline_src}, a database of its own"
        data = workdir / name
        # One after the other: the first start creates the keys and the schema.
        started = [
            start_server(stack, tether_command(data, log_level), env, workdir / f"{name}-{n}.log")
            for n in (1, 2)
        ]
        built[name] = Scenario(
            name,
            label,
            agent_requests(data, [port for port, _ in started], concurrency),
            "decision",
            "allow",
            [pid for _, pid in started],
            database,
        )
    if FLOOR in names:
        command = [sys.executable, str(BENCH / "_floor.py")]
        port, pid = start_server(stack, command, server_env(), workdir / "floor.log")
        sample = next(iter(built.values()), None)
        if sample is None:  # no tether scenario: a request of the same shape and size
            body = {"grant": "x" * 600, **READ}
            requests = [(port, http_request(port, "x" * 300, body))] * concurrency
        else:  # the very same bytes the first tether scenario sends
            requests = [(port, sample.connections[0][1])] * concurrency
        built[FLOOR] = Scenario(
            FLOOR, f"trivial ASGI app, {stack_description()}", requests, "status", "ok", [pid]
        )
    return [built[name] for name in names], notes


def database_beside(url: str, suffix: str) -> str:
    """The URL of a new, empty database named after ``url``'s with ``suffix``, on its server."""
    parsed = make_url(url)
    name = f"{parsed.database}_{suffix}"
    libpq = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return parsed.set(database=name).render_as_string(hide_password=False)


# --- the measurement -----------------------------------------------------------------------------


def measure(
    names: Sequence[str] = SCENARIOS,
    *,
    rounds: int = 3,
    seconds: float | None = 5.0,
    requests: int | None = None,
    warmup: float = 1.0,
    concurrency: int = 16,
    store_url: str | None = None,
    baseline_src: Path | None = None,
    log_level: str = "info",
) -> Results:
    """Start the servers and the load process, run the rounds interleaved, stop everything.

    A round lasts ``seconds``, or ends after ``requests`` requests in all (whichever is set, or
    first). ``names`` is a subset of :data:`SCENARIOS`, run in that order in every round.
    """
    unknown = set(names) - {*SCENARIOS, BASELINE, BASELINE_POSTGRES}
    if unknown or not names:
        raise ValueError(f"scenarios are some of {', '.join(SCENARIOS)}, not {sorted(unknown)}")
    if seconds is None and requests is None:
        raise ValueError("a round needs seconds or requests")
    held = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.getsignal(sig) for sig in HELD} if held else {}
    try:
        with ExitStack() as stack:
            try:
                return _run(
                    stack,
                    names,
                    rounds,
                    seconds,
                    requests,
                    warmup,
                    concurrency,
                    store_url,
                    baseline_src,
                    log_level,
                )
            finally:
                # A second Ctrl-C must not cut the clean-up short and leave a server running.
                for sig in previous:
                    signal.signal(sig, signal.SIG_IGN)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(
    stack: ExitStack,
    names: Sequence[str],
    rounds: int,
    seconds: float | None,
    requests: int | None,
    warmup: float,
    concurrency: int,
    store_url: str | None,
    baseline_src: Path | None,
    log_level: str,
) -> Results:
    scenarios, notes = set_up(stack, names, concurrency, store_url, baseline_src, log_level)
    load = LoadProcess(stack)
    pg = PostgresCpu(stack)
    if warmup > 0:
        for scenario in scenarios:
            load.run(scenario, seconds=warmup, requests=None, pg=pg)
    results = Results(
        rounds={s.name: [] for s in scenarios},
        labels={s.name: s.label for s in scenarios},
        concurrency=concurrency,
        round_length=" or ".join(
            ([f"{seconds:g} s"] if seconds is not None else [])
            + ([f"{requests} requests"] if requests is not None else [])
        ),
        notes=notes,
    )
    for _ in range(rounds):  # interleaved: every scenario once per round, in the same order
        for scenario in scenarios:
            results.rounds[scenario.name].append(
                load.run(scenario, seconds=seconds, requests=requests, pg=pg)
            )
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- the report ----------------------------------------------------------------------------------


def report(results: Results, out: TextIO = sys.stdout) -> None:
    def say(text: str = "") -> None:
        out.write(text + "\n")

    names = list(results.rounds)
    count = len(results.rounds[names[0]])
    say(
        "POST /v1/authorize (an allowed crm.query read; its audit record committed before the "
        f"answer) from a separate load process, {results.concurrency} keep-alive connections;"
    )
    say(
        f"{count} x {results.round_length} rounds interleaved "
        f"({', '.join(SHORT[n] for n in names)}, ...); loopback; {os.cpu_count()} CPUs shared "
        "by the load, the servers and PostgreSQL"
    )
    for name in names:
        say(f"  {SHORT[name]:<6} {results.labels[name]}")
    for note in results.notes:
        say(f"  {note}")
    say()
    say(f"{'round':<8}" + "".join(f"{SHORT[n] + ' /s':>12}" for n in names))
    for n in range(count):
        say(f"{n + 1:<8}" + "".join(f"{results.rounds[name][n].rate:>12.0f}" for name in names))
    medians = {n: statistics.median(r.rate for r in results.rounds[n]) for n in names}
    say(f"{'median':<8}" + "".join(f"{medians[n]:>12.0f}" for n in names))
    say()
    say(
        f"{'':<8}{'decisions/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'/ floor':>9}  {'(per round)':<13}"
        f"{'server CPU':>11}{'CPU ms/req':>11}{'PG ms/req':>10}{'load CPU':>9}{'machine':>9}"
    )
    for name in names:
        rounds = results.rounds[name]
        latencies = [ms for r in rounds for ms in r.latencies_ms]
        ratio, spread = "", ""
        if FLOOR in medians:
            ratio = f"{medians[name] / medians[FLOOR]:.2f}"
            paired = [r.rate / f.rate for r, f in zip(rounds, results.rounds[FLOOR], strict=True)]
            spread = f"({min(paired):.2f}-{max(paired):.2f})"
        busy = [r.machine_busy for r in rounds if r.machine_busy is not None]
        machine = f"{statistics.median(busy):.0%}" if busy else "?"
        load_cpu = statistics.median(r.load_cpu for r in rounds)
        server_cpu, per_request = "?", "?"
        if all(r.server_cpu_seconds is not None for r in rounds):
            server_cpu = f"{statistics.median(r.server_cpu or 0.0 for r in rounds):.0%}"
            per_request = f"{statistics.median(cpu_ms_per_request(r) for r in rounds):.2f}"
        pg_per_request = "-"
        if all(r.pg_cpu_seconds is not None for r in rounds):
            pg_per_request = f"{statistics.median(pg_ms_per_request(r) for r in rounds):.2f}"
        say(
            f"{SHORT[name]:<8}{medians[name]:>12.0f}{percentile(latencies, 0.5):>9.1f}"
            f"{percentile(latencies, 0.99):>9.1f}{ratio:>9}  {spread:<13}"
            f"{server_cpu:>11}{per_request:>11}{pg_per_request:>10}{load_cpu:>9.0%}{machine:>9}"
        )
    say("decisions/s, / floor and the CPU figures are medians over rounds; latency is over every")
    say("request. CPU is a share of one core: server CPU of the scenario's server processes")
    say(
        "(PostgreSQL's not included), load CPU of the load process (near 100%: the load bounded the"
    )
    say("rate); machine is the share of all CPUs busy, whoever used them. PG ms/req: PostgreSQL's")
    say("CPU per request (all its processes during the round), when it runs on this machine.")
    cost = {
        name: statistics.median(cpu_ms_per_request(r) for r in results.rounds[name])
        for name in names
        if all(r.server_cpu_seconds is not None for r in results.rounds[name])
    }
    if FLOOR in cost and cost[FLOOR] > 0 and len(cost) > 1:
        say(
            "server CPU per request against the floor's, and in brackets the rate ratio that "
            "gives at equal server CPU: "
            + ", ".join(
                f"{SHORT[n]} {cost[n] / cost[FLOOR]:.1f}x ({cost[FLOOR] / cost[n]:.2f})"
                for n in names
                if n != FLOOR and cost[n] > 0
            )
        )
    if BASELINE in medians and SQLITE in medians:
        after = f"A / A0 (after / before): {medians[SQLITE] / medians[BASELINE]:.2f}x the rate"
        if cost.get(BASELINE) and cost.get(SQLITE):
            after += f", {cost[SQLITE] / cost[BASELINE]:.2f}x the server CPU per request"
        say(after)
    if BASELINE_POSTGRES in medians and POSTGRES in medians:
        after = f"B / B0 (after / before): {medians[POSTGRES] / medians[BASELINE_POSTGRES]:.2f}x"
        if cost.get(BASELINE_POSTGRES) and cost.get(POSTGRES):
            after += f", {cost[POSTGRES] / cost[BASELINE_POSTGRES]:.2f}x the server CPU per request"
        say(after)
    if FLOOR in medians and SQLITE in medians:
        share = medians[SQLITE] / medians[FLOOR]
        verdict = "meets" if share >= TARGET else "does NOT meet"
        say(f"\ntarget 1 replica >= {TARGET:.0%} of the floor: {share:.0%}, {verdict} the target")


def pg_ms_per_request(r: Round) -> float:
    return 1000 * (r.pg_cpu_seconds or 0.0) / max(r.answered, 1)


def cpu_ms_per_request(r: Round) -> float:
    return 1000 * (r.server_cpu_seconds or 0.0) / max(r.answered, 1)


def check(results: Results) -> list[str]:
    """Every way a round's count is not a count of right answers, one line each."""
    return [
        f"{SHORT[name]} round {n}: {problem}"
        for name, rounds in results.rounds.items()
        for n, r in enumerate(rounds, start=1)
        for problem in r.problems()
    ]


class Terminated(Exception):
    """SIGTERM or SIGHUP: unwind as Ctrl-C does, so every process and directory is removed."""


def _terminated(signum: int, _: FrameType | None) -> None:
    raise Terminated(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run: 2 x 1 s rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a round")
    parser.add_argument("--warmup", type=float, default=1.0, help="one round each before")
    parser.add_argument("--concurrency", type=int, default=16, help="connections in flight")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--store-url", help="an empty PostgreSQL database for B instead")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="another tether source tree (its src/ directory) for the scenarios 'baseline' (A0) "
        "and 'baseline-postgres' (B0): A and B as that code runs them, interleaved with A and B, "
        "e.g. --scenarios floor,baseline,sqlite or floor,baseline-postgres,postgres",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        help="tether serve's --log-level (info, its default, logs a line per decision)",
    )
    options = parser.parse_args(argv)
    if options.quick:
        options.rounds, options.seconds, options.warmup = 2, 1.0, 0.5
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGHUP, _terminated)
    names = [n.strip() for n in options.scenarios.split(",") if n.strip()]
    try:
        results = measure(
            names,
            rounds=options.rounds,
            seconds=options.seconds,
            warmup=options.warmup,
            concurrency=options.concurrency,
            store_url=options.store_url,
            baseline_src=options.baseline_src,
            log_level=options.log_level,
        )
    except (KeyboardInterrupt, Terminated) as stopped:
        why = f"{stopped}" if isinstance(stopped, Terminated) else "Ctrl-C"
        print(
            f"stopped by {why}; the servers and temporary directories are removed", file=sys.stderr
        )
        return 130
    report(results)
    problems = check(results)
    for problem in problems:
        print(f"WRONG: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
