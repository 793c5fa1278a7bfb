"""``tether audit tail --follow``: a real ``tether`` process follows a real store (the data
directory's SQLite, or PostgreSQL through ``--store-url``) while a real server writes to it; each
record shows once committed, in order, never twice; SIGINT, SIGTERM and a reader that goes away
end it cleanly (status 0, nothing on stderr)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pg_server import PostgresServer, postgres_server
from replicas.harness import CRM, READ, Agents, fresh_database, open_task, running_replicas
from support import Agent
from tether.runtime import Runtime
from tether.service.clock import ManualClock

__all__ = ["postgres_server"]

ANALYST = "spiffe://tether.local/agent/analyst"
#: Long enough for a loaded machine; the test waits on lines, never for this long unless broken.
PATIENCE = 60.0


class Follower:
    """``tether audit tail --follow --json`` in its own process, its lines on a queue."""

    def __init__(self, args: list[str], home: Path, env: dict[str, str] | None = None) -> None:
        command = [sys.executable, "-m", "tether", "audit", "tail", "--follow"]
        self.process = subprocess.Popen(
            [*command, "--interval", "0.05", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={"PATH": "/usr/bin:/bin", "HOME": str(home), **(env or {})},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        stdout = self.process.stdout
        assert stdout is not None
        threading.Thread(target=self._pump, args=(stdout,), daemon=True).start()

    def _pump(self, stream: Iterator[str]) -> None:
        try:
            for line in stream:
                self.lines.put(line)
        except (OSError, ValueError):
            return  # the test closed the pipe (a reader that went away)

    def records(self, count: int) -> list[dict[str, object]]:
        """The next ``count`` records it prints with ``--json`` (waiting for each)."""
        return [json.loads(line) for line in self.next(count)]

    def next(self, count: int) -> list[str]:
        """The next ``count`` lines it prints (waiting for each)."""
        return [self.lines.get(timeout=PATIENCE) for _ in range(count)]

    def stop(self, signum: int) -> tuple[int, str]:
        """Send ``signum``; its exit status and what it wrote on stderr."""
        self.process.send_signal(signum)
        return self.ended()

    def ended(self) -> tuple[int, str]:
        status = self.process.wait(timeout=PATIENCE)
        assert self.process.stderr is not None
        return status, self.process.stderr.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def follow(tmp_path: Path) -> Iterator[Callable[..., Follower]]:
    started: list[Follower] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> Follower:
        started.append(Follower(args, tmp_path, env))
        return started[-1]

    yield start
    for follower in started:
        follower.kill()


def _populate(analyst: Agent) -> None:
    """Three records: the task opened, a decision, the task closed."""
    task = analyst.open_task([CRM]).json()
    assert analyst.authorize(task["grant"], **READ).json()["decision"] == "allow"
    assert analyst.close(task["task_id"]).status_code == 200


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_follow_prints_records_as_a_server_commits_them(
    analyst: Agent, runtime: Runtime, follow: Callable[..., Follower], signum: int
) -> None:
    _populate(analyst)
    follower = follow(["--json", "-n", "2", "-d", str(runtime.config.data_dir)])
    assert [r["seq"] for r in follower.records(2)] == [2, 3]  # the newest two, then it follows
    _populate(analyst)  # written while it follows
    written = follower.records(3)
    assert [r["seq"] for r in written] == [4, 5, 6]
    assert [r["kind"] for r in written] == ["task_opened", "decision", "task_closed"]
    assert all(r["agent"] == ANALYST and r["hash"] for r in written)
    _populate(analyst)
    assert [r["seq"] for r in follower.records(3)] == [7, 8, 9]

    status, errors = follower.stop(signum)
    assert (status, errors) == (0, "")
    assert follower.lines.empty()  # nothing printed twice


def test_follow_in_a_pipe_prints_a_header_then_tab_separated_rows(
    analyst: Agent, runtime: Runtime, follow: Callable[..., Follower]
) -> None:
    _populate(analyst)
    follower = follow(["-n", "1", "-d", str(runtime.config.data_dir)])
    header, first = (line.rstrip("\n").split("\t") for line in follower.next(2))
    assert header == ["seq", "at", "kind", "agent", "what"]  # as `audit tail` prints it
    assert first[0] == "3" and first[2] == "task_closed"
    _populate(analyst)
    rows = [line.rstrip("\n").split("\t") for line in follower.next(3)]
    assert [(row[0], row[2], row[3]) for row in rows] == [
        ("4", "task_opened", ANALYST),
        ("5", "decision", ANALYST),
        ("6", "task_closed", ANALYST),
    ]
    assert "read crm.query → allow" in rows[1][4]
    assert follower.stop(signal.SIGINT) == (0, "")


def test_follow_ends_quietly_when_its_reader_goes_away(
    analyst: Agent, runtime: Runtime, follow: Callable[..., Follower]
) -> None:
    _populate(analyst)
    follower = follow(["--json", "-n", "1", "-d", str(runtime.config.data_dir)])
    assert [r["seq"] for r in follower.records(1)] == [3]
    reader = follower.process.stdout
    assert reader is not None
    os.close(reader.fileno())  # as `| head -n 1` does once it has its line
    # The next write finds the pipe closed. (The pump thread's read, blocked when the fd was
    # closed, keeps the pipe open until it returns: the first write after the close may still
    # be taken by it. So records are written until the follower has ended, each round bounded.)
    deadline = time.monotonic() + PATIENCE
    while follower.process.poll() is None and time.monotonic() < deadline:
        _populate(analyst)
        with contextlib.suppress(subprocess.TimeoutExpired):
            follower.process.wait(timeout=0.2)
    status, errors = follower.ended()
    assert (status, errors) == (0, "")


@pytest.fixture
def store_url(postgres_server: PostgresServer) -> Iterator[str]:
    with fresh_database(postgres_server) as url:
        yield url


def test_follow_reads_a_postgresql_store(
    tmp_path: Path, store_url: str, clock: ManualClock, follow: Callable[..., Follower]
) -> None:
    with running_replicas(tmp_path / "data", store_url, clock, 1) as (replica,):
        agents = Agents([replica], "analyst", clock)
        try:
            analyst = agents.on[0]
            task = open_task(analyst, [CRM])
            # The URL in the environment, as operators pass it (a command line is visible).
            follower = follow(["--json", "-n", "5"], env={"TETHER_DATABASE_URL": store_url})
            assert [r["kind"] for r in follower.records(1)] == ["task_opened"]
            assert analyst.authorize(task["grant"], **READ).json()["decision"] == "allow"
            assert analyst.close(task["task_id"]).status_code == 200
            assert [(r["seq"], r["kind"]) for r in follower.records(2)] == [
                (2, "decision"),
                (3, "task_closed"),
            ]
        finally:
            agents.close()
    assert follower.stop(signal.SIGTERM) == (0, "")
