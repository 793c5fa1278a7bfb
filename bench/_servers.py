"""The servers ``bench/throughput.py`` measures, started as real processes on 127.0.0.1, and the
CPU they use.

- :func:`start_server`: a ``tether serve`` replica or the floor, each in a session of its own (a
  Ctrl-C on the terminal reaches only the measuring process, which stops them in order), stopped
  when the caller's ``ExitStack`` closes.
- :func:`throwaway_postgres`: a fresh PostgreSQL cluster from the test suite's helper
  (``tests/pg_server.py``), restarted with the production defaults ``fsync``,
  ``synchronous_commit`` and ``full_page_writes`` on, which the helper turns off for tests: the
  benchmark measures an audit as durable as a production commit.
- :func:`cpu_times`, :func:`processes_cpu`: the machine's and given processes' CPU time (Linux
  ``/proc``; ``None`` elsewhere).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg

BENCH = Path(__file__).resolve().parent
# The production defaults the test helper turns off; a later -c option overrides an earlier one.
DURABLE_PG = "-c fsync=on -c synchronous_commit=on -c full_page_writes=on -c log_statement=none"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


def start_server(
    stack: ExitStack, command: list[str], env: dict[str, str], log: Path
) -> tuple[int, int]:
    """Start ``command --port N`` in a session of its own (a Ctrl-C on the terminal reaches only
    this process, which stops the servers in order), stopped when ``stack`` closes; wait until it
    answers ``GET /readyz`` and return its port and process id."""
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    stack.callback(stop, process)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{log.stem} exited with {process.returncode}:\n{tail}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return port, process.pid
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{log.stem} on port {port} was not ready in 60 s")
        time.sleep(0.1)  # a bounded wait for a process to start


def server_env(**tether: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    return env | tether


def tether_command(data_dir: Path, log_level: str = "info") -> list[str]:
    """``tether serve`` on ``data_dir``; at ``info``, its default, it logs a line per decision
    (JSON: its stderr is a file)."""
    return [
        sys.executable,
        "-m",
        "tether",
        "serve",
        "--log-level",
        log_level,
        "--data-dir",
        str(data_dir),
    ]


def cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine from /proc/stat; None off Linux."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def processes_cpu(pids: Sequence[int]) -> float | None:
    """CPU seconds (user + system, every thread) the processes used so far; None off Linux."""
    total = 0
    try:
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    except (OSError, IndexError, ValueError):
        return None
    return total / os.sysconf("SC_CLK_TCK")


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A fresh cluster on loopback (the tests' helper), restarted durable; the URL of a database."""
    sys.path.insert(0, str(BENCH.parent / "tests"))
    from pg_server import running_postgres

    with running_postgres() as helper:
        helper.stop()
        durable = dataclasses.replace(helper, options=f"{helper.options} {DURABLE_PG}")
        durable.start()
        with psycopg.connect(durable.dsn(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
        yield durable.url("bench")


def postgres_settings(store_url: str) -> str:
    """What the server under B runs with, as it says itself."""
    url = store_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        shown = []
        for name in ("server_version", "fsync", "synchronous_commit", "full_page_writes"):
            row = conn.execute(f"SHOW {name}").fetchone()
            shown.append(f"{name}={row[0] if row else '?'}")
    return ", ".join(shown)


def stack_description() -> str:
    """What ``uvicorn.run`` picks here with its defaults (loop and http ``auto``)."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"uvicorn {importlib.metadata.version('uvicorn')} ({loop} loop, {http}), 1 process"
