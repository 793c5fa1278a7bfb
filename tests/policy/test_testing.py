"""The YAML case runner behind `tether policy test`: it runs cases and refuses malformed ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tether.core.errors import ConfigurationError
from tether.core.verdict import Decision
from tether.policy.testing import load_case_file, run_policy_suite, run_policy_tests

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
CASE = """
  - name: {name}
    agent: spiffe://tether.local/agent/analyst
    call: {{tool: crm.query, action: read, dataset: crm}}
    expect: {expect}
"""


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(EXAMPLES, target)
    return target


def test_the_examples_pass() -> None:
    results = run_policy_tests(EXAMPLES)
    assert len(results) >= 15
    assert all(r.passed for r in results), [r.describe() for r in results if not r.passed]


def test_a_wrong_expectation_fails_and_says_why(policy_dir: Path) -> None:
    (policy_dir / "tests" / "wrong.yaml").write_text(
        "cases:"
        + CASE.format(name="reads are allowed", expect="allow")
        + CASE.format(name="reads are denied", expect="deny")
    )
    results = run_policy_tests(policy_dir, policy_dir / "tests" / "wrong.yaml")
    assert [r.passed for r in results] == [True, False]
    failed = results[1]
    assert failed.expected is Decision.DENY and failed.actual is Decision.ALLOW
    assert failed.describe().startswith("wrong.yaml :: reads are denied: expected deny, got allow")


def test_every_expectation_is_checked(policy_dir: Path) -> None:
    path = policy_dir / "tests" / "detail.yaml"
    path.write_text(
        "cases:\n"
        "  - name: all wrong but the decision\n"
        "    agent: spiffe://tether.local/agent/analyst\n"
        "    call: {tool: crm.query, action: read, dataset: crm}\n"
        "    expect: allow\n"
        "    expect_policy_ids: [other]\n"
        "    expect_reason: policy_forbids\n"
        "    expect_risks: [ASI05]\n"
        "    expect_obligations: [{kind: redact, value: ssn}]\n"
    )
    (result,) = run_policy_tests(policy_dir, path)
    assert len(result.problems) == 4
    text = result.describe()
    for word in ("policy ids", "reason policy_forbids", "risks", "obligations"):
        assert word in text


def test_inline_policies_replace_the_directorys(policy_dir: Path) -> None:
    path = policy_dir / "tests" / "inline.yaml"
    path.write_text(
        "policies: |\n"
        '  @id("only")\n'
        '  permit(principal, action == Action::"delete", resource == Tool::"crm.query");\n'
        "cases:"
        + CASE.format(name="the directory's permit is gone", expect="deny")
        + "  - name: the inline permit applies\n"
        "    agent: spiffe://tether.local/agent/analyst\n"
        "    call: {tool: crm.query, action: delete, dataset: crm}\n"
        "    expect: allow\n"
        "    expect_policy_ids: [only]\n"
    )
    results = run_policy_tests(policy_dir)
    assert all(r.passed for r in results), [r.describe() for r in results if not r.passed]
    assert {r.file for r in results} == {"examples.yaml", "inline.yaml"}


def test_broken_inline_policies_are_named(policy_dir: Path) -> None:
    path = policy_dir / "tests" / "broken.yaml"
    path.write_text("policies: 'permit(principal'\ncases:" + CASE.format(name="x", expect="allow"))
    with pytest.raises(
        ConfigurationError, match=r"broken\.yaml: policies: unexpected end of input"
    ):
        run_policy_tests(policy_dir, path)


def test_broken_inline_policies_are_placed_in_the_case_file(policy_dir: Path) -> None:
    path = policy_dir / "tests" / "block.yaml"
    path.write_text(
        "policies: |\n"
        '  permit(principal, action == Action::"read", resource);\n'
        "  permit(principal, action resource);\n"
        "cases:" + CASE.format(name="x", expect="allow")
    )
    report = run_policy_suite(policy_dir, path)
    assert report.results == ()
    (problem,) = report.problems
    column = 3 + len("permit(principal, action ")
    assert str(problem) == f"{path}:3:{column}: unexpected token `resource`"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("cases: []", "non-empty list"),
        ("[1, 2]", "must be a mapping"),
        ("cases: [1]", "case #1: must be a mapping"),
        ("cases:\n  - {name: a}", "case #1 (a): call must be"),
        ("cases: [", "not valid YAML"),
        ("policies: 3\ncases: []", "policies must be Cedar text"),
        ("case: []", "must be a mapping with `cases`"),
    ],
)
def test_malformed_files_are_refused(tmp_path: Path, body: str, problem: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ConfigurationError) as info:
        load_case_file(path)
    assert str(path) in info.value.message
    assert problem in info.value.message


@pytest.mark.parametrize(
    ("replace", "problem"),
    [
        (("expect: allow", "expect: maybe"), "expect must be one of"),
        (("expect: allow", "expected: allow"), "unknown keys ['expected']"),
        (("action: read", "action: fly"), "call.action must be one of"),
        (("tool: crm.query", "tool: crm.query, tools: x"), "call: unknown keys ['tools']"),
        (("dataset: crm", "dataset: crm, args: {when: 2024-01-01}"), "not a JSON value"),
        (("dataset: crm", "dataset: crm, classification: secret"), "classification"),
        (("spiffe://tether.local/agent/analyst", "spiffe://Bad Domain/x"), "agent:"),
        (("expect: allow", "expect: allow\n    expect_reason: nope"), "is not a reason code"),
        (("expect: allow", "expect: allow\n    expect_risks: [ASI99]"), "expect_risks"),
        (("expect: allow", "expect: allow\n    expect_policy_ids: p"), "expect_policy_ids"),
        (("expect: allow", "expect: allow\n    expect_obligations: [x]"), "expect_obligations"),
        (("expect: allow", "expect: allow\n    dataflow: secret"), "dataflow must be one of"),
        (
            ("expect: allow", "expect: allow\n    expect_observed: [{policy_id: p, would: maybe}]"),
            "expect_observed: would must be one of",
        ),
        (("expect: allow", "expect: allow\n    expect_observed: [p]"), "expect_observed items"),
    ],
)
def test_malformed_cases_name_the_case(
    tmp_path: Path, replace: tuple[str, str], problem: str
) -> None:
    path = tmp_path / "bad.yaml"
    good = CASE.format(name="first", expect="allow")
    path.write_text("cases:" + good + CASE.format(name="second", expect="allow").replace(*replace))
    with pytest.raises(ConfigurationError) as info:
        load_case_file(path)
    assert "case #2 (second)" in info.value.message
    assert problem in info.value.message


def test_duplicate_case_names_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("cases:" + CASE.format(name="same", expect="allow") * 2)
    with pytest.raises(ConfigurationError, match="same name"):
        load_case_file(path)


def test_a_missing_case_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no such case file"):
        run_policy_tests(EXAMPLES, tmp_path / "nope")


def test_a_non_spiffe_agent_is_an_opaque_workload(tmp_path: Path) -> None:
    path = tmp_path / "oidc.yaml"
    path.write_text(
        "cases:\n"
        "  - name: an OIDC workload\n"
        "    agent: https://issuer.example#ci-bot\n"
        "    call: {tool: crm.update, action: write, dataset: tickets}\n"
        "    expect: allow\n"
    )
    (result,) = run_policy_tests(EXAMPLES, path)
    assert result.passed, result.describe()


def test_a_bad_case_is_reported_at_its_line_and_the_others_still_run(policy_dir: Path) -> None:
    path = policy_dir / "tests" / "typo.yaml"
    path.write_text(
        "cases:"
        + CASE.format(name="first", expect="allow")
        + CASE.format(name="second", expect="allow").replace("expect:", "expekt:")
        + CASE.format(name="third", expect="deny")
    )
    report = run_policy_suite(policy_dir, path)
    assert [(r.name, r.passed) for r in report.results] == [("first", True), ("third", False)]
    (problem,) = report.problems
    line = path.read_text().splitlines().index("    expekt: allow") + 1
    assert (problem.file, problem.line, problem.col) == (str(path), line, 5)
    assert "case #2 (second): unknown keys ['expekt'] (did you mean 'expect'?)" in problem.message
    assert not report.ok


def test_results_carry_the_line_of_their_case(policy_dir: Path) -> None:
    path = policy_dir / "tests" / "lines.yaml"
    path.write_text("cases:" + CASE.format(name="a", expect="allow") * 1)
    (result,) = run_policy_suite(policy_dir, path).results
    assert result.line == 2 and result.where == f"{path}:2"


def test_a_yaml_error_is_reported_with_its_line_and_other_files_run(policy_dir: Path) -> None:
    (policy_dir / "tests" / "broken.yaml").write_text("cases:\n  - name: [unclosed\n")
    report = run_policy_suite(policy_dir)
    (problem,) = report.problems
    assert problem.file.endswith("broken.yaml") and problem.line == 3
    assert "not valid YAML" in problem.message
    assert report.results and all(r.passed for r in report.results)


def test_policies_that_do_not_load_are_problems_at_their_place(policy_dir: Path) -> None:
    payments = policy_dir / "payments.cedar"
    payments.write_text(payments.read_text().replace("<= 1000 };", "<= 1000 }"))
    report = run_policy_suite(policy_dir)
    assert report.results == ()
    (problem,) = report.problems
    assert (problem.file, problem.line) == (str(payments), 9)
