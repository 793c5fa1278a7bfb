"""The doors besides ``tether serve`` (``tether mcp-gateway``, ``tether proxy``) in operations
tests: one run as a real process until its ``GET /metrics`` answers, and the check that a scrape
counts its decisions under the metric names of ``tether serve``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from ops.ops_support import ServeProcess, free_port
from ops.ops_support import parse as samples

START_SECONDS = 90  # only bounds a door that never comes up


@contextmanager
def door_process(args: list[str], stderr: Path) -> Iterator[str]:
    """``python -m tether <args> --port <free port>``, its stderr to ``stderr``, on an
    environment without tether's variables; yield its base URL once ``/metrics`` answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TETHER_", "OTEL_"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [sys.executable, "-m", "tether", *args, "--port", str(port)]
    with stderr.open("wb") as err:
        popen = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err)
    base = f"http://127.0.0.1:{port}"
    process = ServeProcess(popen, base, stderr, Path(os.devnull))
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            assert popen.poll() is None, stderr.read_text()
            try:
                if httpx.get(f"{base}/metrics", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{args[0]} did not start"
            time.sleep(0.05)  # waiting for a socket to bind, not a clock
        yield base
    finally:
        process.stop()


def assert_one_allow_and_one_deny(text: str) -> None:
    """The scrape counts one allowed ``crm.query`` and one ``crm.update`` denied as out of scope,
    their decision writes, and a readable store with an open task."""
    found = samples(text)
    allow = frozenset({("decision", "allow"), ("tool", "crm.query"), ("reason", "")})
    deny = frozenset(
        {("decision", "deny"), ("tool", "crm.update"), ("reason", "tool_not_in_scope")}
    )
    assert found[("tether_decisions_total", allow)] == 1
    assert found[("tether_decisions_total", deny)] == 1
    assert found[("tether_audit_append_seconds_count", frozenset())] >= 2
    assert found[("tether_store_up", frozenset())] == 1
    assert found[("tether_tasks_open", frozenset())] >= 1
