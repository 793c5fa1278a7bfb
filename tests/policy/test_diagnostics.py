"""Policy errors as file:line:col, one per real problem, with "did you mean"."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tether.core.errors import ConfigurationError
from tether.policy.bundle import load_policy_dir
from tether.policy.diagnostics import PolicyInvalid, Problem, did_you_mean, parse_problems

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"


def problems_after(tmp_path: Path, file: str, edit: tuple[str, str], count: int = 1) -> list[str]:
    """Load the examples with one edit to ``file``; the problems, as printed."""
    target = tmp_path / "policies"
    shutil.copytree(EXAMPLES, target)
    text = (target / file).read_text()
    assert edit[0] in text
    (target / file).write_text(text.replace(edit[0], edit[1], count))
    with pytest.raises(PolicyInvalid) as info:
        load_policy_dir(target)
    return [str(p) for p in info.value.problems]


def refused_message(tmp_path: Path, file: str, edit: tuple[str, str], count: int = 1) -> str:
    target = tmp_path / "policies"
    shutil.copytree(EXAMPLES, target)
    text = (target / file).read_text()
    (target / file).write_text(text.replace(edit[0], edit[1], count))
    with pytest.raises(ConfigurationError) as info:
        load_policy_dir(target)
    return info.value.message


def test_regression_the_missing_semicolon_of_line_9(tmp_path: Path) -> None:
    # Was "payments.cedar: policy #0 (line 2) cannot be parsed: unexpected token `@`".
    message = refused_message(tmp_path, "payments.cedar", ("<= 1000 };", "<= 1000 }"))
    assert "(1 problem)" in message
    assert "payments.cedar:9:64: missing `;` at the end of this policy" in message


def test_regression_a_mistyped_action_is_three_problems_not_nine(tmp_path: Path) -> None:
    # Was 9 problems, 6 of them without a location.
    message = refused_message(
        tmp_path, "payments.cedar", ('Action::"spend"', 'Action::"spnd"'), count=-1
    )
    assert "(3 problems)" in message
    for line in (6, 16, 26):
        assert f'payments.cedar:{line}:13: unknown action Action::"spnd"' in message


def test_a_missing_semicolon_is_reported_where_it_is_missing(tmp_path: Path) -> None:
    # Regression: this was "payments.cedar: policy #0 (line 2) cannot be parsed: unexpected
    # token `@`", the line of the policy before and the token after the real mistake.
    found = problems_after(tmp_path, "payments.cedar", ("<= 1000 };", "<= 1000 }"))
    line9 = (EXAMPLES / "payments.cedar").read_text().splitlines()[8]
    assert found == [
        f"payments.cedar:9:{len(line9)}: missing `;` at the end of this policy "
        "(the next one starts at line 11)"
    ]


def test_a_mistyped_action_is_one_problem_per_place_with_a_suggestion(tmp_path: Path) -> None:
    # Regression: 9 problems, 6 of them without a location.
    found = problems_after(
        tmp_path, "payments.cedar", ('Action::"spend"', 'Action::"spnd"'), count=-1
    )
    column = 1 + len("  action == ")
    assert [p.split(": ", 1)[0] for p in found] == [
        f"payments.cedar:{line}:{column}" for line in (6, 16, 26)
    ]
    assert all('unknown action Action::"spnd"; did you mean Action::"spend"?' in p for p in found)


def test_a_misspelt_attribute_gets_a_suggestion(tmp_path: Path) -> None:
    (found,) = problems_after(
        tmp_path, "payments.cedar", ("context.args.amount <= 0", "context.args.amont <= 0")
    )
    line = (EXAMPLES / "payments.cedar").read_text().splitlines()[28]
    assert found.startswith(f"payments.cedar:29:{line.index('amount <= 0') + 1}: ")
    assert "`args.amont`" in found and "did you mean `amount`?" in found
    assert "(policy transfers-are-positive)" in found


def test_a_misspelt_entity_type_gets_a_suggestion(tmp_path: Path) -> None:
    (found,) = problems_after(
        tmp_path, "crm.cedar", ('resource == Tool::"crm.query"', 'resource == Tol::"crm.query"')
    )
    assert "unknown entity type Tol; did you mean Tool?" in found
    text = (EXAMPLES / "crm.cedar").read_text()
    offset = text.index('resource == Tool::"crm.query"') + len("resource == ")
    line = text.count("\n", 0, offset) + 1
    column = offset - text.rfind("\n", 0, offset)
    assert found.startswith(f"crm.cedar:{line}:{column}: ")


def test_an_unknown_action_tether_does_not_ask_about_lists_the_six() -> None:
    from tether.policy.bundle import load_sources, read_policy_dir

    sources = dict(read_policy_dir(EXAMPLES))
    sources["x.cedar"] = 'permit(principal, action == Action::"fly", resource);'
    with pytest.raises(PolicyInvalid) as info:
        load_sources(sources, origin="t")
    (problem,) = info.value.problems
    assert (problem.file, problem.line, problem.col) == ("x.cedar", 1, 29)
    assert "tether asks only about the actions read, write" in problem.message


@pytest.mark.parametrize(
    ("text", "marker", "message"),
    [
        # the marker is the text the reported column must point at (its first occurrence)
        ("permit(principal, action resource);", "resource)", "unexpected token `resource`"),
        ("permit(principal, action, resource)\nwhen { context.x in [1,2 };", "};", "`}`"),
        ("permit(principal, action, resource) when { (context.x == 1 };", "};", "`}`"),
        (
            "permit(principal, action, resource) when { context.x == 1 } && true;",
            "&& true",
            "`&&`",
        ),
        ("permit(principal, action, resource) when { context.a.foo() };", "foo()", "method"),
        ('permit(principal, action, resource) whne { "x" };', "whne", "whne"),
        ('@id("a") @id("b") permit(principal, action, resource);', '@id("b")', "duplicate"),
        ('permit(principal, action, resource) when { "open };', '"open', "not closed"),
        ('permit(principal, action == Acton::"r", resource);', 'Acton::"r"', "Acton"),
        ("permit(principal, action, resource) when { true }", "", "not finished"),
    ],
)
def test_parse_errors_point_at_the_token(text: str, marker: str, message: str) -> None:
    (problem,) = parse_problems("f.cedar", text, "cedar's message")
    offset = text.index(marker) if marker else len(text)
    line = text.count("\n", 0, offset) + 1
    column = offset - text.rfind("\n", 0, offset)
    assert (problem.file, problem.line, problem.col) == ("f.cedar", line, column)
    assert message in problem.message


def test_every_broken_policy_of_a_file_is_reported() -> None:
    text = (
        "permit(principal, action resource);\n"
        'permit(principal, action == Action::"read", resource);\n'
        "forbid(principal, action, resource) when { 1 + };\n"
    )
    found = parse_problems("f.cedar", text, "")
    assert [(p.line, p.message) for p in found] == [
        (1, "unexpected token `resource`"),
        (3, "unexpected token `}`"),
    ]


def test_problems_print_as_file_line_col() -> None:
    assert str(Problem("a.cedar", "bad", 3, 7)) == "a.cedar:3:7: bad"
    assert str(Problem("a.cedar", "bad", 3)) == "a.cedar:3: bad"
    assert str(Problem("catalog.yaml", "bad")) == "catalog.yaml: bad"


def test_did_you_mean_only_suggests_close_names() -> None:
    assert did_you_mean("amont", ["amount", "to", "limit"]) == "amount"
    assert did_you_mean("zzz", ["amount", "to", "limit"]) is None


def test_a_misspelt_has_test_is_caught_though_cedar_accepts_it(tmp_path: Path) -> None:
    # `context.args has amont && context.args.amont <= 0` validates in Cedar (the test is typed
    # false), yet the policy then never sees `amount`, and reads `amont` unchecked if sent.
    (found,) = problems_after(
        tmp_path,
        "payments.cedar",
        (
            "context.args has amount && context.args.amount <= 0",
            "context.args has amont && context.args.amont <= 0",
        ),
    )
    line = (EXAMPLES / "payments.cedar").read_text().splitlines()[28]
    column = line.index("amount") + 1
    assert found.startswith(f"payments.cedar:29:{column}: `context.args has amont`")
    assert "did you mean `amount`?" in found


def test_a_has_test_cedar_already_reported_is_not_reported_twice(tmp_path: Path) -> None:
    found = problems_after(
        tmp_path,
        "payments.cedar",
        ("context.args.amount <= 0", "context.args.amont <= 0 && context.args has amont"),
    )
    assert len(found) == 1 and "`args.amont`" in found[0]


def test_attribute_suggestions_come_from_the_record_looked_in(tmp_path: Path) -> None:
    (found,) = problems_after(
        tmp_path, "payments.cedar", ("context.args.amount <= 0", 'context.intent.workflw == "x"')
    )
    assert "`intent.workflw`" in found and "did you mean `workflow`?" in found


def test_the_schema_is_read_for_names_and_records() -> None:
    import cedarpy

    from tether.policy.schema_view import SchemaNames

    schema = cedarpy.Schema.from_str(
        "namespace N { entity U = { name: String }; type T = { a: Bool }; }\n"
        "entity Agent in [Grp] { level: Long };\nentity Grp;\nentity Tool;\n"
        'entity Color enum ["red", "blue"];\n'
        '@doc("x")\naction read appliesTo { principal: [Agent], resource: [Tool], '
        "context: { args: { amount?: Long, to?: N::T, tags?: Set<String> } } };\n"
        'action "write" in [read];\n'
    )
    names = SchemaNames.of(schema)
    assert names.entity_types == {"Agent", "Grp", "Tool", "Color", "N::U"}
    assert names.actions == {"read", "write"}
    assert set(names.context_record("read", ["args"]) or {}) == {"amount", "to", "tags"}
    assert names.context_record("read", ["args", "to"]) == {"a": "Bool"}
    assert names.context_record("write", ["args"]) is None
    assert names.entity_record("Agent") == {"level": "Long"}
    assert names.entity_record("N::U") == {"name": "String"}


@pytest.mark.parametrize(
    ("schema", "where", "message"),
    [
        ("entity Agent\nentity Tool;", "1:13", "missing `;` at the end of this declaration"),
        ("entity A;\ntype X = { a: Long b: String };", "2:20", "unexpected token `b`"),
        ("entity A;\ntype X = { a: Lng };", "2:15", "unknown type Lng; did you mean Long?"),
        (
            "entity Agent;\naction read appliesTo { principal: [Agnt], resource: [Agent] };",
            "2:37",
            "unknown type Agnt; did you mean Agent?",
        ),
    ],
)
def test_schema_errors_point_at_the_token(schema: str, where: str, message: str) -> None:
    import cedarpy

    from tether.policy.diagnostics import schema_problem

    with pytest.raises(ValueError) as info:
        cedarpy.Schema.from_str(schema)
    problem = schema_problem("schema.cedarschema", schema, str(info.value))
    assert str(problem).startswith(f"schema.cedarschema:{where}: ")
    assert message in problem.message


def test_a_template_is_refused_at_its_slot() -> None:
    from tether.policy.bundle import load_sources, read_policy_dir

    sources = dict(read_policy_dir(EXAMPLES))
    sources["t.cedar"] = "// a template\npermit(principal == ?principal, action, resource);"
    with pytest.raises(PolicyInvalid) as info:
        load_sources(sources, origin="t")
    (problem,) = info.value.problems
    assert (problem.line, problem.col) == (2, 21) and "template" in problem.message
