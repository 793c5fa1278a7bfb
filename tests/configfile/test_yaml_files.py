"""Every YAML file tether reads reports every problem at its file:line:col, with "did you mean".

One file of each kind with several mistakes: each mistake is reported, at the line and column of
the key or value it is about, in one error that keeps the code callers rely on.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tether.cli.main import app
from tether.configfile import ProblemsError
from tether.core.errors import ConfigurationError, ErrorCode
from tether.credentials.downstream import CREDENTIALS_FILE, load_downstreams
from tether.credentials.jwt_lease import ScopedJwtIssuer
from tether.identity.keys import SigningKey
from tether.policy.bundle import load_policy_dir
from tether.policy.cases import read_case_file
from tether.policy.catalog import CatalogProblem, parse_catalog
from tether.policy.diagnostics import PolicyInvalid
from tether.policy.flows import load_egress, load_read_floors, load_workflows
from tether.proxy import load_config, parse_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"


def messages(error: ProblemsError, folder: Path | None = None) -> list[str]:
    out = [str(p) for p in error.problems]
    return [m.replace(f"{folder}/", "") for m in out] if folder else out


def test_a_catalog_reports_each_mistake_at_its_place() -> None:
    text = (
        "datasets:\n"
        "  crm:\n"
        "    clasification: confidential\n"
        "  tickets: {classification: internl}\n"
        "  'bad name': {classification: public}\n"
        "  docs: public\n"
        "owner: data-team\n"
    )
    with pytest.raises(CatalogProblem) as caught:
        parse_catalog(text)
    assert caught.value.code is ErrorCode.POLICY_INVALID
    assert messages(caught.value) == [
        "catalog.yaml:2:3: datasets.crm: required key 'classification' is missing",
        "catalog.yaml:3:5: datasets.crm.clasification: unknown key; did you mean 'classification'?",
        "catalog.yaml:4:29: datasets.tickets.classification: must be one of 'public', "
        "'internal', 'confidential' or 'restricted'; did you mean 'internal'?",
        "catalog.yaml:5:3: datasets.bad name: 'bad name' is not a valid dataset name (letters, "
        "digits, '.', '_', '-'; at most 128)",
        "catalog.yaml:6:9: datasets.docs: must be a mapping (keys: classification, description, "
        "trusted)",
        "catalog.yaml:7:1: owner: unknown key; allowed here: datasets, tools, trusted_authors, "
        "trusted_values",
    ]


WORKFLOWS = """\
workflows:
  refund:
    strat: [lookup]
    steps:
      lookup:
        uses: [{tool: crm.query, actions: [raed]}]
        next: [refnd]
        repeatable: yes please
      refund:
        uses: [{tool: payments.transfer, actions: [spend]}]
        budgets: {records: -1, dollars: 5}
    anomaly: {history: 5, min_history: 10}
"""


def test_a_workflows_file_reports_each_mistake_at_its_place(tmp_path: Path) -> None:
    (tmp_path / "workflows.yaml").write_text(WORKFLOWS, encoding="utf-8")
    with pytest.raises(ProblemsError) as caught:
        load_workflows(tmp_path)
    assert caught.value.code is ErrorCode.POLICY_INVALID
    assert messages(caught.value) == [
        "workflows.yaml:2:3: workflows.refund: required key 'start' is missing",
        "workflows.yaml:3:5: workflows.refund.strat: unknown key; did you mean 'start'?",
        "workflows.yaml:6:44: workflows.refund.steps.lookup.uses[0].actions[0]: must be one of "
        "'read', 'write', 'delete', 'send', 'execute' or 'spend'; did you mean 'read'?",
        "workflows.yaml:7:16: workflows.refund.steps.lookup.next[0]: no step named 'refnd'; "
        "did you mean 'refund'?",
        "workflows.yaml:8:21: workflows.refund.steps.lookup.repeatable: must be true or false",
        "workflows.yaml:11:28: workflows.refund.steps.refund.budgets.records: must be at least 0",
        "workflows.yaml:11:32: workflows.refund.steps.refund.budgets.dollars: unknown key; "
        "allowed here: by_classification, bytes, calls_per_minute, records, spend",
        "workflows.yaml:12:24: workflows.refund.anomaly.history: must be at least min_history "
        "(10), not 5",
    ]
    assert caught.value.message.startswith("workflows.yaml has 8 problems:\n  workflows.yaml:2:3")


def test_a_dataflow_file_reports_each_mistake_at_its_place(tmp_path: Path) -> None:
    (tmp_path / "dataflow.yaml").write_text(
        "egress_sinks: [email.send, 'no spaces']\n"
        "read_floors:\n"
        "  default: many\n"
        "  tool: {docs.search: 10}\n"
        "  datasets: {crm: -5}\n",
        encoding="utf-8",
    )
    expected = [
        "dataflow.yaml:1:28: egress_sinks[1]: 'no spaces' is not a valid tool name (letters, "
        "digits, '.', '_', '-'; at most 128)",
        "dataflow.yaml:3:12: read_floors.default: must be a whole number",
        "dataflow.yaml:4:3: read_floors.tool: unknown key; did you mean 'tools'?",
        "dataflow.yaml:5:19: read_floors.datasets.crm: must be at least 0",
    ]
    for load in (load_egress, load_read_floors):
        with pytest.raises(ProblemsError) as caught:
            load(tmp_path)
        assert caught.value.code is ErrorCode.POLICY_INVALID
        assert messages(caught.value) == expected


CREDENTIALS = """\
issuers:
  - name: payments-api
    kind: scoped_jwt
    tools: [payments.transfer, 'not a tool']
    audiance: https://payments.example
    ttl_seconds: 600
  - name: payments-api
    kind: postgres_role
    tools: [warehouse.query]
    admin_dsn_env: TETHER_WAREHOUSE_ADMIN_DSN
    ttl_seconds: 300
    max_ttl_seconds: 60
    datasets: {sales: [public.orders, "orders; drop table x"]}
  - name: other
    kind: postgres
"""


def test_a_credentials_file_reports_each_mistake_at_its_place(tmp_path: Path) -> None:
    (tmp_path / CREDENTIALS_FILE).write_text(CREDENTIALS, encoding="utf-8")
    signer = ScopedJwtIssuer(SigningKey.generate(), "tether")
    with pytest.raises(ProblemsError) as caught:
        load_downstreams(tmp_path, signer=signer, environ={})
    assert caught.value.code is ErrorCode.POLICY_INVALID
    assert messages(caught.value) == [
        "credentials.yaml:2:5: issuers[0]: required key 'audience' is missing",
        "credentials.yaml:2:11: issuers[0].name: 2 issuers are named 'payments-api'; names are "
        "unique",
        "credentials.yaml:4:32: issuers[0].tools[1]: 'not a tool' is not a tool name or a "
        "'prefix.*' pattern",
        "credentials.yaml:5:5: issuers[0].audiance: unknown key; did you mean 'audience'?",
        "credentials.yaml:6:18: issuers[0].ttl_seconds: must be at most 300",
        "credentials.yaml:7:11: issuers[1].name: 2 issuers are named 'payments-api'; names are "
        "unique",
        "credentials.yaml:12:22: issuers[1].max_ttl_seconds: must be between ttl_seconds and 12 "
        "hours (43200)",
        "credentials.yaml:13:39: issuers[1].datasets.sales[1]: a PostgreSQL table must be given "
        "as schema.table of letters, digits and '_'",
        "credentials.yaml:15:11: issuers[2].kind: must be one of 'scoped_jwt', 'postgres_role'; "
        "did you mean 'postgres_role'?",
    ]


PROXY = """\
upstreams:
  legacy:
    url: ftp://legacy.internal
    secret: {name: legacy-key, header: Host}
    timeout_secs: 10
    forward_headers: [X-Request-Id, Cookie]
routes:
  - upstream: legasy
    method: FETCH
    path: /customers/{id}
    tool: crm.query
    action: read
    args: {id: path.ident, limit: {from: query.limit, type: float}}
    recipients_arg: to
"""


def test_a_proxy_config_reports_each_mistake_at_its_place(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text(PROXY, encoding="utf-8")
    with pytest.raises(ConfigurationError) as caught:
        load_config(path)
    assert isinstance(caught.value, ProblemsError)
    assert caught.value.code is ErrorCode.CONFIGURATION
    assert messages(caught.value, tmp_path) == [
        "proxy.yaml:3:10: upstreams.legacy.url: must be an http:// or https:// URL with a host",
        "proxy.yaml:4:40: upstreams.legacy.secret.header: is not a header the proxy can set",
        "proxy.yaml:5:5: upstreams.legacy.timeout_secs: unknown key; did you mean "
        "'timeout_seconds'?",
        "proxy.yaml:6:37: upstreams.legacy.forward_headers[1]: Cookie may not be forwarded "
        "(hop-by-hop headers, the agent's credentials, X-Tether-* and the secret's header never "
        "are)",
        "proxy.yaml:8:15: routes[0].upstream: no upstream named 'legasy'; did you mean 'legacy'?",
        "proxy.yaml:9:13: routes[0].method: must be one of: DELETE, GET, HEAD, PATCH, POST, PUT",
        "proxy.yaml:13:16: routes[0].args.id: the route path '/customers/{id}' has no parameter "
        "{ident}",
        "proxy.yaml:13:61: routes[0].args.limit.type: must be one of 'string', 'integer', "
        "'number' or 'boolean'",
        "proxy.yaml:14:21: routes[0].recipients_arg: must name one of this route's args",
    ]


def test_data_given_in_memory_names_the_path_without_a_line() -> None:
    with pytest.raises(ProblemsError) as caught:
        parse_config({"upstreams": {"legacy": {"url": "https://x", "urll": 1}}, "routs": []})
    assert messages(caught.value) == [
        "proxy config: upstreams.legacy.urll: unknown key; did you mean 'url'?",
        "proxy config: (top level): required key 'routes' is missing",
        "proxy config: routs: unknown key; did you mean 'routes'?",
    ]


# -- the reader: safe, bounded, strict about duplicates -----------------------------------------


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(EXAMPLES, target)
    return target


def catalog_problems(policies: Path, text: str) -> list[str]:
    (policies / "catalog.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(PolicyInvalid) as caught:
        load_policy_dir(policies)
    return messages(caught.value)


def test_every_duplicate_key_is_refused_at_its_line(policies: Path) -> None:
    assert catalog_problems(
        policies,
        "datasets:\n"
        "  crm: {classification: confidential}\n"
        "  tickets: {classification: internal, classification: public}\n"
        "  crm: {classification: public}\n",
    ) == [
        "catalog.yaml:3:39: datasets.tickets.classification: duplicate key (first at line 3); "
        "keep one",
        "catalog.yaml:4:3: datasets.crm: duplicate key (first at line 2); keep one",
    ]


def test_a_syntax_error_is_placed(policies: Path) -> None:
    assert catalog_problems(policies, "datasets:\n  crm: {classification: public\n") == [
        "catalog.yaml:3:1: not valid YAML: while parsing a flow mapping expected ',' or '}', but "
        "got '<stream end>'"
    ]


def test_python_tags_are_refused(policies: Path) -> None:
    found = catalog_problems(
        policies, "datasets: !!python/object/apply:os.system ['touch /tmp/pwned']\n"
    )
    assert len(found) == 1 and found[0].startswith("catalog.yaml:1:11: not valid YAML: ")
    assert "could not determine a constructor" in found[0]


def test_size_and_alias_expansion_are_bounded(policies: Path) -> None:
    big = "datasets:\n" + "".join(
        f"  d{i}: {{classification: public, description: {'x' * 100}}}\n" for i in range(10_000)
    )
    assert catalog_problems(policies, big) == [
        f"catalog.yaml: is {len(big)} bytes, more than 1048576"
    ]
    rows = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    rows += [
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]" for i in range(6)
    ]
    found = catalog_problems(policies, "\n".join(rows) + "\n")
    assert len(found) == 1
    assert "more than 100000 values (aliases counted each time they are used)" in found[0]


def test_bytes_that_are_not_utf8_are_refused() -> None:
    with pytest.raises(CatalogProblem) as caught:
        parse_catalog(b"datasets: {crm: {classification: \xff}}\n")
    assert messages(caught.value) == ["catalog.yaml: is not UTF-8 text (byte 33)"]


def test_merge_keys_work_and_the_explicit_key_wins(tmp_path: Path) -> None:
    (tmp_path / "dataflow.yaml").write_text(
        "base: &base {default: 5, tools: {a.b: 1}}\nread_floors: {<<: *base, default: 7}\n",
        encoding="utf-8",
    )
    with pytest.raises(ProblemsError) as caught:  # `base` is no key of dataflow.yaml
        load_read_floors(tmp_path)
    assert messages(caught.value) == [
        "dataflow.yaml:1:1: base: unknown key; allowed here: egress_sinks, read_floors"
    ]
    (tmp_path / "dataflow.yaml").write_text(
        "read_floors: &floors {default: 5, tools: {a.b: 1}}\negress_sinks: [x.y]\n",
        encoding="utf-8",
    )
    assert load_read_floors(tmp_path).tools == {"a.b": 1}


# -- tether policy validate ---------------------------------------------------------------------


def test_policy_validate_reports_yaml_and_cedar_problems_alike(policies: Path) -> None:
    (policies / "catalog.yaml").write_text("datasets:\n  crm: {classificaton: public}\n")
    (policies / "workflows.yaml").write_text(WORKFLOWS)
    payments = policies / "payments.cedar"
    payments.write_text(payments.read_text().replace('Action::"spend"', 'Action::"spnd"'))
    result = CliRunner().invoke(app, ["policy", "validate", str(policies)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert (
        f"{policies}/catalog.yaml:2:3: datasets.crm: required key 'classification' is missing"
        in lines
    )
    assert (
        f"{policies}/catalog.yaml:2:9: datasets.crm.classificaton: unknown key; did you mean "
        "'classification'?"
    ) in lines
    assert (
        f"{policies}/workflows.yaml:7:16: workflows.refund.steps.lookup.next[0]: no step named "
        "'refnd'; did you mean 'refund'?"
    ) in lines
    assert any(line.startswith(f"{payments}:6:13: unknown action") for line in lines)
    assert len([line for line in lines if line.startswith(f"{policies}/workflows.yaml:")]) == 8
    # one file at a time, too
    result = CliRunner().invoke(app, ["policy", "validate", str(policies / "workflows.yaml")])
    assert result.exit_code == 1 and len(result.stdout.splitlines()) == 8


def test_policy_validate_checks_credentials_yaml_beside_the_policies(policies: Path) -> None:
    # Before, `tether policy validate` said ok while credentials.yaml could not be loaded: the
    # mistake surfaced only when the server started.
    credentials = policies / CREDENTIALS_FILE
    credentials.write_text(CREDENTIALS, encoding="utf-8")
    expected = [
        f"{credentials}:2:5: issuers[0]: required key 'audience' is missing",
        f"{credentials}:5:5: issuers[0].audiance: unknown key; did you mean 'audience'?",
        f"{credentials}:15:11: issuers[2].kind: must be one of 'scoped_jwt', 'postgres_role'; "
        "did you mean 'postgres_role'?",
    ]
    for target in (policies, credentials):  # the directory, or the file alone
        result = CliRunner().invoke(app, ["policy", "validate", str(target)])
        assert result.exit_code == 1, result.output
        lines = result.stdout.splitlines()
        assert len(lines) == 9 and all(line.startswith(f"{credentials}:") for line in lines)
        assert all(line in lines for line in expected), lines
        result = CliRunner().invoke(app, ["policy", "validate", "--json", str(target)])
        assert result.exit_code == 1
        assert json.loads(result.stdout)["problems"][0] == {
            "file": str(credentials),
            "line": 2,
            "col": 5,
            "message": "issuers[0]: required key 'audience' is missing",
        }
    # The admin DSN's variable is the deployment's: not set here, and still valid.
    credentials.write_text(
        "issuers:\n"
        "  - {name: wh, kind: postgres_role, tools: [warehouse.query],\n"
        "     admin_dsn_env: TETHER_TEST_UNSET_ADMIN_DSN, datasets: {sales: [public.orders]}}\n",
        encoding="utf-8",
    )
    assert "TETHER_TEST_UNSET_ADMIN_DSN" not in os.environ
    for target in (policies, credentials):
        result = CliRunner().invoke(app, ["policy", "validate", str(target)])
        assert result.exit_code == 0, result.output
    assert result.stdout == f"ok: {credentials} is valid\n"


def test_a_policy_case_file_refuses_a_key_written_twice(tmp_path: Path) -> None:
    # Before, the second `expect:` silently replaced the first: the case tested something else.
    path = tmp_path / "cases.yaml"
    path.write_text(
        "cases:\n"
        "  - name: analyst reads the CRM\n"
        "    agent: spiffe://tether.local/agent/analyst\n"
        "    call: {tool: crm.query, action: read, dataset: crm}\n"
        "    expect: deny\n"
        "    expect: allow\n",
        encoding="utf-8",
    )
    case_file = read_case_file(path)
    assert case_file.cases == ()
    assert [str(p) for p in case_file.problems] == [
        f"{path}:6:5: cases[0].expect: duplicate key (first at line 5); keep one"
    ]
