"""A real, throw-away PostgreSQL server for tests, on 127.0.0.1 and a free port.

``initdb`` and ``pg_ctl`` come from the system's packages (``/usr/lib/postgresql/*/bin``;
``scripts/ensure-postgres.sh`` installs them). PostgreSQL refuses to run as root, so when the tests
run as root the server runs as the ``postgres`` system user, in a temporary directory it owns.

The cluster authenticates TCP connections with ``scram-sha-256`` (so ``VALID UNTIL`` applies, as
it would in production) and logs every statement, so a test can check what reached the server
log. Durability is off: the data lives only as long as the test session.

If PostgreSQL is not installed the fixture *fails* with a message saying how to install it: CI
installs it, so a missing server is a broken setup, not a reason to skip.

The session fixture :func:`postgres_server` may be imported by several ``conftest.py`` files (the
credentials and store suites both do); they share one server, started by whichever asks first and
stopped when the last one is done. A test that needs to stop a server (to see a replica lose its
store) starts its own with :func:`running_postgres` and uses :meth:`PostgresServer.stop` and
:meth:`PostgresServer.start`.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from psycopg.conninfo import make_conninfo

POSTGRES_ROOT = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"
_START_ATTEMPTS = 3


@dataclass(frozen=True)
class PostgresServer:
    """A running server: where it listens and how to log in as its superuser."""

    host: str
    port: int
    superuser: str
    password: str
    data_dir: Path
    log_file: Path
    #: Where ``pg_ctl`` is and the options the server was started with, to stop and restart it.
    bin_dir: Path | None = None
    options: str = ""

    def dsn(self, dbname: str = "postgres", **overrides: str) -> str:
        params = {
            "host": self.host,
            "port": str(self.port),
            "dbname": dbname,
            "user": self.superuser,
            "password": self.password,
            "connect_timeout": "5",
        }
        params.update(overrides)
        return make_conninfo("", **params)

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace")

    def url(self, dbname: str = "postgres") -> str:
        """The SQLAlchemy URL of ``dbname`` for psycopg 3, as the superuser."""
        login = f"{self.superuser}:{self.password}"
        return f"postgresql+psycopg://{login}@{self.host}:{self.port}/{dbname}"

    def stop(self) -> None:
        """Stop the server cleanly (clients are disconnected; committed data is kept)."""
        self._pg_ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        """Start the server again on the same port with the same data."""
        self._pg_ctl("-l", str(self.log_file), "-o", self.options, "-w", "-t", "30", "start")

    def _pg_ctl(self, *args: str) -> None:
        if self.bin_dir is None:
            raise RuntimeError("this server was not started by running_postgres()")
        _run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args], self.data_dir.parent)


def find_bin_dir(root: Path = POSTGRES_ROOT) -> Path | None:
    """The newest ``bin`` directory under ``root`` holding both ``initdb`` and ``pg_ctl``."""
    found = [
        p.parent
        for p in root.glob("*/bin/initdb")
        if (p.parent / "pg_ctl").exists() and p.parent.parent.name.isdigit()
    ]
    return max(found, key=lambda p: int(p.parent.name), default=None)


def require_bin_dir(root: Path = POSTGRES_ROOT) -> Path:
    bin_dir = find_bin_dir(root)
    if bin_dir is None:
        pytest.fail(
            f"PostgreSQL is not installed (no initdb and pg_ctl under {root}/*/bin). "
            "The credentials and store tests need a real server: run `bash scripts/ensure-postgres.sh` "
            "as root (or `apt-get install postgresql`), then run the tests again.",
            pytrace=False,
        )
    return bin_dir


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _server_command(cmd: Sequence[str]) -> list[str]:
    """Run as the ``postgres`` user when we are root: PostgreSQL refuses to run as root."""
    if os.geteuid() != 0:
        return list(cmd)
    return ["runuser", "-u", SERVER_USER, "--", *cmd]


def _run(cmd: Sequence[str], cwd: Path) -> None:
    result = subprocess.run(
        _server_command(cmd), cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{Path(cmd[0]).name} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )


def _give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, SERVER_USER, SERVER_USER)


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start a fresh cluster in a temporary directory; stop it and delete it afterwards."""
    bin_dir = require_bin_dir()
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            pytest.fail(
                f"tests run as root but there is no {SERVER_USER!r} system user to run "
                "PostgreSQL as; install the postgresql package (scripts/ensure-postgres.sh)",
                pytrace=False,
            )
    # Not pytest's tmp_path: its parent is private to root, and the server user must reach it.
    base = Path(tempfile.mkdtemp(prefix="tether-pg-"))
    data_dir, log_file = base / "data", base / "server.log"
    password = secrets.token_urlsafe(24)
    started = False
    try:
        _give_to_server_user(base)
        pwfile = base / "superuser.pw"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        _give_to_server_user(pwfile)
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                SERVER_USER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-sync",
            ],
            cwd=base,
        )
        pwfile.unlink()
        last_error: RuntimeError | None = None
        for _ in range(_START_ATTEMPTS):  # a free port can be taken before the server binds it
            port = _free_port()
            options = " ".join(
                [
                    "-c listen_addresses=127.0.0.1",
                    f"-c port={port}",
                    f"-c unix_socket_directories={base}",
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                    "-c log_statement=all",
                    "-c max_connections=100",
                ]
            )
            try:
                _run(
                    [
                        str(bin_dir / "pg_ctl"),
                        "-D",
                        str(data_dir),
                        "-l",
                        str(log_file),
                        "-o",
                        options,
                        "-w",
                        "-t",
                        "30",
                        "start",
                    ],
                    cwd=base,
                )
            except RuntimeError as exc:
                last_error = exc
                continue
            started = True
            break
        if not started:
            log = log_file.read_text(errors="replace") if log_file.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {last_error}\n{log}")
        yield PostgresServer(
            host="127.0.0.1",
            port=port,
            superuser=SERVER_USER,
            password=password,
            data_dir=data_dir,
            log_file=log_file,
            bin_dir=bin_dir,
            options=options,
        )
    finally:
        if started:
            # Immediate: the data is thrown away, so there is nothing to flush. A test may have
            # stopped the server already; that is not an error here.
            stop = [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "stop"]
            try:
                _run(stop, base)
            except RuntimeError:
                if (data_dir / "postmaster.pid").exists():
                    raise
        shutil.rmtree(base, ignore_errors=True)


class _SharedServer:
    """One server for every ``postgres_server`` fixture definition in a session."""

    def __init__(self) -> None:
        self._users = 0
        self._stack = ExitStack()
        self._server: PostgresServer | None = None

    @contextmanager
    def use(self) -> Iterator[PostgresServer]:
        if self._server is None:
            self._server = self._stack.enter_context(running_postgres())
        self._users += 1
        try:
            yield self._server
        finally:
            self._users -= 1
            if self._users == 0:
                self._server = None
                self._stack.close()


_SHARED = _SharedServer()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole test session, shared by every suite using it."""
    with _SHARED.use() as server:
        yield server
