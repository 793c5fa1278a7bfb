"""The README's MCP example runs as written: the shell block of its MCP section, run by bash in
an empty directory against the example config and server that ship with tether, with the server
of the README's quick start running (``tether serve --data-dir .tether``, ``TETHER_URL`` set) and
the gateway's port changed to a free one, since tests share the machine. tests/docs runs the same
block in the README's order; this test checks what the example agent prints."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx

import tether
from tether.examples.mcp import GATEWAY_YAML, gateway_yaml
from tether.mcp import load_config
from tether.mcp.config import StdioUpstream

ROOT = Path(__file__).resolve().parents[2]
RUN_SECONDS = 240  # only bounds a run that hangs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def readme_block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## MCP gateway\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    (block,) = [b for b in blocks if "tether.examples.mcp" in b]
    return str(block)


@contextlib.contextmanager
def quick_start_server(cwd: Path, env: dict[str, str]) -> Iterator[str]:
    """``tether serve --data-dir .tether`` in ``cwd``, ready; yields its URL."""
    port = str(free_port())
    url = f"http://127.0.0.1:{port}"
    tether_cli = str(Path(sys.executable).parent / "tether")
    server = subprocess.Popen(
        [tether_cli, "serve", "--data-dir", ".tether", "--port", port, "--log-level", "warning"],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        with httpx.Client(base_url=url, timeout=5) as client:
            for _ in range(600):
                assert server.poll() is None, "tether serve exited"
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/readyz").status_code == 200:
                        break
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_readme_mcp_example_runs_as_written(tmp_path: Path) -> None:
    block = readme_block()
    assert "$TETHER_URL" in block and "8471" in block
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TETHER_", "OTEL_"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    with quick_start_server(tmp_path, env) as url:
        env["TETHER_URL"] = url
        _run_block(block.replace("8471", str(free_port())), tmp_path, env)


def _run_block(script: str, tmp_path: Path, env: dict[str, str]) -> None:
    # Its own session, so whatever the script leaves behind is stopped with it.
    process = subprocess.Popen(
        ["bash", "-e", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=RUN_SECONDS)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        if process.poll() is None:
            process.wait(timeout=30)
    assert process.returncode == 0, f"{out}\n{err}"
    lines = [line for line in out.splitlines() if line.startswith(("tools/list", "crm."))]
    assert lines[0] == "tools/list: crm.query, crm.update"
    assert lines[1] == "crm.query {'customer': 'c-1042'}: allow: 3 records for c-1042"
    assert lines[2].startswith("crm.update {'ticket': 'T-7', 'discount': 50}: constraint_violated")
    assert lines[3].startswith("crm.purge {'customer': 'c-1042'}: tool_not_in_scope")
    # The config names the interpreter that wrote it, wherever tether is installed.
    (crm,) = load_config(tmp_path / "gateway.yaml").upstreams
    assert isinstance(crm, StdioUpstream) and Path(crm.command).is_absolute()
    assert (tmp_path / "gateway.yaml").read_text() == gateway_yaml(crm.command)


def test_the_example_ships_with_the_package() -> None:
    config = load_config(GATEWAY_YAML)
    (crm,) = config.upstreams
    assert isinstance(crm, StdioUpstream)
    assert crm.name == "crm" and crm.args == ("-m", "tether.examples.mcp.crm_server")
    assert {name: m.action.value for name, m in config.tools.items()} == {
        "crm.query": "read",
        "crm.update": "write",
        "crm.purge": "delete",
    }
    # The package data globs of pyproject.toml take the example into the wheel.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["tether"]
    package = Path(tether.__file__).resolve().parent
    shipped = {p for pattern in globs for p in package.glob(pattern) if p.is_file()}
    for name in ("gateway.yaml", "crm_server.py", "agent.py", "__init__.py", "__main__.py"):
        assert package / "examples" / "mcp" / name in shipped
