"""``--json`` on every command that lists, shows, tails, checks or reports, and on the commands
that change something: one JSON document on stdout, complete (ids whole, times in ISO 8601 with
their offset), run against a real server and store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer._click.core import Command  # Typer's own click
from typer.testing import CliRunner

from support import Agent
from tether.cli.lazy import DeferredCommand
from tether.cli.main import app
from tether.runtime import Runtime

runner = CliRunner()
PAY: dict[str, object] = {
    "tool": "payments.transfer",
    "actions": ["spend"],
    "constraints": {"amount": {"max": 1000}},
}
CALL = {"tool": "payments.transfer", "action": "spend", "args": {"amount": 500, "to": "c-1042"}}
ANALYST = "spiffe://tether.local/agent/analyst"
#: Commands that read and print what they found: each has --json.
READERS = {"list", "show", "tail", "verify", "verify-proof", "current"}


def _leaves() -> Iterator[tuple[str, Command]]:
    def walk(path: list[str], command: Command) -> Iterator[tuple[str, Command]]:
        if isinstance(command, DeferredCommand):
            command = command.load()
        subs = getattr(command, "commands", {})
        if not subs:
            yield " ".join(path), command
        for name, sub in subs.items():
            yield from walk([*path, name], sub)

    yield from walk([], typer.main.get_command(app))


def test_every_reading_and_reporting_command_has_json() -> None:
    readers = {
        path: command
        for path, command in _leaves()
        if path.split()[-1] in READERS or path.startswith("report ")
    }
    # The walk found the commands this test is about (a renamed group would empty it).
    assert {
        "approvals list",
        "approvals show",
        "breakglass list",
        "breakglass show",
        "agents list",
        "leases list",
        "audit tail",
        "audit verify",
        "db current",
        "report privileges",
        "report controls",
    } <= set(readers)
    without = [
        path
        for path, command in readers.items()
        if not any("--json" in getattr(p, "opts", []) for p in command.params)
    ]
    assert without == []


def _json(args: list[str], env: dict[str, str] | None = None, code: int = 0) -> Any:
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def _is_instant(value: object) -> bool:
    return isinstance(value, str) and datetime.fromisoformat(value).utcoffset() is not None


def _approver(runtime: Runtime, base_url: str, name: str) -> dict[str, str]:
    data_dir = str(runtime.config.data_dir)
    added = _json(["approvers", "add", name, "--json", "-d", data_dir])
    assert isinstance(added, dict) and added["name"] == name and added["rotated"] is False
    token = added["token"]
    assert isinstance(token, str) and token.startswith("tap_")
    return {"TETHER_URL": base_url, "TETHER_APPROVER_TOKEN": token}


def test_approvals_are_decided_with_json(analyst: Agent, runtime: Runtime, base_url: str) -> None:
    env = _approver(runtime, base_url, "dana")
    grant = analyst.open_task([PAY], ttl_seconds=3600).json()["grant"]
    approval_id = analyst.authorize(grant, **CALL).json()["approval_id"]

    (listed,) = _json(["approvals", "list", "--json"], env)
    assert listed["approval_id"] == approval_id and listed["agent"] == ANALYST
    assert _is_instant(listed["expires_at"])
    decided = _json(["approvals", "approve", approval_id, "-r", "ok", "--json"], env)
    assert isinstance(decided, dict)
    assert decided["approval_id"] == approval_id and decided["state"] == "approved"
    assert _json(["approvals", "list", "--json"], env) == []  # no longer pending


def test_breakglass_request_prints_its_id_and_deny_its_state(
    analyst: Agent, runtime: Runtime, base_url: str
) -> None:
    requester = _approver(runtime, base_url, "erin")
    other = _approver(runtime, base_url, "fred")
    task_id = analyst.open_task([PAY], ttl_seconds=3600).json()["task_id"]
    scope = json.dumps({"tool": "crm.purge", "actions": ["delete"], "datasets": ["crm"]})
    request = ["breakglass", "request", "--task", task_id, "--scope", scope, "-r", "incident"]
    made = _json([*request, "--json"], requester)
    assert isinstance(made, dict) and made["state"] == "pending" and made["task_id"] == task_id
    breakglass_id = made["breakglass_id"]
    denied = _json(["breakglass", "deny", breakglass_id, "-r", "no", "--json"], other)
    assert isinstance(denied, dict)
    assert denied["breakglass_id"] == breakglass_id and denied["state"] == "denied"
    shown = _json(["breakglass", "show", breakglass_id, "--json"], other)
    assert shown == denied


def test_the_kill_switch_with_json(runtime: Runtime) -> None:
    data_dir = ["-d", str(runtime.config.data_dir)]
    revoked = _json(["agents", "revoke", ANALYST, "-r", "incident 7", "--json", *data_dir])
    assert revoked == {"agent": ANALYST, "revoked": True, "tasks_ended": 0}
    (listed,) = _json(["agents", "list", "--json", *data_dir])
    assert listed["agent"] == ANALYST and _is_instant(listed["revoked_at"])
    restored = _json(["agents", "restore", ANALYST, "--json", *data_dir])
    assert restored == {"agent": ANALYST, "revoked": False}
    assert _json(["agents", "list", "--json", *data_dir]) == []


def _decide(analyst: Agent) -> None:
    task = analyst.open_task([{"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}])
    analyst.authorize(task.json()["grant"], tool="crm.query", action="read", dataset="crm")


def test_audit_verify_prints_its_result_also_when_the_chain_is_broken(
    analyst: Agent, runtime: Runtime, tmp_path: Path
) -> None:
    _decide(analyst)
    data_dir = ["-d", str(runtime.config.data_dir)]
    live = _json(["audit", "verify", "--json", *data_dir])
    assert isinstance(live, dict)
    assert live["ok"] is True and live["records"] == 2 and live["first_bad_seq"] is None
    assert live["unanchored"] == 2 and live["source"] == str(runtime.config.data_dir)

    export = tmp_path / "audit.jsonl"
    assert runner.invoke(app, ["audit", "export", "-o", str(export), *data_dir]).exit_code == 0
    first, *rest = export.read_text().splitlines()
    record = json.loads(first)
    record["agent"] = "spiffe://tether.local/agent/someone-else"
    export.write_text("\n".join([json.dumps(record), *rest]) + "\n")
    result = runner.invoke(app, ["audit", "verify", "--json", "--file", str(export), *data_dir])
    assert result.exit_code == 1
    broken = json.loads(result.stdout)
    assert broken["ok"] is False and broken["first_bad_seq"] == 1 and broken["problem"]
    assert "chain_broken" in result.stderr


def test_audit_verify_proof_with_json(analyst: Agent, runtime: Runtime, tmp_path: Path) -> None:
    _decide(analyst)
    assert runtime.checkpoints is not None and runtime.checkpoints.tick(force=True)
    data_dir = ["-d", str(runtime.config.data_dir)]
    proof = _json(["audit", "prove", "--seq", "2", *data_dir])
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(proof))
    checked = _json(["audit", "verify-proof", str(path), "--json", *data_dir])
    assert checked == {
        "ok": True,
        "type": "tether.audit.inclusion",
        "statement": checked["statement"],
    }
    assert "record 2 is in the log of 2 records" in checked["statement"]

    assert isinstance(proof, dict)
    proof["record"]["body"]["verdict"]["decision"] = "deny"
    path.write_text(json.dumps(proof))
    refuted = _json(["audit", "verify-proof", str(path), "--json", *data_dir], code=1)
    assert isinstance(refuted, dict) and refuted["ok"] is False and refuted["problem"]


def test_db_upgrade_and_current_with_json(tmp_path: Path) -> None:
    data_dir = ["-d", str(tmp_path / "data")]
    upgraded = _json(["db", "upgrade", "--json", *data_dir])
    assert isinstance(upgraded, dict)
    assert upgraded["before"]["revision"] is None and upgraded["applied"]
    assert upgraded["after"]["up_to_date"] is True
    assert [r["id"] for r in upgraded["applied"]][-1] == upgraded["after"]["head"]
    current = _json(["db", "current", "--json", "--check", *data_dir])
    assert current == {"store": str(tmp_path / "data"), **upgraded["after"]}


def test_a_pipe_gets_whole_times(analyst: Agent, runtime: Runtime) -> None:
    _decide(analyst)
    tailed = runner.invoke(app, ["audit", "tail", "-d", str(runtime.config.data_dir)])
    rows = [line.split("\t") for line in tailed.output.splitlines()[1:]]
    assert len(rows) == 2 and all(_is_instant(row[1]) for row in rows)


@pytest.mark.parametrize("width", [80, 200])
def test_a_report_too_wide_for_the_terminal_is_printed_one_field_a_line(width: int) -> None:
    import io

    from rich.console import Console
    from rich.table import Table

    from tether.cli.output import print_rich_table

    headers = [f"column {n}" for n in range(12)]  # as many as `report controls` has
    table = Table(*headers, title="framework alignment")
    table.add_row("least privilege", *(f"value {n}" for n in range(1, 12)))
    screen = io.StringIO()
    print_rich_table(Console(file=screen, force_terminal=True, width=width), table)
    shown = screen.getvalue()
    assert "value 11" in shown and "…" not in shown
    as_fields = "column 11: value 11" in shown
    assert as_fields is (width == 80), shown
