"""``tether report`` on an exported file and on a store; empty logs; malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from reports.scenario import ANALYST, TRIAGE, Recorded
from tether.cli.main import app as main
from tether.cli.report import app
from tether.runtime import open_store

runner = CliRunner()
WIDE = {"COLUMNS": "250"}
COMMANDS = ["privileges", "risks", "controls", "flips"]


def run(*args: str) -> Result:
    return runner.invoke(app, list(args), env=WIDE)


def as_json(result: Result) -> dict[str, object]:
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)], ids=str)
def test_every_report_command_has_help(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_file_and_data_dir_give_the_same_report(day: Recorded, command: str) -> None:
    from_file = as_json(run(command, "--file", str(day.export), "--json"))
    from_store = as_json(run(command, "--data-dir", str(day.data_dir), "--json"))
    assert from_file == from_store
    assert from_file["records"] == 33


def test_an_export_from_tether_audit_export_reads_past_its_checkpoint(
    day: Recorded, tmp_path: Path
) -> None:
    signed = tmp_path / "signed.jsonl"
    exported = runner.invoke(main, ["audit", "export", "-d", str(day.data_dir), "-o", str(signed)])
    assert exported.exit_code == 0, exported.output
    assert "checkpoint" in json.loads(signed.read_text().splitlines()[-1])
    from_file = as_json(run("privileges", "--file", str(signed), "--json"))
    assert from_file == as_json(run("privileges", "--data-dir", str(day.data_dir), "--json"))


def test_privileges_table_and_json(day: Recorded) -> None:
    result = run("privileges", "--file", str(day.export))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "least privilege: granted against used" in out
    row = next(line for line in out.splitlines() if ANALYST in line and TRIAGE in line)
    cells = row.split("\t")  # in a pipe: tab-separated, whole
    assert cells == [
        ANALYST,
        TRIAGE,
        "1",
        "10",
        "3",
        "0.30",
        "crm.update, email.send",
        "files.share: write",
        "crm.query: docs, tickets; files.share: tickets",
    ]
    assert "all: 5 of 15 granted triples used, ratio 0.33; 1 decision(s) on no task" in out
    assert "used under break-glass: crm.purge delete crm" in out
    assert '@id("least-privilege.analyst.support-triage.1")' in out
    report = as_json(run("privileges", "--file", str(day.export), "--json"))
    assert (report["granted"], report["used"], report["ratio"]) == (15, 5, 0.3333)
    [triage] = [
        g
        for g in report["groups"]  # type: ignore[attr-defined]
        if g["agent"] == ANALYST and g["workflow"] == TRIAGE
    ]
    assert triage["ratio"] == 0.3 and triage["unused_actions"] == {"files.share": ["write"]}


def test_the_window_options(day: Recorded) -> None:
    later = as_json(
        run("privileges", "-f", str(day.export), "--since", "2026-11-28T12:20:00Z", "--json")
    )
    assert [g["workflow"] for g in later["groups"]] == [  # type: ignore[attr-defined]
        "monthly-report",
        TRIAGE,
        TRIAGE,
    ]
    assert later["window"] == {"since": "2026-11-28T12:20:00+00:00", "until": None}
    risks = as_json(run("risks", "-f", str(day.export), "--until", "2026-11-28T12:20", "--json"))
    assert (risks["denials"], risks["approvals"]) == (3, 1)
    bad = run("risks", "-f", str(day.export), "--since", "yesterday")
    assert bad.exit_code == 2
    assert "--since must be an ISO-8601 time" in bad.stderr
    backwards = run(
        "risks", "-f", str(day.export), "--since", "2026-11-29", "--until", "2026-11-28"
    )
    assert backwards.exit_code == 2 and "--since must be before --until" in backwards.stderr


def test_risks_and_controls_tables(day: Recorded) -> None:
    risks = run("risks", "--file", str(day.export))
    assert risks.exit_code == 0, risks.output
    assert "ASI05\tUnexpected Code Execution (RCE)\t1\t0" in risks.stdout
    assert "(no task)" in risks.stdout
    assert "5 denial(s) and 1 approval request(s) among 14 decision(s)" in risks.stdout
    controls = run("controls", "--file", str(day.export))
    assert controls.exit_code == 0, controls.output
    out = controls.stdout
    assert "framework alignment" in out and "NHI5 Overprivileged NHI" in out
    assert "not covered, from what the log shows:" in out
    assert "no review was written" in out
    assert "NHI6 Insecure Cloud Deployment Configurations" in out  # outside tether's reach


def test_html_option_writes_a_self_contained_page(day: Recorded, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = run("privileges", "--file", str(day.export), "--html", str(out))
    assert result.exit_code == 0, result.output
    assert f"wrote the HTML report to {out}" in result.stdout
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and page.count("<svg ") == 4
    assert "<script" not in page


def test_both_sources_at_once_is_refused(day: Recorded) -> None:
    result = run("risks", "--file", str(day.export), "--data-dir", str(day.data_dir))
    assert result.exit_code == 2
    assert "give --data-dir or --file, not both" in result.stderr


def test_a_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    missing = run("risks", "--file", str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 4 and "does not exist" in missing.stderr  # not found
    no_store = run("controls", "--data-dir", str(tmp_path / "empty-dir"))
    assert no_store.exit_code == 4 and "no tether store in" in no_store.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_an_empty_file_or_store_says_there_is_nothing_to_report(
    command: str, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    result = run(command, "--file", str(empty))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"no audit records in {empty}: nothing to report yet"
    store = open_store(tmp_path / "data")
    store.close()
    result = run(command, "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 0, result.output
    assert "no audit records in" in result.stdout and "nothing to report yet" in result.stdout
    assert as_json(run(command, "--file", str(empty), "--json"))["records"] == 0


def test_an_empty_window_says_so(day: Recorded, tmp_path: Path) -> None:
    result = run("privileges", "-f", str(day.export), "--since", "2027-01-01T00:00:00Z")
    assert result.exit_code == 0, result.output
    assert "no audit records from 2027-01-01T00:00:00+00:00 until the last record" in result.stdout
    assert "(33 outside the window): nothing to report" in result.stdout
    page = tmp_path / "empty.html"
    with_html = run(
        "privileges", "-f", str(day.export), "--since", "2027-01-01", "--html", str(page)
    )
    assert with_html.exit_code == 0 and 'id="no-records"' in page.read_text(encoding="utf-8")


def _malformed_cases(day: Recorded) -> dict[str, tuple[str, str]]:
    lines = day.export.read_text(encoding="utf-8").splitlines()
    decision = json.loads(lines[1])
    assert decision["kind"] == "decision"
    no_verdict = {**decision, "body": {k: v for k, v in decision["body"].items() if k != "verdict"}}
    odd_risk = json.loads(lines[1])
    odd_risk["body"]["verdict"]["risks"] = ["ASI99"]
    missing = {k: v for k, v in decision.items() if k != "seq"}
    return {
        "not json": (lines[0] + "\n{not json\n", "line 2 of"),
        "not an object": ("[1, 2]\n", "line 1 of"),
        "missing field": (json.dumps(missing) + "\n", "missing field 'seq'"),
        "unknown kind": (json.dumps({**decision, "kind": "party"}) + "\n", "line 1 of"),
        "bad body": (
            lines[0] + "\n" + json.dumps(no_verdict) + "\n",
            "record 2 (decision): 'verdict' must be an object",
        ),
        "unknown risk": (json.dumps(odd_risk) + "\n", "unknown risk id 'ASI99'"),
        "bad time": (json.dumps({**decision, "at": "noon"}) + "\n", "'at' is not an ISO-8601"),
    }


@pytest.mark.parametrize("command", COMMANDS)
def test_a_malformed_file_is_a_one_line_error_and_exit_1(
    day: Recorded, tmp_path: Path, command: str
) -> None:
    for name, (content, expected) in _malformed_cases(day).items():
        path = tmp_path / f"{name.replace(' ', '-')}.jsonl"
        path.write_text(content, encoding="utf-8")
        result = run(command, "--file", str(path))
        assert result.exit_code == 1, (name, result.output)
        assert result.stdout == "", name
        error = result.stderr.strip()
        assert len(error.splitlines()) == 1, (name, error)
        assert error.startswith("error (malformed_audit): "), (name, error)
        assert expected in error, (name, error)
        assert str(path) in error, (name, error)


def test_tether_data_dir_in_the_environment_does_not_clash_with_file(day: Recorded) -> None:
    result = runner.invoke(
        app,
        ["risks", "--file", str(day.export), "--json"],
        env={**WIDE, "TETHER_DATA_DIR": "/nonexistent/tether"},
    )
    assert as_json(result)["denials"] == 5


def test_the_proposed_cedar_parses_when_piped_at_any_width(day: Recorded) -> None:
    from tether.policy import format_policy_text

    result = runner.invoke(app, ["privileges", "--file", str(day.export)], env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    policies = []
    for block in result.stdout.split("Cedar policy:\n")[1:]:
        lines = block.splitlines()
        end = next((n for n, line in enumerate(lines) if line.startswith("─")), len(lines))
        policies.append("\n".join(lines[:end]))
    assert any("@id(" in cedar for cedar in policies)
    for cedar in policies:
        format_policy_text(cedar)  # raises on text that is not Cedar
