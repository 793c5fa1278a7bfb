"""Runs a Markdown file's shell and Python samples in order, as a new user would, against one real
``tether serve`` on loopback with a fresh data directory.

The working directory is a fresh temporary one that links ``.venv``, ``examples`` and ``sdk`` from
the checkout, so the samples run as they would from a clone's root (``.venv/bin/tether``,
``examples/policies``, ``.tether`` all resolve) while everything they write (``.tether`` included)
is new. The server is started as the README starts it (``tether serve --data-dir .tether``: the dev
identity issuer and the example policies) but on a free port: the documented ports 8470-8472 are
replaced by free ones in each block's text before it runs, so two test runs never collide. It signs
an audit checkpoint every second (``TETHER_CHECKPOINT_SECONDS=1``) instead of every minute, so the
audit samples that prove against checkpoints find two without a minute's wait.

Each block runs in its own process with a controlled environment: ``PATH`` is the virtualenv's
``bin`` and the system's, ``HOME`` is inside the working directory, and no ``TETHER_*`` variable
is set unless a block sets it. Shell blocks run under ``bash -euo pipefail``; the variables a block
sets are carried to the blocks after it (exported ones to Python blocks too), so every variable a
sample uses must have been set by a sample before it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx
from markdown_blocks import PYTHON, SHELL, Block

ROOT: Final = Path(__file__).resolve().parents[2]
VENV_BIN: Final = Path(sys.executable).parent
DOCUMENTED_PORTS: Final = (8470, 8471, 8472)
BLOCK_TIMEOUT: Final = 180.0

_PORT = re.compile(r"\b(847[0-2])\b")
_STATE = "__docs_state"

# Runs one shell block: restore what earlier blocks set, run the block, save what it set (all
# its variables for the next shell block, the exported ones for the next Python block).
_SHELL_WRAPPER: Final = """\
__docs_before=$(compgen -v)
source {state}
set -euo pipefail
{body}
set +eu
__docs_new=$(comm -13 <(printf '%s\\n' $__docs_before | sort) <(compgen -v | sort) \\
             | grep -v '^__docs_' | grep -v '^_$' || true)
if [ -n "$__docs_new" ]; then declare -p $__docs_new > {state}; fi
: > {exports}
for __docs_v in $__docs_new; do
  case "$(declare -p "$__docs_v")" in
    "declare -x "*) printf '%s=%s\\0' "$__docs_v" "${{!__docs_v}}" >> {exports} ;;
  esac
done
"""


@dataclass(frozen=True, slots=True)
class Outcome:
    block: Block
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def explain(self) -> str:
        tail = "\n".join(self.output.splitlines()[-40:])
        return (
            f"{self.block.where}: the {self.block.lang} block exited {self.returncode}\n"
            f"--- block ---\n{self.block.text}--- output (last 40 lines) ---\n{tail}"
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DocSession:
    """One Markdown file's run: its working directory, its server and the samples' state."""

    workdir: Path
    ports: dict[int, int] = field(default_factory=dict)
    server: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name in (".venv", "examples", "sdk"):
            (self.workdir / name).symlink_to(ROOT / name)
        (self.workdir / "home").mkdir()
        (self.workdir / _STATE).touch()
        self.ports = {documented: free_port() for documented in DOCUMENTED_PORTS}
        self.exported: dict[str, str] = {}

    # -- the environment ---------------------------------------------------------------------

    def base_env(self) -> dict[str, str]:
        return {
            "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.workdir / "home"),
            "LANG": "C.UTF-8",
            "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
            "PYTHONDONTWRITEBYTECODE": "1",
            "NO_COLOR": "1",
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports[8470]}"

    def localize(self, text: str) -> str:
        """The block as it runs here: the documented ports replaced by this run's."""
        return _PORT.sub(lambda m: str(self.ports[int(m[1])]), text)

    # -- the server ----------------------------------------------------------------------------

    def start_server(self) -> None:
        """``tether serve --data-dir .tether``, as the README starts it, on this run's port."""
        log = (self.workdir / "serve.log").open("wb")
        self.server = subprocess.Popen(
            [
                str(VENV_BIN / "tether"),
                "serve",
                "--data-dir",
                ".tether",
                "--port",
                str(self.ports[8470]),
            ],
            cwd=self.workdir,
            env={**self.base_env(), "TETHER_CHECKPOINT_SECONDS": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while time.monotonic() < deadline:
                if self.server.poll() is not None:
                    raise RuntimeError(f"tether serve exited:\n{self.server_log()}")
                try:
                    if client.get("/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"tether serve was not ready in 60 s:\n{self.server_log()}")

    def server_log(self) -> str:
        path = self.workdir / "serve.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()

    # -- the blocks ----------------------------------------------------------------------------

    def run(self, block: Block) -> Outcome:
        if block.lang in SHELL:
            return self._run_shell(block)
        if block.lang in PYTHON:
            return self._run_python(block)
        raise ValueError(f"{block.where}: {block.lang!r} blocks are not run")

    def _run_shell(self, block: Block) -> Outcome:
        exports = self.workdir / "__docs_exports"
        script = _SHELL_WRAPPER.format(
            state=shlex.quote(str(self.workdir / _STATE)),
            exports=shlex.quote(str(exports)),
            body=self.localize(block.text),
        )
        outcome = self._spawn(["bash", "--noprofile", "--norc", "-c", script], block)
        if outcome.ok and exports.exists():
            for item in exports.read_bytes().split(b"\0"):
                if item:
                    name, _, value = item.decode().partition("=")
                    self.exported[name] = value
        return outcome

    def _run_python(self, block: Block) -> Outcome:
        return self._spawn([str(VENV_BIN / "python"), "-c", self.localize(block.text)], block)

    def _spawn(self, argv: list[str], block: Block) -> Outcome:
        """Run one block in its own session; its output goes to a file (a background job it
        leaves behind cannot hold a pipe open), and whatever it left running is ended after."""
        out = self.workdir / "__docs_output"
        with out.open("wb") as sink:
            process = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env={**self.base_env(), **self.exported},
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                code = process.wait(timeout=BLOCK_TIMEOUT)
            except subprocess.TimeoutExpired:
                code = -1
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                process.wait()
        return Outcome(block, code, out.read_text(errors="replace"))


def summary(skipped: list[Block]) -> str:
    return json.dumps({b.where: b.skip for b in skipped}, indent=1, ensure_ascii=False)
