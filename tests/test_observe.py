"""Observe mode end to end: real SQLite store, real Cedar, the service as the API calls it.

Observe-mode policies are audited as what they would have changed and never change a verdict;
``tether report flips`` counts those calls by policy, agent and tool.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from support import INTENT, copy_policies, make_runtime
from tether.cli.report import app as report_app
from tether.core.call import Call
from tether.core.errors import ConfigurationError, Forbidden
from tether.core.identity import Workload
from tether.core.ids import ApprovalId
from tether.core.scope import ActionKind, JSONValue, Scope
from tether.core.task import Intent
from tether.core.verdict import Decision
from tether.policy.engine import CedarPolicyEngine
from tether.policy.meta import Mode
from tether.runtime import Runtime, packaged_policies
from tether.service.approvals import Approver
from tether.service.clock import ManualClock

ANALYST = Workload.from_spiffe_id("spiffe://tether.local/agent/analyst")

ROLLOUT = """
// Rules being tried on real traffic before they are enforced.
@id("no-crm-reads")
forbid (principal, action == Action::"read", resource == Tool::"crm.query")
when { context.dataset == "crm" };

@id("partner-mail")
permit (principal, action == Action::"send", resource == Tool::"email.send")
when { context.args has to && context.args.to like "*@partner.example" };

@id("cap-transfers")
forbid (principal, action == Action::"spend", resource == Tool::"payments.transfer")
when { context.args has amount && context.args.amount > 400 };
"""

SCOPES = [
    {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]},
    {"tool": "email.send", "actions": ["send"]},
    {"tool": "payments.transfer", "actions": ["spend"]},
]


def _script(runtime: Runtime) -> list[tuple[Decision, tuple[str, ...]]]:
    """Seven calls: two mails out, one mail in, a big transfer, three CRM reads."""
    opened = runtime.tasks.open_task(
        ANALYST, Intent(**INTENT), [Scope.from_json(s) for s in SCOPES], ttl_seconds=3600
    )
    calls: list[tuple[str, ActionKind, str | None, dict[str, JSONValue]]] = [
        ("email.send", ActionKind.SEND, None, {"to": "bob@partner.example"}),
        ("email.send", ActionKind.SEND, None, {"to": "eve@partner.example"}),
        ("email.send", ActionKind.SEND, None, {"to": "amy@example.com"}),
        ("payments.transfer", ActionKind.SPEND, None, {"amount": 500}),
        ("crm.query", ActionKind.READ, "crm", {}),
        ("crm.query", ActionKind.READ, "crm", {}),
        ("crm.query", ActionKind.READ, "crm", {}),
    ]
    out = []
    for tool, action, dataset, args in calls:
        verdict = runtime.authorizer.authorize(
            ANALYST, opened.token, Call(tool, action, dataset, args)
        )
        out.append((verdict.decision, tuple(r.code.value for r in verdict.reasons)))
    return out


@pytest.fixture
def observed(tmp_path: Path, clock: ManualClock) -> Iterator[Runtime]:
    policies = copy_policies(tmp_path / "policies")
    (policies / "rollout.observe.cedar").write_text(ROLLOUT, encoding="utf-8")
    runtime = make_runtime(tmp_path / "observed-data", clock, policies)
    yield runtime
    runtime.close()


def _decision_bodies(runtime: Runtime) -> list[dict[str, JSONValue]]:
    return [r.body for r in runtime.store.audit_records() if r.kind.value == "decision"]


def test_observe_policies_never_change_a_verdict(
    observed: Runtime, runtime: Runtime, clock: ManualClock
) -> None:
    with_rollout = _script(observed)
    without = _script(runtime)  # the same calls, the packaged policies alone
    assert with_rollout == without
    assert [d for d, _ in with_rollout] == [
        Decision.DENY,  # no enforcing policy permits mail to partner.example
        Decision.DENY,
        Decision.ALLOW,
        Decision.APPROVAL_REQUIRED,  # transfers over 100 need a human
        Decision.ALLOW,
        Decision.ALLOW,
        Decision.ALLOW,
    ]


def test_what_they_would_have_changed_is_audited(observed: Runtime) -> None:
    _script(observed)
    bodies = _decision_bodies(observed)
    assert [b.get("observed") for b in bodies] == [
        [{"policy_id": "partner-mail", "would": "allow"}],
        [{"policy_id": "partner-mail", "would": "allow"}],
        None,  # nothing would change: no "observed" key at all
        [{"policy_id": "cap-transfers", "would": "deny"}],
        [{"policy_id": "no-crm-reads", "would": "deny"}],
        [{"policy_id": "no-crm-reads", "would": "deny"}],
        [{"policy_id": "no-crm-reads", "would": "deny"}],
    ]
    # The agent is told nothing about observe mode.
    assert all("observed" not in json.dumps(b["verdict"]) for b in bodies)


def test_report_flips_counts_them_exactly(observed: Runtime, clock: ManualClock) -> None:
    _script(observed)
    data_dir = observed.config.data_dir
    observed.close()
    result = CliRunner().invoke(
        report_app, ["flips", "--data-dir", str(data_dir), "--json"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["decisions"], report["flipped"]) == (7, 6)
    agent = ANALYST.id
    assert report["flips"] == [
        {
            "policy_id": "cap-transfers",
            "would": "deny",
            "was": "approval_required",
            "agent": agent,
            "tool": "payments.transfer",
            "calls": 1,
        },
        {
            "policy_id": "no-crm-reads",
            "would": "deny",
            "was": "allow",
            "agent": agent,
            "tool": "crm.query",
            "calls": 3,
        },
        {
            "policy_id": "partner-mail",
            "would": "allow",
            "was": "deny",
            "agent": agent,
            "tool": "email.send",
            "calls": 2,
        },
    ]
    assert [(p["policy_id"], p["calls"], p["would"]) for p in report["by_policy"]] == [
        ("no-crm-reads", 3, {"deny": 3}),
        ("partner-mail", 2, {"allow": 2}),
        ("cap-transfers", 1, {"deny": 1}),
    ]
    table = CliRunner().invoke(
        report_app, ["flips", "--data-dir", str(data_dir)], env={"COLUMNS": "200"}
    )
    assert table.exit_code == 0, table.output
    assert "6 of 7 decision(s)" in table.stdout
    row = next(line for line in table.stdout.splitlines() if "no-crm-reads" in line)
    assert row.split("\t") == [
        "no-crm-reads",
        "3",
        "3",
        "0",
        "0",
        "1",
        "1",
    ]
    # A window that ends before the calls holds none of them.
    early = CliRunner().invoke(
        report_app,
        ["flips", "--data-dir", str(data_dir), "--until", "2026-11-28T11:00:00Z"],
        env={"COLUMNS": "200"},
    )
    assert early.exit_code == 0 and "nothing to report" in early.stdout


def test_flips_survive_the_approval_and_its_use(observed: Runtime, clock: ManualClock) -> None:
    opened = observed.tasks.open_task(
        ANALYST, Intent(**INTENT), [Scope.from_json(SCOPES[2])], ttl_seconds=3600
    )
    big = Call("payments.transfer", ActionKind.SPEND, None, {"amount": 500})
    asked = observed.authorizer.authorize(ANALYST, opened.token, big)
    assert asked.decision is Decision.APPROVAL_REQUIRED and asked.approval_id
    voted = observed.approvals.vote(
        Approver("ops-lead", "ops-lead"), ApprovalId(asked.approval_id), True, "ok"
    )
    assert voted.state.value == "approved"
    allowed = observed.authorizer.authorize(ANALYST, opened.token, big, asked.approval_id)
    assert allowed.decision is Decision.ALLOW  # the human's approval stands
    last = _decision_bodies(observed)[-1]
    assert last["observed"] == [{"policy_id": "cap-transfers", "would": "deny"}]


def test_no_observe_policy_means_no_observed_key(runtime: Runtime) -> None:
    _script(runtime)
    assert all("observed" not in b for b in _decision_bodies(runtime))


# -- loading -------------------------------------------------------------------------------------


def _sources(**files: str) -> dict[str, str]:
    base = packaged_policies()
    return {
        "schema.cedarschema": (base / "schema.cedarschema").read_text(),
        "catalog.yaml": (base / "catalog.yaml").read_text(),
        **{name.replace("__", "."): text for name, text in files.items()},
    }


def test_observe_file_ids_are_those_it_gets_once_enforced() -> None:
    rule = 'forbid (principal, action == Action::"read", resource == Tool::"crm.query");'
    watched = CedarPolicyEngine.from_sources(_sources(rollout__observe__cedar=rule))
    enforced = CedarPolicyEngine.from_sources(_sources(rollout__cedar=rule))
    [meta] = watched.snapshot.bundle.policies
    assert (meta.policy_id, meta.mode) == ("rollout.0", Mode.OBSERVE)
    [meta] = enforced.snapshot.bundle.policies
    assert (meta.policy_id, meta.mode) == ("rollout.0", Mode.ENFORCE)
    with pytest.raises(ConfigurationError, match="duplicate policy id"):
        CedarPolicyEngine.from_sources(_sources(rollout__cedar=rule, rollout__observe__cedar=rule))


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"a__cedar": '@mode("watch")\npermit (principal, action, resource);'},
            'must be "observe" or "enforce"',
        ),
        (
            {"a__observe__cedar": '@mode("enforce")\npermit (principal, action, resource);'},
            "move the policy to a .cedar file",
        ),
    ],
)
def test_bad_modes_are_refused_with_the_reason(files: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        CedarPolicyEngine.from_sources(_sources(**files))
    assert caught.value.code.value == "policy_invalid"


def test_observe_policies_never_grant_at_task_open(observed: Runtime, clock: ManualClock) -> None:
    """A permit in observe mode does not make policy preview grant a scope it would not."""
    helper = Workload.from_spiffe_id("spiffe://tether.local/agent/helper")
    rollout = observed.config.policy_dir / "rollout.observe.cedar"
    rollout.write_text(
        ROLLOUT + '\npermit (principal, action == Action::"read", resource == Tool::"hr.read");\n',
        encoding="utf-8",
    )
    assert observed.policy.reload().changed
    with pytest.raises(Forbidden, match="nothing requested can be granted"):
        observed.tasks.open_task(
            helper, Intent(**INTENT), [Scope.from_json({"tool": "hr.read", "actions": ["read"]})]
        )


def test_a_malformed_observed_entry_is_named(observed: Runtime, tmp_path: Path) -> None:
    _script(observed)
    lines = []
    for record in observed.store.audit_records():
        doc = record.to_json()
        if record.body.get("observed"):
            doc["body"] = {**record.body, "observed": [{"policy_id": "x", "would": "maybe"}]}
        lines.append(json.dumps(doc))
    export = tmp_path / "audit.jsonl"
    export.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = CliRunner().invoke(report_app, ["flips", "--file", str(export)])
    assert result.exit_code == 1
    assert "malformed_audit" in result.output
    assert "observed decision 'maybe' is not a decision" in result.output
