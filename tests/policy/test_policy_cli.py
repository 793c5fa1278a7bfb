"""`tether policy …` on the command line: output that pipes, exit codes 0 ok / 1 check / 2 usage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from xml.etree import ElementTree

import pytest
from typer.testing import CliRunner

from tether.cli.main import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
ANALYST = "spiffe://tether.local/agent/analyst"
CASE = """
  - name: {name}
    agent: spiffe://tether.local/agent/analyst
    call: {{tool: crm.query, action: read, dataset: crm}}
    expect: {expect}
"""

runner = CliRunner()


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(EXAMPLES, target)
    return target


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, ["policy", *args], input=input)
    return result.exit_code, result.stdout


# -- validate ----------------------------------------------------------------------------------


def test_validate_reports_each_problem_at_file_line_col_and_exits_1(policy_dir: Path) -> None:
    payments = policy_dir / "payments.cedar"
    payments.write_text(payments.read_text().replace('Action::"spend"', 'Action::"spnd"'))
    code, out = run("validate", str(policy_dir))
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"{payments}:") for line in lines)
    assert lines[0].startswith(f"{payments}:6:13: unknown action")


def test_validate_takes_one_file(policy_dir: Path) -> None:
    code, out = run("validate", str(policy_dir / "payments.cedar"))
    assert code == 0 and out.startswith("ok: 3 policies")
    (policy_dir / "crm.cedar").write_text("permit(principal, action resource);")
    # another file's problem does not concern this one
    assert run("validate", str(policy_dir / "payments.cedar"))[0] == 0
    code, out = run("validate", str(policy_dir / "crm.cedar"))
    assert code == 1 and out.startswith(f"{policy_dir / 'crm.cedar'}:1:26: unexpected token")


def test_validate_one_file_needs_the_schema_beside_it(tmp_path: Path) -> None:
    lone = tmp_path / "lone.cedar"
    lone.write_text('permit(principal, action == Action::"read", resource);')
    code, out = run("validate", str(lone))
    assert code == 1 and "schema.cedarschema: missing" in out


def test_validate_json(policy_dir: Path) -> None:
    code, out = run("validate", str(policy_dir), "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    (policy_dir / "x.cedar").write_text("permit(principal, action, resource) when { 1 + };")
    code, out = run("validate", str(policy_dir), "--json")
    assert code == 1
    (problem,) = json.loads(out)["problems"]
    assert problem == {
        "file": str(policy_dir / "x.cedar"),
        "line": 1,
        "col": 48,
        "message": "unexpected token `}`",
    }


# -- test --------------------------------------------------------------------------------------


def write_cases(policy_dir: Path) -> Path:
    path = policy_dir / "tests" / "mixed.yaml"
    path.write_text(
        "cases:"
        + CASE.format(name="reads are allowed", expect="allow")
        + CASE.format(name="mistyped", expect="allow").replace("expect:", "expekt:")
        + CASE.format(name="reads are denied", expect="deny")
    )
    return path


def test_a_bad_case_is_reported_and_the_run_goes_on(policy_dir: Path) -> None:
    path = write_cases(policy_dir)
    code, out = run("test", str(policy_dir))
    assert code == 1
    assert f"{path}:10:5: case #2 (mistyped): unknown keys ['expekt']" in out
    assert "did you mean 'expect'?" in out
    assert f"FAIL {path}:12 reads are denied: expected deny, got allow" in out
    assert f"PASS {path}:2 reads are allowed (allow)" in out
    assert out.splitlines()[-1].startswith("26 passed, 1 failed, 1 problem")


def test_quiet_prints_only_failures_problems_and_the_summary(policy_dir: Path) -> None:
    write_cases(policy_dir)
    code, out = run("test", str(policy_dir), "-q")
    assert code == 1
    assert "PASS" not in out
    assert len(out.splitlines()) == 3  # one failure, one problem, the summary
    assert run("test", str(EXAMPLES), "-q") == (0, "25 passed, 0 failed\n")


def test_json_output(policy_dir: Path) -> None:
    write_cases(policy_dir)
    for option in (["--format", "json"], ["--json"]):
        code, out = run("test", str(policy_dir), *option)
        assert code == 1
        report = json.loads(out)
        assert report["ok"] is False
        assert report["summary"] == {"passed": 26, "failed": 1, "problems": 1}
        assert report["problems"][0]["line"] == 10
        failed = [r for r in report["results"] if not r["passed"]]
        assert [r["name"] for r in failed] == ["reads are denied"]


def test_junit_output_is_well_formed_with_failures_and_errors(policy_dir: Path) -> None:
    path = write_cases(policy_dir)
    code, out = run("test", str(policy_dir), "--format", "junit")
    assert code == 1
    root = ElementTree.fromstring(out)
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("28", "1", "1")
    suite = next(s for s in root.iter("testsuite") if s.get("name") == str(path))
    (failure,) = suite.iter("failure")
    failed = next(c for c in suite.iter("testcase") if c.find("failure") is not None)
    assert failed.get("name") == "reads are denied" and failed.get("line") == "12"
    assert "expected deny, got allow" in (failure.get("message") or "")
    (error,) = suite.iter("error")
    assert "unknown keys ['expekt']" in (error.get("message") or "")


def test_junit_for_a_passing_run() -> None:
    code, out = run("test", str(EXAMPLES), "--format", "junit")
    assert code == 0
    root = ElementTree.fromstring(out)
    assert root.get("failures") == "0" and root.get("errors") == "0"
    assert int(root.get("tests") or 0) == 25


def test_usage_errors_exit_2_and_missing_paths_4(policy_dir: Path, tmp_path: Path) -> None:
    assert run("test", str(policy_dir), "--format", "xml")[0] == 2
    # A file or directory named that does not exist is not found, as for every command.
    assert run("test", str(policy_dir), "--cases", str(tmp_path / "nope.yaml"))[0] == 4
    assert run("test", str(tmp_path / "no-such-dir"))[0] == 4


def test_policies_that_do_not_load_fail_the_run_with_their_place(policy_dir: Path) -> None:
    payments = policy_dir / "payments.cedar"
    payments.write_text(payments.read_text().replace("<= 1000 };", "<= 1000 }"))
    code, out = run("test", str(policy_dir))
    assert code == 1
    assert f"{payments}:9:" in out and "missing `;`" in out


# -- explain -----------------------------------------------------------------------------------


def test_explain_from_flags() -> None:
    code, out = run(
        "explain",
        str(EXAMPLES),
        "--agent",
        ANALYST,
        "--tool",
        "payments.transfer",
        "--action",
        "spend",
        "--arg",
        "amount=500",
    )
    assert code == 0, out
    assert out.startswith("decision: approval_required\n")
    assert "decided by: transfers-over-100-need-approval (payments.cedar:11)" in out
    assert "matched      permit             transfers-up-to-1000" in out
    assert "not matched  forbid             transfers-are-positive" in out
    assert '"amount": 500' in out


def test_explain_from_json_on_stdin_with_json_output() -> None:
    request = {
        "agent": ANALYST,
        "call": {"tool": "payments.transfer", "action": "spend", "args": {"amount": 50}},
    }
    code, out = run("explain", str(EXAMPLES), "--request", "-", "--json", input=json.dumps(request))
    assert code == 0, out
    explained = json.loads(out)
    assert explained["decision"] == "allow"
    assert explained["context"]["args"] == {"amount": 50}
    matched = [
        (p["policy_id"], p["file"], p["line"]) for p in explained["policies"] if p["satisfied"]
    ]
    assert matched == [("transfers-up-to-1000", "payments.cedar", 2)]


@pytest.mark.parametrize(
    "args",
    [
        ["--agent", ANALYST, "--tool", "t", "--action", "fly"],
        ["--agent", ANALYST, "--action", "read"],
        ["--agent", ANALYST, "--tool", "t", "--action", "read", "--arg", "novalue"],
        ["--agent", ANALYST, "--tool", "t", "--action", "read", "--args", "[1]"],
        ["--request", "-", "--tool", "t"],
    ],
)
def test_explain_usage_errors_exit_2(args: list[str]) -> None:
    code, _ = run("explain", str(EXAMPLES), *args, input="{}")
    assert code == 2


def test_explain_against_invalid_policies_exits_1(policy_dir: Path) -> None:
    (policy_dir / "x.cedar").write_text("permit(principal, action resource);")
    code, out = run(
        "explain", str(policy_dir), "--agent", ANALYST, "--tool", "t", "--action", "read"
    )
    assert code == 1 and f"{policy_dir / 'x.cedar'}:1:26:" in out


@pytest.mark.parametrize("command", ["validate", "test", "explain", "context-schema", "fmt"])
def test_every_policy_command_has_help(command: str) -> None:
    code, out = run(command, "--help")
    assert code == 0 and "Usage" in out


def test_a_file_that_is_not_utf8_fails_the_check(policy_dir: Path) -> None:
    (policy_dir / "bad.cedar").write_bytes(b"\xff\xfe")
    code, _ = run("validate", str(policy_dir))
    assert code == 1
    code, out = run("validate", str(policy_dir / "bad.cedar"))
    assert code == 1 and "UTF-8" in out


_GOOD = json.dumps(
    {
        "agent": ANALYST,
        "call": {"tool": "crm.query", "action": "read", "dataset": "crm", "args": {"q": "c-1"}},
    }
)


def test_explain_reads_a_good_request_document() -> None:
    # The base the bad documents below differ from: alone, it is explained.
    result = runner.invoke(app, ["policy", "explain", str(EXAMPLES), "--request", "-"], input=_GOOD)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "text",
    [
        _GOOD[:-3],
        _GOOD.replace('"q": "c-1"', '"q": "c-1", "q": "c-2"'),  # which value would count?
        _GOOD.replace("c-1", "\\ud800"),  # a lone surrogate
        _GOOD.replace("c-1", "x" * (1024 * 1024)),  # over the 1 MiB a request may take
    ],
    ids=["malformed", "duplicate-key", "lone-surrogate", "oversized"],
)
def test_explain_refuses_a_bad_request_document(text: str) -> None:
    result = runner.invoke(app, ["policy", "explain", str(EXAMPLES), "--request", "-"], input=text)
    assert result.exit_code == 2, result.output
    assert "--request -" in result.stderr
