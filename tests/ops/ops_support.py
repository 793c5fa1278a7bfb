"""Support for the operations tests: a real server with its operations side (``/metrics``, the
request middleware), a scrape parser, and ``tether serve`` as a real process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from support import INTENT, live_server
from tether.cli.serve import build_app
from tether.observability import Observability
from tether.runtime import Runtime, RuntimeConfig, dev_issuer, open_runtime, packaged_policies
from tether.service.clock import ManualClock

CRM_READ = {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}
PAY = {"tool": "payments.transfer", "actions": ["spend"], "constraints": {"amount": {"max": 1000}}}
READ_CRM = {"tool": "crm.query", "action": "read", "dataset": "crm", "args": {}}

START_SECONDS = 60.0


def observed_runtime(
    data_dir: Path,
    clock: ManualClock,
    observability: Observability | None = None,
    *,
    metrics: bool = True,
) -> Runtime:
    config = RuntimeConfig(
        data_dir=data_dir, policy_dir=packaged_policies(), environ={}, metrics=metrics
    )
    return open_runtime(config, clock=clock, observability=observability)


@contextmanager
def observed_server(runtime: Runtime) -> Iterator[str]:
    """``runtime`` served as ``tether serve`` serves it, by uvicorn on 127.0.0.1."""
    with live_server(runtime, build_app(runtime)) as url:
        yield url


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base_url: str) -> Samples:
    """One ``GET /metrics`` (its own connection, no credentials), as {(name, labels): value}."""
    response = httpx.get(f"{base_url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def svid_for(data_dir: Path, agent: str, now: datetime | None = None) -> str:
    issuer = dev_issuer(RuntimeConfig(data_dir=data_dir, environ={}))
    return issuer.mint_svid(agent, audience="tether", now=now or datetime.now(UTC))


def open_task(
    base_url: str, svid: str, *scopes: dict[str, object], **extra: object
) -> dict[str, object]:
    response = httpx.post(
        f"{base_url}/v1/tasks",
        json={"intent": INTENT, "scopes": list(scopes) or [CRM_READ], **extra},
        headers={"Authorization": f"Bearer {svid}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    opened: dict[str, object] = response.json()
    return opened


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class ServeProcess:
    popen: subprocess.Popen[bytes]
    base_url: str
    stderr: Path
    stdout: Path

    def log_lines(self) -> list[str]:
        return [line for line in self.stderr.read_text().splitlines() if line.strip()]

    def stop(self) -> int:
        """SIGTERM, as an orchestrator stops it; the exit code."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        return self.popen.returncode


@contextmanager
def serve_process(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[ServeProcess]:
    """``tether serve`` in its own process on a free loopback port, ready when yielded."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TETHER_", "OTEL_"))}
    base.pop("PROMETHEUS_MULTIPROC_DIR", None)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    stderr, stdout = data_dir.parent / "serve.stderr", data_dir.parent / "serve.stdout"
    with stderr.open("wb") as err, stdout.open("wb") as out:
        popen = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tether",
                "serve",
                "--data-dir",
                str(data_dir),
                "--port",
                str(port),
                *args,
            ],
            env=base | (env or {}),
            stdout=out,
            stderr=err,
        )
    process = ServeProcess(popen, f"http://127.0.0.1:{port}", stderr, stdout)
    try:
        _wait_ready(process)
        yield process
    finally:
        process.stop()


def _wait_ready(process: ServeProcess) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise AssertionError(f"tether serve exited:\n{process.stderr.read_text()}")
        try:
            if httpx.get(f"{process.base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # a real process starting, not tether's clock
    raise AssertionError(f"tether serve was not ready within {START_SECONDS} s")
