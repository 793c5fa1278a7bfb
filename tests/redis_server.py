"""A real, throw-away Redis server for tests, on 127.0.0.1 and a free port.

``redis-server`` comes from the system's packages (``scripts/ensure-redis.sh`` installs it). It
runs with persistence off (``--save '' --appendonly no``): its data lives only as long as the
server, as tether expects of its revocation fan-out (it keeps nothing in Redis it cannot lose).

If Redis is not installed the fixture *fails* with a message saying how to install it: CI installs
it, so a missing server is a broken setup, not a reason to skip.

The session fixture :func:`redis_server` is one server for every suite that imports it. A test that
needs to stop the server (to see a replica lose Redis) starts its own with :func:`running_redis`
and uses :meth:`RedisServer.stop` and :meth:`RedisServer.start`: the same port, no data kept.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

_START_ATTEMPTS = 3
#: How long a starting server may take to answer PING before it counts as failed to start.
_READY_WITHIN = 20.0


@dataclass
class RedisServer:
    """A running server: where it listens, and its process (to stop and restart it)."""

    binary: str
    host: str
    port: int
    work_dir: Path
    log_file: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def url(self, db: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the server on this port; return once it answers PING."""
        if self.running:
            raise RuntimeError("the Redis server is already running")
        self.process = subprocess.Popen(
            [
                self.binary,
                "--bind",
                self.host,
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.work_dir),
                "--logfile",
                str(self.log_file),
                "--daemonize",
                "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + _READY_WITHIN
        while not _answers_ping(self.host, self.port):
            if self.process.poll() is not None:
                log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
                self.process = None
                raise RuntimeError(f"redis-server exited while starting:\n{log}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server did not answer PING in time")
            time.sleep(0.02)  # waiting for a real socket to listen, not for tether's clock

    def stop(self) -> None:
        """Stop the server (SIGTERM; nothing is saved, so its data is gone)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


def _answers_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def require_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "Redis is not installed (no redis-server on PATH). The cache tests need a real "
            "server: run `bash scripts/ensure-redis.sh` as root (or `apt-get install "
            "redis-server`), then run the tests again.",
            pytrace=False,
        )
    return binary


@contextmanager
def running_redis() -> Iterator[RedisServer]:
    """Start a fresh server in a temporary directory; stop it and delete it afterwards."""
    binary = require_binary()
    base = Path(tempfile.mkdtemp(prefix="tether-redis-"))
    server: RedisServer | None = None
    try:
        last_error: RuntimeError | None = None
        for _ in range(_START_ATTEMPTS):  # a free port can be taken before the server binds it
            candidate = RedisServer(
                binary, "127.0.0.1", _free_port(), base, base / "redis.log", process=None
            )
            try:
                candidate.start()
            except RuntimeError as exc:
                last_error = exc
                continue
            server = candidate
            break
        if server is None:
            raise RuntimeError(f"Redis did not start: {last_error}")
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real Redis server for the whole test session; tests must not stop it."""
    with running_redis() as server:
        yield server
