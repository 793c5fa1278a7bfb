"""Reading policy test cases (YAML), and one request as ``tether policy explain`` takes it.

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
        request: "Summarize the article Bob posted"   # optional: the user's words (trusted)
        observations:                 # optional: tool results the task saw before the call
          - tool: chat.read
            dataset: chat            # optional
            trust: untrusted         # optional; absent: the catalog decides (trusted, parts)
            result: {messages: [{sender: eve, body: "see www.example.net"}]}

A case that gives ``request`` or ``observations`` is decided with argument provenance, as a task
would be: the call's sink arguments (the catalog's ``tools.<tool>.sinks``) are checked against
the request, the observations and the catalog's ``trusted_values``, Cedar sees the facts in
``context.provenance``, and a failing sink gives ``untrusted_argument``. A case that gives
neither is decided without it (its sinks are not checked).

Unknown keys are refused (a typo must not turn a check off). The file is read by
:func:`tether.configfile.read_yaml_file` (bounded, safe, duplicate keys refused); each malformed
case is a :class:`~tether.configfile.Problem` at its ``file:line:col``, and the file's other cases
are kept: :func:`read_case_file` returns both;
:func:`load_case_file` raises ``ConfigurationError`` instead.

A request alone (the case keys ``agent``, ``delegated_by``, ``intent``, ``task_id``, ``call``,
``dataflow``) is read by :func:`parse_request` into a :class:`RequestSpec`, so a case and
``tether policy explain --request`` describe a call the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from tether.configfile import Problem, ProblemsError, YamlDocument, did_you_mean, read_yaml_file
from tether.core.call import Call
from tether.core.errors import ConfigurationError, ErrorCode
from tether.core.identity import CredentialKind, Workload, parse_spiffe_id
from tether.core.ids import TaskId
from tether.core.provenance import Trust
from tether.core.risks import Risk
from tether.core.scope import (
    MAX_DATASET_NAME,
    MAX_TOOL_NAME,
    ActionKind,
    Classification,
    JSONValue,
    is_valid_name,
)
from tether.core.task import Intent
from tether.core.verdict import Decision, ObligationKind, ReasonCode
from tether.service.ports import PolicyRequest

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
        "request",
        "observations",
    }
)
_OBSERVATION_KEYS: Final = frozenset({"tool", "dataset", "trust", "result"})
_REQUEST_KEYS: Final = frozenset({"agent", "delegated_by", "intent", "task_id", "call", "dataflow"})
_CALL_KEYS: Final = frozenset({"tool", "action", "dataset", "classification", "args"})


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One call as a case or ``tether policy explain`` describes it."""

    agent: Workload
    intent: Intent
    task_id: TaskId
    call: Call
    classification: Classification | None
    classification_given: bool
    delegators: tuple[str, ...] = ()
    dataflow: Classification | None = None

    def to_request(self, classify: Callable[[str], Classification | None]) -> PolicyRequest:
        """The engine's request; the classification comes from ``classify`` (the catalog)
        unless the call gives one."""
        classification = (
            self.classification
            if self.classification_given
            else (classify(self.call.dataset) if self.call.dataset else None)
        )
        return PolicyRequest(
            agent=self.agent,
            call=self.call,
            classification=classification,
            intent=self.intent,
            task_id=self.task_id,
            delegators=self.delegators,
            dataflow=self.dataflow,
        )


@dataclass(frozen=True, slots=True)
class CaseObservation:
    """A tool result the case's task saw: ``trust`` ``None`` lets the catalog decide."""

    tool: str
    dataset: str | None
    trust: Trust | None
    result: JSONValue


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
    line: int | None = None
    #: The user's words at task open, and the results seen before the call (``None``: the
    #: case is decided without argument provenance).
    user_request: str | None = None
    observations: tuple[CaseObservation, ...] | None = None

    @property
    def request(self) -> RequestSpec:
        return RequestSpec(
            self.agent,
            self.intent,
            self.task_id,
            self.call,
            self.classification,
            self.classification_given,
            self.delegators,
            self.dataflow,
        )


@dataclass(frozen=True, slots=True)
class CaseFile:
    path: Path
    policies: str | None
    cases: tuple[PolicyCase, ...]
    #: What is wrong in the file: each bad case (left out of ``cases``), or the whole file.
    problems: tuple[Problem, ...] = ()
    #: Where the ``policies`` text starts in the file (line of its first line, indentation).
    policies_at: tuple[int, int] | None = None


# -- reading case files ------------------------------------------------------------------------


class _Bad(ValueError):
    """A malformed case; ``key`` (``expect``, ``call.action``) says where, when known."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def _str(raw: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value:
        raise _Bad(f"{key} must be a non-empty string", key)
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


def _observations(raw: object) -> tuple[CaseObservation, ...]:
    if not isinstance(raw, list):
        raise _Bad(
            "observations must be a list of {tool, dataset?, trust?, result}", "observations"
        )
    out: list[CaseObservation] = []
    for index, item in enumerate(raw):
        where = f"observations.{index}"
        if not isinstance(item, dict):
            raise _Bad(f"{where}: must be {{tool, dataset?, trust?, result}}", where)
        _unknown_keys(item, _OBSERVATION_KEYS, where)
        if "result" not in item:
            raise _Bad(f"{where}: result is missing (the tool's result as the agent saw it)", where)
        trust: Trust | None = None
        if "trust" in item:
            try:
                trust = Trust(str(item["trust"]))
            except ValueError:
                raise _Bad(
                    f"{where}.trust must be 'trusted' or 'untrusted' (absent: the catalog decides)",
                    f"{where}.trust",
                ) from None
        tool, dataset = item.get("tool"), item.get("dataset")
        if not isinstance(tool, str) or not is_valid_name(tool, MAX_TOOL_NAME):
            raise _Bad(f"{where}: tool is not a valid tool name", f"{where}.tool")
        if dataset is not None and (
            not isinstance(dataset, str) or not is_valid_name(dataset, MAX_DATASET_NAME)
        ):
            raise _Bad(f"{where}: dataset is not a valid dataset name", f"{where}.dataset")
        out.append(
            CaseObservation(tool, dataset, trust, _json_value(item["result"], f"{where}.result"))
        )
    return tuple(out)


def _user_request(raw: Mapping[str, Any]) -> str | None:
    if "request" not in raw:
        return None
    return _str(raw, "request")


def _dataflow(raw: object) -> Classification | None:
    if raw is None:
        return None
    try:
        return Classification(str(raw))
    except ValueError:
        known = [c.value for c in Classification]
        raise _Bad(f"dataflow must be one of {known} (the highest classification read)") from None


def _unknown_keys(raw: Mapping[Any, Any], known: frozenset[str], under: str | None = None) -> None:
    unknown = sorted(map(str, set(raw) - known))
    if unknown:
        close = did_you_mean(unknown[0], known)
        hint = f" (did you mean {close!r}?)" if close else f" (known: {', '.join(sorted(known))})"
        prefix = f"{under}: " if under else ""
        key = f"{under}.{unknown[0]}" if under else unknown[0]
        raise _Bad(f"{prefix}unknown keys {unknown}{hint}", key)


def parse_request(raw: Mapping[str, Any], known: frozenset[str] = _REQUEST_KEYS) -> RequestSpec:
    """Read one request (``agent``, ``call``…); raises ``ValueError`` saying what is wrong."""
    _unknown_keys(raw, known)
    intent_raw = raw.get("intent", {})
    if not isinstance(intent_raw, dict) or set(intent_raw) - {
        "workflow",
        "purpose",
        "on_behalf_of",
    }:
        raise _Bad("intent must be {workflow, purpose, on_behalf_of}", "intent")
    intent = Intent(
        workflow=_str(intent_raw, "workflow", DEFAULT_INTENT.workflow),
        purpose=_str(intent_raw, "purpose", DEFAULT_INTENT.purpose),
        on_behalf_of=_str(intent_raw, "on_behalf_of", DEFAULT_INTENT.on_behalf_of),
    )
    call_raw = raw.get("call")
    if not isinstance(call_raw, dict):
        raise _Bad("call must be {tool, action, dataset?, args?}", "call")
    _unknown_keys(call_raw, _CALL_KEYS, "call")
    try:
        action = ActionKind(str(call_raw.get("action")))
    except ValueError:
        raise _Bad(
            f"call.action must be one of {[a.value for a in ActionKind]}", "call.action"
        ) from None
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
    return RequestSpec(
        agent=_agent(raw.get("agent")),
        intent=intent,
        task_id=TaskId(_str(raw, "task_id", DEFAULT_TASK_ID)),
        call=Call(tool=_str(call_raw, "tool"), action=action, dataset=dataset, args=args),
        classification=classification,
        classification_given="classification" in call_raw,
        delegators=_delegators(raw.get("delegated_by")),
        dataflow=_dataflow(raw.get("dataflow")),
    )


def _parse_case(file: str, raw: Mapping[str, Any]) -> PolicyCase:
    request = parse_request(raw, _CASE_KEYS)
    name = _str(raw, "name")
    try:
        expect = Decision(str(raw.get("expect")))
    except ValueError:
        raise _Bad(f"expect must be one of {[d.value for d in Decision]}", "expect") from None
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
        agent=request.agent,
        intent=request.intent,
        task_id=request.task_id,
        call=request.call,
        classification=request.classification,
        classification_given=request.classification_given,
        expect=expect,
        expect_policy_ids=None if policy_ids is None else frozenset(policy_ids),
        expect_reason=reason,
        delegators=request.delegators,
        expect_risks=(
            None
            if "expect_risks" not in raw
            else _enum_set(raw["expect_risks"], "expect_risks", Risk)
        ),
        expect_obligations=(
            None if "expect_obligations" not in raw else _obligations(raw["expect_obligations"])
        ),
        dataflow=request.dataflow,
        expect_observed=(
            None if "expect_observed" not in raw else _observed(raw["expect_observed"])
        ),
        user_request=_user_request(raw),
        observations=(None if "observations" not in raw else _observations(raw["observations"])),
    )


def _policies_start(doc: YamlDocument) -> tuple[int, int] | None:
    """For ``policies: |``: the line its text starts on and the text's indentation."""
    place = doc.place(("policies",))
    if doc.text is None or place is None or not isinstance(doc.data, dict):
        return None
    if "policies" not in doc.data:
        return None
    lines = doc.text.splitlines()
    if not lines[place.line - 1][place.col - 1 :].startswith("|") or place.line >= len(lines):
        return None
    first = lines[place.line]  # the block's first text line (1-based line place.line + 1)
    return place.line + 1, len(first) - len(first.lstrip(" "))


def _file_problem(path: Path, message: str, line: int | None = None) -> CaseFile:
    return CaseFile(
        path=path, policies=None, cases=(), problems=(Problem(str(path), message, line),)
    )


def read_case_file(path: Path) -> CaseFile:
    """Read one case file, keeping every good case and a problem for each bad one."""
    try:
        doc = read_yaml_file(path)
    except ProblemsError as exc:
        return CaseFile(path=path, policies=None, cases=(), problems=exc.problems)
    raw = doc.data
    if not isinstance(raw, dict) or set(raw) - _FILE_KEYS or "cases" not in raw:
        return _file_problem(path, "must be a mapping with `cases` (and optionally `policies`)", 1)
    policies = raw.get("policies")
    if policies is not None and not isinstance(policies, str):
        return _file_problem(path, "policies must be Cedar text (use `policies: |`)", 1)
    items = raw["cases"]
    if not isinstance(items, list) or not items:
        return _file_problem(path, "cases must be a non-empty list", 1)
    cases: list[PolicyCase] = []
    problems: list[Problem] = []
    names: set[str] = set()
    for number, item in enumerate(items, start=1):
        label = f"case #{number}"
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            label += f" ({item['name']})"
        at = doc.place(("cases", number - 1))
        line, col = (at.line, at.col) if at is not None else (None, None)
        if not isinstance(item, dict):
            problems.append(Problem(str(path), f"{label}: must be a mapping", line, col))
            continue
        try:
            case = _parse_case(path.name, item)
        except _Bad as exc:
            key = tuple(int(k) if k.isdigit() else k for k in exc.key.split(".")) if exc.key else ()
            there = doc.place(("cases", number - 1, *key), key=True) or at
            problems.append(
                Problem(
                    str(path),
                    f"{label}: {exc}",
                    there.line if there else None,
                    there.col if there else None,
                )
            )
            continue
        if case.name in names:
            problems.append(
                Problem(str(path), f"{label}: another case has the same name", line, col)
            )
            continue
        names.add(case.name)
        cases.append(replace(case, line=line))
    return CaseFile(
        path=path,
        policies=policies,
        cases=tuple(cases),
        problems=tuple(problems),
        policies_at=_policies_start(doc),
    )


def load_case_file(path: Path) -> CaseFile:
    """Read one case file; raises ``ConfigurationError`` naming the first bad case's place."""
    case_file = read_case_file(path)
    if case_file.problems:
        raise ConfigurationError(str(case_file.problems[0]), code=ErrorCode.CONFIGURATION)
    return case_file


def case_paths(policy_dir: Path, cases: Path | None = None) -> list[Path]:
    """``cases`` (a file, or every ``*.yaml`` under a directory), default ``policy_dir/tests``."""
    target = cases if cases is not None else policy_dir / "tests"
    if target.is_file():
        return [target]
    if not target.is_dir():
        raise ConfigurationError(f"{target}: no such case file or directory")
    return sorted(target.rglob("*.yaml"))


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
