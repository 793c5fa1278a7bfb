"""Policy test cases as data: YAML files run by pytest and by ``tether policy test DIR``.

By default the cases are every ``*.yaml`` under ``<policy dir>/tests/``. A case file::

    # optional: Cedar policies to test *instead of* the directory's *.cedar files
    # (the directory's schema and catalog still apply)
    policies: |
      permit(principal, action == Action::"read", resource == Tool::"crm.query");
    cases:
      - name: analyst reads the CRM
        agent: spiffe://tether.local/agent/analyst
        intent: {workflow: triage, purpose: answer a ticket, on_behalf_of: alice}  # optional
        call:
          tool: crm.query
          action: read
          dataset: crm              # optional; classification comes from the catalog
          classification: restricted  # optional override
          args: {limit: 10}         # optional
        dataflow: confidential      # optional: the task's label so far (context.dataflow)
        expect: allow               # allow | deny | approval_required
        expect_policy_ids: [analyst-reads-crm]   # optional, compared as a set
        expect_reason: policy_permits            # optional, a reason code the outcome carries
        expect_risks: [ASI02]                    # optional, compared as a set
        expect_obligations: [{kind: row_cap, value: "100"}]  # optional, compared as a set
        expect_observed: [{policy_id: new-rule, would: deny}]  # optional: observe-mode changes

Unknown keys are refused (a typo must not turn a check off). A malformed file raises
``ConfigurationError`` naming the file and the case.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from tether.core.call import Call
from tether.core.errors import ConfigurationError, ErrorCode
from tether.core.identity import CredentialKind, Workload, parse_spiffe_id
from tether.core.ids import TaskId
from tether.core.risks import Risk
from tether.core.scope import ActionKind, Classification, JSONValue
from tether.core.task import Intent
from tether.core.verdict import Decision, ObligationKind, Reason, ReasonCode
from tether.policy.bundle import POLICY_SUFFIX, read_policy_dir
from tether.policy.engine import CedarPolicyEngine
from tether.service.ports import PolicyOutcome, PolicyRequest

DEFAULT_INTENT: Final = Intent(workflow="policy-test", purpose="policy test", on_behalf_of="tester")
DEFAULT_TASK_ID: Final = TaskId("tsk_" + "0" * 26)

_FILE_KEYS: Final = frozenset({"policies", "cases", "description"})
_CASE_KEYS: Final = frozenset(
    {
        "name",
        "description",
        "agent",
        "delegated_by",
        "intent",
        "task_id",
        "call",
        "expect",
        "expect_policy_ids",
        "expect_reason",
        "expect_risks",
        "expect_obligations",
        "expect_observed",
        "dataflow",
    }
)
_CALL_KEYS: Final = frozenset({"tool", "action", "dataset", "classification", "args"})


@dataclass(frozen=True, slots=True)
class PolicyCase:
    file: str
    name: str
    agent: Workload
    intent: Intent
    task_id: TaskId
    call: Call
    classification: Classification | None
    classification_given: bool
    expect: Decision
    expect_policy_ids: frozenset[str] | None = None
    expect_reason: ReasonCode | None = None
    expect_risks: frozenset[Risk] | None = None
    expect_obligations: frozenset[tuple[ObligationKind, str]] | None = None
    delegators: tuple[str, ...] = ()
    dataflow: Classification | None = None
    expect_observed: frozenset[tuple[str, Decision]] | None = None


@dataclass(frozen=True, slots=True)
class CaseFile:
    path: Path
    policies: str | None
    cases: tuple[PolicyCase, ...]


@dataclass(frozen=True, slots=True)
class CaseResult:
    """One case's outcome. ``problems`` lists each expectation that did not hold."""

    file: str
    name: str
    expected: Decision
    actual: Decision
    policy_ids: tuple[str, ...]
    reasons: tuple[Reason, ...]
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        head = f"{self.file} :: {self.name}: "
        if self.passed:
            return head + f"ok ({self.actual.value})"
        why = "; ".join(f"{r.code.value}: {r.message}" for r in self.reasons)
        return head + "; ".join(self.problems) + (f" (reasons: {why})" if why else "")


# -- reading case files ------------------------------------------------------------------------


class _Bad(ValueError):
    pass


def _str(raw: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value:
        raise _Bad(f"{key} must be a non-empty string")
    return value


def _json_value(value: object, path: str) -> JSONValue:
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list):
        return [_json_value(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out: dict[str, JSONValue] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise _Bad(f"{path}: keys must be strings")
            out[k] = _json_value(v, f"{path}.{k}")
        return out
    raise _Bad(f"{path} is a {type(value).__name__}, not a JSON value (quote it)")


def _agent(value: object) -> Workload:
    if not isinstance(value, str) or not value:
        raise _Bad("agent must be a workload id such as spiffe://tether.local/agent/analyst")
    if value.startswith("spiffe://"):
        try:
            return Workload.from_spiffe_id(value)
        except ValueError as exc:
            raise _Bad(f"agent: {exc}") from None
    return Workload(id=value, kind=CredentialKind.OIDC, trust_domain="", name=value)


def _enum_set(raw: object, key: str, enum: type[Risk]) -> frozenset[Risk]:
    if not isinstance(raw, list):
        raise _Bad(f"{key} must be a list")
    try:
        return frozenset(enum(str(v)) for v in raw)
    except ValueError:
        raise _Bad(f"{key}: {raw!r} holds an unknown value") from None


def _obligations(raw: object) -> frozenset[tuple[ObligationKind, str]]:
    if not isinstance(raw, list):
        raise _Bad("expect_obligations must be a list of {kind, value}")
    out: set[tuple[ObligationKind, str]] = set()
    for item in raw:
        if not isinstance(item, dict) or set(item) != {"kind", "value"}:
            raise _Bad("expect_obligations items are {kind: ..., value: ...}")
        try:
            out.add((ObligationKind(str(item["kind"])), str(item["value"])))
        except ValueError:
            raise _Bad(f"expect_obligations: unknown kind {item['kind']!r}") from None
    return frozenset(out)


def _observed(raw: object) -> frozenset[tuple[str, Decision]]:
    if not isinstance(raw, list):
        raise _Bad("expect_observed must be a list of {policy_id, would}")
    out: set[tuple[str, Decision]] = set()
    for item in raw:
        if not isinstance(item, dict) or set(item) != {"policy_id", "would"}:
            raise _Bad("expect_observed items are {policy_id: ..., would: deny|...}")
        try:
            out.add((str(item["policy_id"]), Decision(str(item["would"]))))
        except ValueError:
            raise _Bad(
                f"expect_observed: would must be one of {[d.value for d in Decision]}"
            ) from None
    return frozenset(out)


def _dataflow(raw: object) -> Classification | None:
    if raw is None:
        return None
    try:
        return Classification(str(raw))
    except ValueError:
        known = [c.value for c in Classification]
        raise _Bad(f"dataflow must be one of {known} (the highest classification read)") from None


def _parse_case(file: str, raw: Mapping[str, Any]) -> PolicyCase:
    unknown = set(raw) - _CASE_KEYS
    if unknown:
        raise _Bad(f"unknown keys {sorted(map(str, unknown))}")
    name = _str(raw, "name")
    intent_raw = raw.get("intent", {})
    if not isinstance(intent_raw, dict) or set(intent_raw) - {
        "workflow",
        "purpose",
        "on_behalf_of",
    }:
        raise _Bad("intent must be {workflow, purpose, on_behalf_of}")
    intent = Intent(
        workflow=_str(intent_raw, "workflow", DEFAULT_INTENT.workflow),
        purpose=_str(intent_raw, "purpose", DEFAULT_INTENT.purpose),
        on_behalf_of=_str(intent_raw, "on_behalf_of", DEFAULT_INTENT.on_behalf_of),
    )
    call_raw = raw.get("call")
    if not isinstance(call_raw, dict):
        raise _Bad("call must be {tool, action, dataset?, args?}")
    unknown = set(call_raw) - _CALL_KEYS
    if unknown:
        raise _Bad(f"call: unknown keys {sorted(map(str, unknown))}")
    try:
        action = ActionKind(str(call_raw.get("action")))
    except ValueError:
        raise _Bad(f"call.action must be one of {[a.value for a in ActionKind]}") from None
    dataset = call_raw.get("dataset")
    if dataset is not None and not isinstance(dataset, str):
        raise _Bad("call.dataset must be a string")
    args = _json_value(call_raw.get("args", {}), "call.args")
    if not isinstance(args, dict):
        raise _Bad("call.args must be a mapping")
    classification: Classification | None = None
    if "classification" in call_raw:
        try:
            classification = Classification(call_raw["classification"])
        except ValueError:
            raise _Bad("call.classification is not a known classification") from None
    try:
        expect = Decision(str(raw.get("expect")))
    except ValueError:
        raise _Bad(f"expect must be one of {[d.value for d in Decision]}") from None
    policy_ids = raw.get("expect_policy_ids")
    if policy_ids is not None and (
        not isinstance(policy_ids, list) or not all(isinstance(p, str) for p in policy_ids)
    ):
        raise _Bad("expect_policy_ids must be a list of policy ids")
    reason: ReasonCode | None = None
    if "expect_reason" in raw:
        try:
            reason = ReasonCode(raw["expect_reason"])
        except ValueError:
            raise _Bad(f"expect_reason {raw['expect_reason']!r} is not a reason code") from None
    return PolicyCase(
        file=file,
        name=name,
        agent=_agent(raw.get("agent")),
        intent=intent,
        task_id=TaskId(_str(raw, "task_id", DEFAULT_TASK_ID)),
        call=Call(tool=_str(call_raw, "tool"), action=action, dataset=dataset, args=args),
        classification=classification,
        classification_given="classification" in call_raw,
        expect=expect,
        expect_policy_ids=None if policy_ids is None else frozenset(policy_ids),
        expect_reason=reason,
        delegators=_delegators(raw.get("delegated_by")),
        expect_risks=(
            None
            if "expect_risks" not in raw
            else _enum_set(raw["expect_risks"], "expect_risks", Risk)
        ),
        expect_obligations=(
            None if "expect_obligations" not in raw else _obligations(raw["expect_obligations"])
        ),
        dataflow=_dataflow(raw.get("dataflow")),
        expect_observed=(
            None if "expect_observed" not in raw else _observed(raw["expect_observed"])
        ),
    )


def _fail(path: Path, message: str) -> ConfigurationError:
    return ConfigurationError(f"{path}: {message}", code=ErrorCode.CONFIGURATION)


def load_case_file(path: Path) -> CaseFile:
    """Read one case file; raises ``ConfigurationError`` naming the file and the case."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, f"cannot be read ({exc})") from None
    except yaml.YAMLError as exc:
        raise _fail(path, f"not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or set(raw) - _FILE_KEYS or "cases" not in raw:
        raise _fail(path, "must be a mapping with `cases` (and optionally `policies`)")
    policies = raw.get("policies")
    if policies is not None and not isinstance(policies, str):
        raise _fail(path, "policies must be Cedar text (use `policies: |`)")
    items = raw["cases"]
    if not isinstance(items, list) or not items:
        raise _fail(path, "cases must be a non-empty list")
    cases: list[PolicyCase] = []
    names: set[str] = set()
    for number, item in enumerate(items, start=1):
        label = f"case #{number}"
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            label += f" ({item['name']})"
        if not isinstance(item, dict):
            raise _fail(path, f"{label}: must be a mapping")
        try:
            case = _parse_case(path.name, item)
        except _Bad as exc:
            raise _fail(path, f"{label}: {exc}") from None
        if case.name in names:
            raise _fail(path, f"{label}: another case has the same name")
        names.add(case.name)
        cases.append(case)
    return CaseFile(path=path, policies=policies, cases=tuple(cases))


def case_paths(policy_dir: Path, cases: Path | None = None) -> list[Path]:
    """``cases`` (a file, or every ``*.yaml`` under a directory), default ``policy_dir/tests``."""
    target = cases if cases is not None else policy_dir / "tests"
    if target.is_file():
        return [target]
    if not target.is_dir():
        raise ConfigurationError(f"{target}: no such case file or directory")
    return sorted(target.rglob("*.yaml"))


# -- running them ------------------------------------------------------------------------------


def engine_for(policy_dir: Path, case_file: CaseFile) -> CedarPolicyEngine:
    """The engine a case file runs against: the directory, or its inline ``policies``."""
    if case_file.policies is None:
        return CedarPolicyEngine.load(policy_dir)
    sources = {
        name: text
        for name, text in read_policy_dir(policy_dir).items()
        if not name.endswith(POLICY_SUFFIX)
    }
    sources[case_file.path.stem + POLICY_SUFFIX] = case_file.policies
    return CedarPolicyEngine.from_sources(sources, origin=str(case_file.path))


def _check(case: PolicyCase, outcome: PolicyOutcome) -> tuple[str, ...]:
    problems: list[str] = []
    if outcome.decision is not case.expect:
        problems.append(f"expected {case.expect.value}, got {outcome.decision.value}")
    if (
        case.expect_policy_ids is not None
        and frozenset(outcome.policy_ids) != case.expect_policy_ids
    ):
        problems.append(
            f"expected policy ids {sorted(case.expect_policy_ids)}, got {list(outcome.policy_ids)}"
        )
    if case.expect_reason is not None and all(
        r.code is not case.expect_reason for r in outcome.reasons
    ):
        got = [r.code.value for r in outcome.reasons]
        problems.append(f"expected reason {case.expect_reason.value}, got {got}")
    if case.expect_risks is not None and outcome.risks != case.expect_risks:
        problems.append(
            f"expected risks {sorted(r.value for r in case.expect_risks)}, "
            f"got {sorted(r.value for r in outcome.risks)}"
        )
    if case.expect_obligations is not None:
        got_obligations = frozenset((o.kind, o.value) for o in outcome.obligations)
        if got_obligations != case.expect_obligations:
            problems.append(
                f"expected obligations {sorted(case.expect_obligations)}, "
                f"got {sorted(got_obligations)}"
            )
    if case.expect_observed is not None:
        got_observed = frozenset((o.policy_id, o.would) for o in outcome.observed)
        if got_observed != case.expect_observed:
            problems.append(
                f"expected observed {sorted((i, d.value) for i, d in case.expect_observed)}, "
                f"got {sorted((i, d.value) for i, d in got_observed)}"
            )
    return tuple(problems)


def _delegators(raw: object) -> tuple[str, ...]:
    """``delegated_by``: the chain of SPIFFE IDs that delegated the grant, root first."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(a, str) for a in raw) or len(raw) > 16:
        raise _Bad("delegated_by must be a list of SPIFFE IDs, root first")
    for actor in raw:
        try:
            parse_spiffe_id(actor)
        except ValueError as error:
            raise _Bad(f"delegated_by entry {actor!r}: {error}") from None
    return tuple(raw)


def run_case(engine: CedarPolicyEngine, case: PolicyCase) -> CaseResult:
    """Decide one case and compare the outcome with what it expects."""
    classification = (
        case.classification
        if case.classification_given
        else (engine.classification(case.call.dataset) if case.call.dataset else None)
    )
    outcome = engine.decide(
        PolicyRequest(
            agent=case.agent,
            call=case.call,
            classification=classification,
            intent=case.intent,
            task_id=case.task_id,
            delegators=case.delegators,
            dataflow=case.dataflow,
        )
    )
    return CaseResult(
        file=case.file,
        name=case.name,
        expected=case.expect,
        actual=outcome.decision,
        policy_ids=outcome.policy_ids,
        reasons=outcome.reasons,
        problems=_check(case, outcome),
    )


def run_policy_tests(policy_dir: Path, cases: Path | None = None) -> list[CaseResult]:
    """Run every case (default: ``policy_dir/tests/*.yaml``) and return one result per case.

    Raises ``ConfigurationError`` when the policies do not load or a case file is malformed.
    """
    results: list[CaseResult] = []
    directory_engine: CedarPolicyEngine | None = None
    for path in case_paths(policy_dir, cases):
        case_file = load_case_file(path)
        if case_file.policies is None:
            if directory_engine is None:
                directory_engine = engine_for(policy_dir, case_file)
            engine = directory_engine
        else:
            engine = engine_for(policy_dir, case_file)
        results.extend(run_case(engine, case) for case in case_file.cases)
    return results
