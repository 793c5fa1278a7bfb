"""Loading a policy directory: every problem is refused with the file, the policy and why."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tether.core.errors import ConfigurationError, ErrorCode
from tether.core.risks import Risk
from tether.core.scope import ActionKind, Classification
from tether.policy.bundle import PolicyBundle, load_policy_dir, load_sources, read_policy_dir
from tether.policy.meta import Effect

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
BASE = {
    name: text
    for name, text in read_policy_dir(EXAMPLES).items()
    if name in ("schema.cedarschema", "catalog.yaml")
}


def load(**files: str) -> PolicyBundle:
    sources = dict(BASE)
    sources.update({name.replace("__", "."): text for name, text in files.items()})
    return load_sources(sources, origin="test")


def refused(**files: str) -> str:
    with pytest.raises(ConfigurationError) as info:
        load(**files)
    assert info.value.code is ErrorCode.POLICY_INVALID
    return info.value.message


def test_the_examples_load() -> None:
    bundle = load_policy_dir(EXAMPLES)
    assert len(bundle.policies) >= 8
    assert bundle.catalog.classification("payroll") is Classification.RESTRICTED
    assert bundle.catalog.classification("nope") is None
    assert len(bundle.revision) == 64


def test_a_syntax_error_names_the_file_line_and_column() -> None:
    message = refused(
        good__cedar='permit(principal, action == Action::"read", resource);',
        broken__cedar=(
            "// two policies, the second broken\n"
            'permit(principal, action == Action::"read", resource);\n'
            "\n"
            'forbid(principal, action == Action::"read", resource) when { context.args == };\n'
        ),
    )
    column = (
        1
        + 'forbid(principal, action == Action::"read", resource) when { context.args == }'.index(
            "}"
        )
    )
    assert f"broken.cedar:4:{column}: unexpected token `}}`" in message
    assert "good.cedar" not in message


def test_a_schema_violation_points_at_the_attribute() -> None:
    message = refused(
        rules__cedar=(
            '@id("reads-unguarded")\n'
            'permit(principal, action == Action::"read", resource) when { context.args.limit < 5 };'
        )
    )
    column = 1 + len('permit(principal, action == Action::"read", resource) when { context.args.')
    assert (
        f"rules.cedar:2:{column}: unable to guarantee safety of access to optional attribute"
        in message
    )
    assert "`args.limit`" in message and "test `context.args has limit` first" in message
    assert "(policy reads-unguarded)" in message


def test_an_unknown_action_is_refused() -> None:
    message = refused(bad__cedar='permit(principal, action == Action::"fly", resource);')
    assert 'bad.cedar:1:29: unknown action Action::"fly"' in message


def test_duplicate_ids_name_both_places() -> None:
    message = refused(
        a__cedar='@id("same")\npermit(principal, action == Action::"read", resource);',
        b__cedar='\n\n@id("same")\nforbid(principal, action == Action::"read", resource);',
    )
    assert "b.cedar:3:1: duplicate policy id 'same', already used at a.cedar:1" in message


def test_a_bad_risk_is_refused() -> None:
    message = refused(r__cedar='@risk("ASI05,ASI99")\npermit(principal, action, resource);')
    assert "r.cedar:1:1: @risk names 'ASI99'" in message
    assert "'ASI99'" in message and "OWASP" in message


@pytest.mark.parametrize(
    ("policy", "why"),
    [
        ('@row_cap("lots")\npermit(principal, action, resource);', "@row_cap"),
        ('@row_cap("0")\npermit(principal, action, resource);', "@row_cap"),
        ('@redact("a b")\npermit(principal, action, resource);', "@redact"),
        ('@approval_required("x")\npermit(principal, action, resource);', "forbid"),
        ('@approval_required("")\nforbid(principal, action, resource);', "must not be empty"),
        ('@row_cap("5")\nforbid(principal, action, resource);', "permit"),
        ('@id("has space")\npermit(principal, action, resource);', "policy id"),
        ("permit(principal == ?principal, action, resource);", "template"),
        ('permit(principal, action in Action::"everything", resource);', "action groups"),
    ],
)
def test_annotations_and_shapes_tether_refuses(policy: str, why: str) -> None:
    assert why in refused(p__cedar=policy)


def test_every_problem_is_reported_at_once() -> None:
    message = refused(
        one__cedar='@risk("nope")\npermit(principal, action, resource);',
        two__cedar="permit(principal, action, resource) when {",
    )
    assert "(2 problems)" in message
    assert "one.cedar" in message and "two.cedar" in message


def test_ids_default_to_file_stem_and_index() -> None:
    bundle = load(
        rules__cedar=(
            'permit(principal, action == Action::"read", resource);\n'
            '@id("named")\npermit(principal, action == Action::"write", resource);\n'
            'forbid(principal, action == Action::"delete", resource);\n'
        )
    )
    assert [p.policy_id for p in bundle.policies] == ["rules.0", "named", "rules.2"]


def test_policy_metadata_is_read_from_annotations_and_head() -> None:
    bundle = load(
        p__cedar=(
            '@id("x")\n@risk("asi05, ASI01")\n@reason("because")\n'
            'forbid(principal, action in [Action::"write", Action::"delete"],'
            ' resource == Tool::"t");'
        )
    )
    (meta,) = bundle.policies
    assert meta.effect is Effect.FORBID
    assert meta.risks == {Risk.ASI05, Risk.ASI01}
    assert meta.reason == "because"
    assert meta.actions == {ActionKind.WRITE, ActionKind.DELETE}
    assert meta.tool == "t"
    assert meta.file == "p.cedar" and meta.line == 1


@pytest.mark.parametrize(
    ("schema", "why"),
    [
        ("entity Agent; entity", "cannot parse the schema"),
        (
            "entity Agent; entity Tool;\n"
            "action read appliesTo { principal: [Agent], resource: [Tool] };",
            "does not fit the request",
        ),
        (
            "entity Agent; entity Tool; action all;\n"
            "action read, write, delete, send, execute, spend in [all] appliesTo "
            "{ principal: [Agent], resource: [Tool] };",
            "action group",
        ),
    ],
)
def test_schemas_that_do_not_fit_are_refused(schema: str, why: str) -> None:
    assert why in refused(schema__cedarschema=schema)


def test_a_schema_with_a_required_argument_is_refused() -> None:
    schema = BASE["schema.cedarschema"].replace("amount?: Long", "amount: Long")
    message = refused(schema__cedarschema=schema)
    assert "schema.cedarschema: does not fit the request tether sends" in message
    assert "amount" in message


@pytest.mark.parametrize(
    ("catalog", "why"),
    [
        (
            "datasets: {crm: {classification: secret}}",
            "catalog.yaml:1:34: datasets.crm.classification: must be one of 'public', "
            "'internal', 'confidential' or 'restricted'",
        ),
        (
            "datasets: {crm: confidential}",
            "catalog.yaml:1:17: datasets.crm: must be a mapping (keys: classification, "
            "description, trusted)",
        ),
        (
            "dataset: {}",
            "catalog.yaml:1:1: dataset: unknown key; did you mean 'datasets'?",
        ),
        (
            "datasets: {crm: {classification: public, owner: bob}}",
            "catalog.yaml:1:42: datasets.crm.owner: unknown key; allowed here: classification, "
            "description, trusted",
        ),
        ("datasets: [", "catalog.yaml:1:12: not valid YAML"),
        (
            "datasets: {'bad name': {classification: public}}",
            "catalog.yaml:1:12: datasets.bad name: 'bad name' is not a valid dataset name",
        ),
        (
            "datasets: {crm: {classification: public, trusted: yes please}}",
            "catalog.yaml:1:51: datasets.crm.trusted: must be true or false",
        ),
        (
            "tools: {web.browse: {sinks: {url: {needs: always}}}}",
            "catalog.yaml:1:43: tools.web.browse.sinks.url.needs: must be one of 'trusted' or "
            "'not_only_untrusted'",
        ),
        (
            "tools: {web.browse: {sinks: {url: {}}}}",
            "catalog.yaml:1:30: tools.web.browse.sinks.url: required key 'needs' is missing",
        ),
        (
            "tools: {web.browse: {sinks: {url: {needs: trusted, on_failure: ask}}}}",
            "catalog.yaml:1:64: tools.web.browse.sinks.url.on_failure: must be one of 'deny' or "
            "'approval_required'",
        ),
        (
            "tools: {web.browse: {sinks: {url: {needs: trusted, kinds: [urls]}}}}",
            "catalog.yaml:1:60: tools.web.browse.sinks.url.kinds[0]: must be one of",
        ),
        (
            "tools: {web.browse: {sinks: {url: {needs: trusted, kinds: [urls]}}}}",
            "did you mean 'url'?",
        ),
        (
            "tools: {web.browse: {sinks: {url: {needs: trusted, kinds: []}}}}",
            "catalog.yaml:1:59: tools.web.browse.sinks.url.kinds: must not be empty",
        ),
        (
            "tools: {web.browse: {sinks: {'a..b': {needs: trusted}}}}",
            "catalog.yaml:1:30: tools.web.browse.sinks.a..b: 'a..b' is not an argument name",
        ),
        (
            "tools: {web.browse: {owner: bob}}",
            "catalog.yaml:1:22: tools.web.browse.owner: unknown key; allowed here: description, "
            "parts, sinks, trusted",
        ),
        ("tools: [web.browse]", "catalog.yaml:1:8: tools: must be a mapping"),
        ("trusted_values: [1]", "catalog.yaml:1:18: trusted_values[0]: must be a string"),
        (
            "tools: {'bad tool!': {trusted: true}}",
            "catalog.yaml:1:9: tools.bad tool!: 'bad tool!' is not a valid tool name",
        ),
    ],
)
def test_bad_catalogs_are_refused(catalog: str, why: str) -> None:
    message = refused(catalog__yaml=catalog)
    assert why in message


def test_missing_schema_and_catalog_are_named(tmp_path: Path) -> None:
    (tmp_path / "p.cedar").write_text("permit(principal, action, resource);")
    with pytest.raises(ConfigurationError) as info:
        load_policy_dir(tmp_path)
    assert "schema.cedarschema: missing" in info.value.message
    assert "catalog.yaml: missing" in info.value.message


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_policy_dir(tmp_path / "nope")


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "p")
    (tmp_path / "p" / "bad.cedar").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigurationError, match=r"bad\.cedar: not UTF-8"):
        load_policy_dir(tmp_path / "p")


def test_revision_follows_content_and_names_only() -> None:
    a = load(p__cedar="permit(principal, action, resource);")
    same = load(p__cedar="permit(principal, action, resource);")
    edited = load(p__cedar="permit(principal, action, resource); ")
    renamed = load(q__cedar="permit(principal, action, resource);")
    revisions = [b.revision for b in (a, same, edited, renamed)]
    assert revisions[0] == revisions[1]
    assert len(set(revisions)) == 3


def test_other_files_in_the_directory_are_ignored(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "p")
    before = load_policy_dir(tmp_path / "p").revision
    (tmp_path / "p" / "README.md").write_text("notes")
    (tmp_path / "p" / "tests" / "more.yaml").write_text("cases: []")
    assert load_policy_dir(tmp_path / "p").revision == before
