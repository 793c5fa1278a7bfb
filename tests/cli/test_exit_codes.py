"""Exit codes: one meaning each (README "Scripting the CLI"), checked with a real command each."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tether.api.errors import HTTP_STATUS
from tether.cli.exits import MEANING, ExitCode, exit_code_for
from tether.cli.main import app
from tether.core.errors import ErrorCode
from tether.runtime import Runtime, packaged_policies

runner = CliRunner()


def _approver_token(runtime: Runtime) -> str:
    added = runner.invoke(app, ["approvers", "add", "erin", "-d", str(runtime.config.data_dir)])
    assert added.exit_code == 0, added.output
    return added.output.strip().splitlines()[-1]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_ok_is_0(tmp_path: Path) -> None:
    result = runner.invoke(app, ["dev", "svid", "--agent", "analyst", "-d", str(tmp_path)])
    assert result.exit_code == ExitCode.OK == 0, result.output


def test_a_failed_check_is_1(tmp_path: Path) -> None:
    export = tmp_path / "audit.jsonl"
    export.write_text("{oops\n")
    verified = runner.invoke(app, ["audit", "verify", "--file", str(export)])
    assert verified.exit_code == ExitCode.CHECK_FAILED == 1, verified.output

    import shutil

    broken = tmp_path / "policies"
    shutil.copytree(packaged_policies(), broken)
    (broken / "bad.cedar").write_text('permit(principal, action == Action::"fly", resource);')
    validated = runner.invoke(app, ["policy", "validate", str(broken)])
    assert validated.exit_code == 1, validated.output
    assert "bad.cedar:1:" in validated.output and "unknown action" in validated.output


def test_usage_is_2(tmp_path: Path) -> None:
    assert runner.invoke(app, ["audit", "verify", "--bogus"]).exit_code == ExitCode.USAGE == 2
    bad_name = runner.invoke(app, ["dev", "svid", "--agent", "no spaces", "-d", str(tmp_path)])
    assert bad_name.exit_code == 2, bad_name.output
    assert "invalid_field" in bad_name.output


def test_an_unreachable_server_is_3() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    result = runner.invoke(app, ["approvals", "list", "--url", url, "--token", "tap_x"])
    assert result.exit_code == ExitCode.UNAVAILABLE == 3, result.output
    assert "unreachable" in result.output


def test_a_path_that_does_not_exist_is_4(tmp_path: Path) -> None:
    """Named on the command line, checked by the option itself or by the command."""
    missing = str(tmp_path / "nowhere")
    for args in (
        ["policy", "validate", missing],  # an argument the option checks (exists=True)
        ["audit", "verify", "--witness", missing, "-d", str(tmp_path)],
        ["leases", "list", "--policies", missing, "-d", str(tmp_path)],
        ["audit", "verify", "--file", missing],  # checked by the command
        ["policy", "test", str(packaged_policies()), "--cases", missing],
        ["audit", "public-key", "-d", missing],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == ExitCode.NOT_FOUND, (args, result.output)
        assert "nowhere" in result.output


def test_a_data_directory_with_no_store_is_4_and_stays_empty(tmp_path: Path) -> None:
    """A mistyped --data-dir must not become a new empty store the command reads, or revokes an
    agent in, reporting success."""
    typo = tmp_path / "dta"
    for args in (
        ["agents", "revoke", "spiffe://tether.local/agent/analyst", "-r", "incident"],
        ["agents", "list"],
        ["leases", "list"],
        ["audit", "tail"],
        ["db", "current"],
    ):
        result = runner.invoke(app, [*args, "-d", str(typo)])
        assert result.exit_code == ExitCode.NOT_FOUND, (args, result.output)
        assert "store_not_found" in result.output
    assert not typo.exists()


def test_not_found_is_4_locally_and_from_a_server(
    runtime: Runtime, base_url: str, tmp_path: Path
) -> None:
    missing_store = runner.invoke(app, ["audit", "tail", "-d", str(tmp_path / "none")])
    assert missing_store.exit_code == ExitCode.NOT_FOUND == 4, missing_store.output
    nobody = runner.invoke(app, ["approvers", "remove", "nobody", "-d", str(tmp_path)])
    assert nobody.exit_code == 4, nobody.output
    token = _approver_token(runtime)
    unknown = "apr_" + "a" * 26
    shown = runner.invoke(app, ["approvals", "show", unknown, "--url", base_url, "--token", token])
    assert shown.exit_code == 4, shown.output  # the server answered 404


def test_refused_is_5_locally_and_from_a_server(
    runtime: Runtime, base_url: str, tmp_path: Path
) -> None:
    production = runner.invoke(
        app, ["dev", "svid", "--agent", "a", "-d", str(tmp_path)], env={"TETHER_ENV": "production"}
    )
    assert production.exit_code == ExitCode.REFUSED == 5, production.output
    assert "dev_issuer_refused" in production.output
    bad_token = runner.invoke(app, ["approvals", "list", "--url", base_url, "--token", "tap_x"])
    assert bad_token.exit_code == 5, bad_token.output  # the server answered 401
    assert "invalid_token" in bad_token.output
    no_token = runner.invoke(
        app, ["approvals", "list", "--url", base_url], env={"TETHER_APPROVER_TOKEN": ""}
    )
    assert no_token.exit_code == 5, no_token.output


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_a_code_and_its_http_status_mean_the_same_exit(code: ErrorCode) -> None:
    """Every code has an exit status, and a command that only sees the server's status for it
    exits the same way, except for a server's own failures (5xx), which are 3 whatever the code."""
    status = HTTP_STATUS[code]
    if status >= 500:
        assert exit_code_for(status) is ExitCode.UNAVAILABLE
    else:
        assert exit_code_for(status) is exit_code_for(code)


def _readme_table() -> list[tuple[int, str]]:
    """(status, meaning) of each row of the README's exit status table."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Scripting the CLI", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].isdigit():
            rows.append((int(cells[0]), cells[1]))
    return rows


def test_the_readme_table_is_the_exit_codes() -> None:
    assert _readme_table() == [(code.value, MEANING[code]) for code in ExitCode]


def test_root_help_lists_the_exit_codes() -> None:
    shown = " ".join(runner.invoke(app, ["--help"], terminal_width=80).output.split())
    for code in ExitCode:
        assert f"{code.value} {MEANING[code]}" in shown
