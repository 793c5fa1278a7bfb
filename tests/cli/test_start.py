"""The command starts fast because it imports lazily: ``tether --help`` and ``tether dev svid``
never load the server, the gateway, the policy engine or the store. Checked on ``sys.modules`` in
a fresh interpreter (what got imported), not with a stopwatch; ``bench/cli_start.py`` times it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from tether.cli.main import app

#: Modules that take tenths of a second or more to import, and no quick command needs.
HEAVY = (
    "tether.runtime",
    "tether.api",
    "tether.mcp",
    "tether.proxy",
    "tether.policy",
    "tether.store",
    "tether.reports",
    "tether.service.ports",  # the domain model: what a verifier or a grant signer needs
    "tether.identity.grant_tokens",
    "sqlalchemy",
    "cedarpy",
    "fastapi",
    "starlette",
    "uvicorn",
    "mcp",
    "httpx",
    "redis",
    "yaml",
    "structlog",  # logging is not set up for `dev`, which logs nothing
)


def _imported_after(code: str, tmp_path: Path) -> list[str]:
    """The heavy modules a fresh interpreter holds after running ``code``."""
    probe = (
        "import json, sys\n"
        f"{code}\n"
        f"heavy = {HEAVY!r}\n"
        "loaded = sorted({h for h in heavy for m in sys.modules if m == h or "
        "m.startswith(h + '.')})\n"
        "sys.stderr.write('HEAVY=' + json.dumps(loaded) + '\\n')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "80"},
    )
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stderr.splitlines() if x.startswith("HEAVY="))
    loaded: list[str] = json.loads(line.removeprefix("HEAVY="))
    return loaded


def test_importing_the_command_loads_no_heavy_module(tmp_path: Path) -> None:
    assert _imported_after("import tether.cli.main", tmp_path) == []


def test_root_help_loads_no_heavy_module(tmp_path: Path) -> None:
    code = (
        "from tether.cli.main import app\n"
        "try:\n"
        "    app(['--help'])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
    )
    assert _imported_after(code, tmp_path) == []


def test_dev_svid_run_loads_no_heavy_module(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    code = (
        "from tether.cli.main import app\n"
        "try:\n"
        f"    app(['dev', 'svid', '--agent', 'analyst', '-d', {str(data_dir)!r}])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
    )
    assert _imported_after(code, tmp_path) == []
    assert (data_dir / "keys" / "dev-issuer.pem").exists()  # it really ran


def test_every_lazy_subcommand_loads_and_keeps_its_own_help() -> None:
    """Each name the root lists resolves to its module's command, with that command's help."""
    for name in ("serve", "demo", "mcp-gateway", "proxy", "policy", "audit", "approvals", "db"):
        result = CliRunner().invoke(app, [name, "--help"], terminal_width=100)
        assert result.exit_code == 0, (name, result.output)
        assert f"tether {name}" in result.output
