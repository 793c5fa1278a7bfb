"""Output a script can read: in a pipe (CliRunner captures output: not a terminal) nothing is cut
or wrapped, whatever the width; ``--json`` parses and carries the ids; ``--help`` at 80 columns
keeps every option and environment variable name whole."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main
from typer._click.core import Command  # Typer's own click
from typer.core import TyperOption
from typer.testing import CliRunner

from support import Agent
from tether.cli.lazy import DeferredCommand
from tether.cli.main import app
from tether.runtime import Runtime

runner = CliRunner()
NARROW = {"COLUMNS": "40"}  # far narrower than any row: nothing may be cut or wrapped for it
PAY = {"tool": "payments.transfer", "actions": ["spend"], "constraints": {"amount": {"max": 1000}}}
CALL = {"tool": "payments.transfer", "action": "spend", "args": {"amount": 500, "to": "c-1042"}}
ANALYST = "spiffe://tether.local/agent/analyst"


def _approver(runtime: Runtime, base_url: str) -> dict[str, str]:
    added = runner.invoke(app, ["approvers", "add", "dana", "-d", str(runtime.config.data_dir)])
    assert added.exit_code == 0, added.output
    return {"TETHER_URL": base_url, "TETHER_APPROVER_TOKEN": added.output.splitlines()[-1]}


def _pending_approval(analyst: Agent) -> str:
    grant = analyst.open_task([PAY], ttl_seconds=3600).json()["grant"]
    verdict = analyst.authorize(grant, **CALL).json()
    assert verdict["decision"] == "approval_required", verdict
    approval_id: str = verdict["approval_id"]
    return approval_id


def _row_with(output: str, needle: str) -> list[str]:
    """The one line holding ``needle``, split into its tab-separated fields."""
    lines = [line for line in output.splitlines() if needle in line]
    assert len(lines) == 1, output
    return lines[0].split("\t")


def test_approvals_in_a_pipe_are_whole_rows_with_whole_ids(
    analyst: Agent, runtime: Runtime, base_url: str
) -> None:
    env = {**_approver(runtime, base_url), **NARROW}
    approval_id = _pending_approval(analyst)

    listed = runner.invoke(app, ["approvals", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    header, *rows = listed.output.splitlines()
    assert header.split("\t") == ["approval", "state", "agent", "call", "approvals", "expires"]
    assert len(rows) == 1  # one approval, one line: nothing wrapped
    fields = _row_with(listed.output, approval_id)
    assert fields[:3] == [approval_id, "pending", ANALYST]
    assert "…" not in listed.output

    as_json = runner.invoke(app, ["approvals", "list", "--json"], env=env)
    assert [item["approval_id"] for item in json.loads(as_json.output)] == [approval_id]
    shown = runner.invoke(app, ["approvals", "show", approval_id, "--json"], env=env)
    assert json.loads(shown.output)["approval_id"] == approval_id


def test_breakglass_list_and_show_in_a_pipe_and_as_json(
    analyst: Agent, runtime: Runtime, base_url: str
) -> None:
    env = {**_approver(runtime, base_url), **NARROW}
    task_id = analyst.open_task([PAY], ttl_seconds=3600).json()["task_id"]
    scope = json.dumps({"tool": "crm.purge", "actions": ["delete"], "datasets": ["crm"]})
    requested = runner.invoke(
        app,
        ["breakglass", "request", "--task", task_id, "--scope", scope, "-r", "incident 12"],
        env=env,
    )
    assert requested.exit_code == 0, requested.output

    as_json = runner.invoke(app, ["breakglass", "list", "--json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    (item,) = json.loads(as_json.output)
    breakglass_id = item["breakglass_id"]
    listed = runner.invoke(app, ["breakglass", "list"], env=env)
    assert _row_with(listed.output, breakglass_id)[:4] == [
        breakglass_id,
        "pending",
        task_id,
        ANALYST,
    ]
    shown = runner.invoke(app, ["breakglass", "show", breakglass_id, "--json"], env=env)
    assert json.loads(shown.output)["task_id"] == task_id


def test_agents_list_in_a_pipe_and_as_json(runtime: Runtime) -> None:
    data_dir = str(runtime.config.data_dir)
    reason = "incident 7: exfiltration suspected, revoked pending review by the security team"
    revoked = runner.invoke(app, ["agents", "revoke", ANALYST, "-r", reason, "-d", data_dir])
    assert revoked.exit_code == 0, revoked.output

    listed = runner.invoke(app, ["agents", "list", "-d", data_dir], env=NARROW)
    fields = _row_with(listed.output, ANALYST)
    assert fields[0] == ANALYST and fields[-1] == reason  # the whole reason, on the same line
    as_json = runner.invoke(app, ["agents", "list", "--json", "-d", data_dir], env=NARROW)
    assert [(x["agent"], x["reason"]) for x in json.loads(as_json.output)] == [(ANALYST, reason)]


def _populate(analyst: Agent) -> None:
    task = analyst.open_task(
        [{"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}]
    ).json()
    analyst.authorize(task["grant"], tool="crm.query", action="read", dataset="crm")
    analyst.close(task["task_id"])


def test_audit_tail_in_a_pipe_and_as_json_lines(analyst: Agent, runtime: Runtime) -> None:
    _populate(analyst)
    data_dir = str(runtime.config.data_dir)
    tailed = runner.invoke(app, ["audit", "tail", "-d", data_dir], env=NARROW)
    assert tailed.exit_code == 0, tailed.output
    header, *rows = tailed.output.splitlines()
    assert header.split("\t") == ["seq", "at", "kind", "agent", "what"]
    assert [row.split("\t")[0] for row in rows] == ["1", "2", "3"]  # one record a line
    assert all(row.split("\t")[3] == ANALYST for row in rows)

    as_json = runner.invoke(app, ["audit", "tail", "--json", "-n", "2", "-d", data_dir])
    records = [json.loads(line) for line in as_json.output.splitlines()]
    assert [r["seq"] for r in records] == [2, 3]
    assert all(r["agent"] == ANALYST and r["hash"] for r in records)


def _commands() -> Iterator[tuple[list[str], Command]]:
    """Every command of the tree, with its path of names."""

    def walk(path: list[str], command: Command) -> Iterator[tuple[list[str], Command]]:
        if isinstance(command, DeferredCommand):
            command = command.load()
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk([*path, name], sub)

    yield from walk([], typer.main.get_command(app))


@pytest.mark.parametrize(
    ("path", "command"), list(_commands()), ids=lambda x: " ".join(x) if isinstance(x, list) else ""
)
def test_help_at_80_columns_keeps_every_option_and_env_var_whole(
    path: list[str], command: Command
) -> None:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    for param in command.params:
        if not isinstance(param, TyperOption) or param.hidden:
            continue
        for name in [*param.opts, *param.secondary_opts]:
            assert name in result.output, (name, result.output)
        envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or [])
        for envvar in envvars:
            assert envvar in result.output, (envvar, result.output)
    assert "…" not in result.output.replace("_…", "")  # "lse_…" is an id's shape, not a cut


def _demo(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether", "demo", "-d", str(tmp_path / "demo"), *extra],
        capture_output=True,
        text=True,
        timeout=180,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "60"},
    )


@pytest.mark.slow
def test_the_demo_in_a_pipe_prints_one_line_a_call(tmp_path: Path) -> None:
    result = _demo(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    start = lines.index("\t".join(["#", "agent", "call", "verdict", "reasons", "risks", "effect"]))
    rows = [line.split("\t") for line in lines[start + 1 : start + 20]]
    assert [row[0] for row in rows] == [str(n) for n in range(1, 20)]
    assert all(len(row) == 7 for row in rows)
    assert any(row[3] == "approval_required" and "transfers over 100" in row[4] for row in rows)
    assert f"data in {tmp_path / 'demo'}," in result.stdout  # the banner's path is whole


@pytest.mark.slow
def test_the_demo_as_json(tmp_path: Path) -> None:
    result = _demo(tmp_path, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout)  # stdout is the document alone; the narrative is on stderr
    assert out["ok"] is True and out["audit"]["intact"] is True
    assert [call["number"] for call in out["calls"]] == list(range(1, 20))
    decided = [call for call in out["calls"] if "call" in call]
    assert all(call["decision_id"].startswith("dec_") for call in decided)
    assert any(call["approval_id"] and call["decision"] == "approval_required" for call in decided)
    assert "opened task tsk_" in result.stderr


@pytest.mark.parametrize(("width", "as_table"), [(60, False), (110, True)])
def test_on_a_terminal_ids_are_never_shortened(
    monkeypatch: pytest.MonkeyPatch, width: int, as_table: bool
) -> None:
    """A table when the ids fit whole, else one field a line; never an id cut with "…"."""
    import io

    from rich.console import Console

    from tether.cli import output

    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=width, color_system=None)
    monkeypatch.setattr(output, "console", terminal)
    ids = ["apr_" + "7" * 26, "apr_" + "8" * 26]
    output.print_table(
        "approvals",
        [
            output.Column("approval", key=True),
            output.Column("agent", key=True),
            output.Column("why"),
        ],
        [[ids[0], ANALYST, "a long reason " * 4], [ids[1], ANALYST, "short"]],
    )
    shown = screen.getvalue()
    for whole in [*ids, ANALYST]:
        assert any(whole in line for line in shown.splitlines()), shown
    assert "…" not in shown
    assert ("┃ approval" in shown) is as_table, shown
