"""The README's MCP example runs as written: the shell block of its MCP section, run by bash in
an empty directory against the example config and server that ship with tether (only its two
ports changed to free ones, since tests share the machine)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

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


def test_the_readme_mcp_example_runs_as_written(tmp_path: Path) -> None:
    block = readme_block()
    assert "8470" in block and "8471" in block
    script = block.replace("8470", str(free_port())).replace("8471", str(free_port()))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TETHER_", "OTEL_"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
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
