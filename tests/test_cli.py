"""The command line: every command answers --help, wrong input gets a one-line error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from support import Agent
from tether.cli.main import app
from tether.runtime import Runtime, packaged_policies

runner = CliRunner()

COMMANDS = [
    [],
    ["serve"],
    ["demo"],
    ["dev", "svid"],
    ["policy", "validate"],
    ["policy", "test"],
    ["policy", "fmt"],
    ["audit", "export"],
    ["audit", "verify"],
    ["audit", "tail"],
    ["approvers", "add"],
    ["approvals", "list"],
    ["approvals", "approve"],
    ["breakglass", "request"],
    ["breakglass", "approve"],
    ["breakglass", "review"],
    ["proxy"],
    ["mcp-gateway"],
    ["secrets", "set"],
    ["secrets", "list"],
    ["secrets", "delete"],
    ["config", "show"],
    ["report", "privileges"],
    ["report", "risks"],
    ["report", "controls"],
    ["agents", "revoke"],
    ["agents", "restore"],
    ["db", "current"],
    ["db", "upgrade"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "tether")
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_a_wrong_option_gets_a_short_error() -> None:
    result = runner.invoke(app, ["audit", "verify", "--bogus"])
    assert result.exit_code == 2
    assert "No such option" in result.output


def test_dev_svid_prints_a_token_and_is_refused_in_production(tmp_path: Path) -> None:
    result = runner.invoke(app, ["dev", "svid", "--agent", "analyst", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.count(".") == 2  # a compact JWS
    refused = runner.invoke(
        app,
        ["dev", "svid", "--agent", "analyst", "--data-dir", str(tmp_path)],
        env={"TETHER_ENV": "production"},
    )
    assert refused.exit_code != 0
    assert "dev_issuer_refused" in refused.output


def test_dev_svid_rejects_a_bad_agent_name(tmp_path: Path) -> None:
    result = runner.invoke(app, ["dev", "svid", "--agent", "no spaces", "-d", str(tmp_path)])
    assert result.exit_code != 0
    assert "error" in result.output


def test_policy_validate_and_test_on_the_examples() -> None:
    validated = runner.invoke(app, ["policy", "validate", str(packaged_policies())])
    assert validated.exit_code == 0, validated.output
    tested = runner.invoke(app, ["policy", "test", str(packaged_policies())])
    assert tested.exit_code == 0, tested.output
    assert "passed" in tested.output


def test_policy_validate_names_the_broken_file(tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "policies"
    shutil.copytree(packaged_policies(), broken)
    (broken / "bad.cedar").write_text('permit(principal, action == Action::"fly", resource);')
    result = runner.invoke(app, ["policy", "validate", str(broken)])
    assert result.exit_code != 0
    assert "bad.cedar" in result.output


def test_policy_test_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    import shutil

    policies = tmp_path / "policies"
    shutil.copytree(packaged_policies(), policies)
    (policies / "tests" / "wrong.yaml").write_text(
        "cases:\n"
        "  - name: shell is never allowed\n"
        "    agent: spiffe://tether.local/agent/analyst\n"
        "    call: {tool: shell.exec, action: execute}\n"
        "    expect: allow\n"
    )
    result = runner.invoke(app, ["policy", "test", str(policies)])
    assert result.exit_code == 1
    assert "shell is never allowed" in result.output


def _populate(analyst: Agent) -> None:
    task = analyst.open_task(
        [{"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}]
    ).json()
    for _ in range(3):
        analyst.authorize(task["grant"], tool="crm.query", action="read", dataset="crm")
    analyst.close(task["task_id"])


def test_audit_export_verify_and_tamper_detection(
    analyst: Agent, runtime: Runtime, tmp_path: Path
) -> None:
    _populate(analyst)
    data_dir = str(runtime.config.data_dir)
    live = runner.invoke(app, ["audit", "verify", "--data-dir", data_dir])
    assert live.exit_code == 0, live.output
    assert "5 records" in live.output

    exported = tmp_path / "audit.jsonl"
    result = runner.invoke(app, ["audit", "export", "-d", data_dir, "-o", str(exported)])
    assert result.exit_code == 0, result.output
    *lines, signed = exported.read_text().splitlines()
    assert len(lines) == 5 and json.loads(signed)["checkpoint"]["size"] == 5
    # An export's checkpoint is checked with the audit key: the data directory's here.
    missing = runner.invoke(app, ["audit", "verify", "--file", str(exported), "-d", str(tmp_path)])
    assert missing.exit_code == 2 and "public_key_missing" in missing.output
    verified = runner.invoke(app, ["audit", "verify", "--file", str(exported), "-d", data_dir])
    assert verified.exit_code == 0, verified.output

    stdout = runner.invoke(app, ["audit", "export", "-d", data_dir])
    assert stdout.output.splitlines()[:-1] == lines

    def verify(variant: list[str]) -> str:
        path = tmp_path / "variant.jsonl"
        path.write_text("\n".join([*variant, signed]) + "\n")
        outcome = runner.invoke(app, ["audit", "verify", "--file", str(path), "-d", data_dir])
        assert outcome.exit_code == 1, outcome.output
        return outcome.output

    edited = json.loads(lines[2])
    edited["body"]["verdict"]["decision"] = "deny"
    assert "record 3" in verify([*lines[:2], json.dumps(edited), *lines[3:]])
    assert "record 3" in verify([*lines[:2], *lines[3:]])  # deleted
    assert "record 2" in verify([lines[0], lines[2], lines[1], *lines[3:]])  # reordered
    assert "record 3" in verify([*lines[:2], lines[1], *lines[2:]])  # inserted (duplicate)
    assert "line 2" in verify([lines[0], "{oops", *lines[1:]])  # not JSON


def test_live_store_tamper_is_detected(analyst: Agent, runtime: Runtime) -> None:
    import sqlite3

    _populate(analyst)
    with sqlite3.connect(runtime.config.data_dir / "tether.db") as db:
        db.execute("DELETE FROM audit WHERE seq = (SELECT max(seq) FROM audit)")
    result = runner.invoke(app, ["audit", "verify", "-d", str(runtime.config.data_dir)])
    assert result.exit_code == 1
    assert "removed" in result.output


def test_audit_tail_shows_recent_records(analyst: Agent, runtime: Runtime) -> None:
    _populate(analyst)
    result = runner.invoke(app, ["audit", "tail", "-d", str(runtime.config.data_dir), "-n", "2"])
    assert result.exit_code == 0, result.output
    assert "task_closed" in result.output


def test_audit_commands_on_a_missing_store(tmp_path: Path) -> None:
    result = runner.invoke(app, ["audit", "verify", "-d", str(tmp_path / "none")])
    assert result.exit_code == 4  # not found
    assert "no tether store" in result.output


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tether", "demo", "--data-dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=180,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "demo complete" in out
    for code in ("constraint_violated", "dataset_not_in_scope", "grant_not_bound", "grant_revoked"):
        assert code in out, code
    assert "approval_required" in out
    assert "approval_granted" in out and "approval_used" in out
    assert "clicked Approve" in out
    assert "via analyst" in out  # the delegated helper's calls carry the chain
    assert "break_glass" in out and "BREAK-GLASS" in out
    assert "unused: send email.send" in out  # the least-privilege report on the demo's log
    # The observe-mode policy shipped with the examples would have denied the 5% discount.
    assert "policy discounts-over-3-need-review would turn 1 allow of analyst" in out
    # The approved refund's scoped token: accepted before the task closed, refused after.
    assert "accepted" in out and "refused (401)" in out
    for code in ("budget_exceeded", "workflow_out_of_order", "egress_needs_approval"):
        assert code in out, code
    assert "intact" in out
