"""Running policy test cases: ``tether policy test DIR`` and pytest run the same code.

Case files are read by :mod:`tether.policy.cases` (their format is documented there). Each case
is decided by the engine and compared with what it expects (:class:`CaseResult`); a case that
states the user's request or observed results is decided with argument provenance too, so a
sink is tested like a policy.
:func:`run_policy_suite` runs every case that can run and reports, next to the results, every
problem at its ``file:line:col``: a bad case (the file's other cases still run), a bad file,
policies that do not load. :func:`run_policy_tests` raises ``ConfigurationError`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from tether.core.decide import PROVENANCE_POLICY, untrusted_reason
from tether.core.errors import ConfigurationError, ErrorCode
from tether.core.facts import PolicyOutcome
from tether.core.provenance import Observation, Outcome, ProvenanceIndex, Source, observe
from tether.core.provenance_rules import (
    NO_PROVENANCE,
    OPERATOR_SOURCE,
    REQUEST_SOURCE,
    ArgumentProvenance,
    ProvenanceRules,
    assess,
)
from tether.core.risks import Risk
from tether.core.verdict import Decision, Reason
from tether.policy.bundle import POLICY_SUFFIX, read_policy_dir
from tether.policy.cases import (
    CaseFile,
    PolicyCase,
    RequestSpec,
    case_paths,
    load_case_file,
    parse_request,
    read_case_file,
)
from tether.policy.diagnostics import PolicyInvalid, Problem
from tether.policy.engine import CedarPolicyEngine

__all__ = [
    "CaseFile",
    "CaseResult",
    "PolicyCase",
    "RequestSpec",
    "SuiteReport",
    "case_paths",
    "engine_for",
    "load_case_file",
    "parse_request",
    "read_case_file",
    "run_case",
    "run_policy_suite",
    "run_policy_tests",
]


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
    line: int | None = None
    path: str = ""

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def where(self) -> str:
        """``path:line`` of the case (its file name when the path is not known)."""
        where = self.path or self.file
        return f"{where}:{self.line}" if self.line is not None else where

    def describe(self) -> str:
        head = f"{self.file} :: {self.name}: "
        if self.passed:
            return head + f"ok ({self.actual.value})"
        why = "; ".join(f"{r.code.value}: {r.message}" for r in self.reasons)
        return head + "; ".join(self.problems) + (f" (reasons: {why})" if why else "")


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


#: The key of a case's fingerprints: they live only while the case runs.
_CASE_KEY: Final = b"tether policy test: provenance fingerprints"


def _provenance(rules: ProvenanceRules, case: PolicyCase) -> ArgumentProvenance:
    """The provenance facts of the case's call: its sink arguments against the user's request,
    the observations (split by the catalog where the case gives no trust) and the operator's
    trusted values, as the service gathers them for a task."""
    sinks = rules.sinks_for(case.call.tool)
    if not sinks or (case.user_request is None and case.observations is None):
        return NO_PROVENANCE
    seen: list[Observation] = []
    for given in case.observations or ():
        pieces = (
            rules.sources_of(given.tool, given.dataset, given.result)
            if given.trust is None
            else ((Source(given.tool, given.dataset, given.trust), given.result),)
        )
        seen.extend(observe(_CASE_KEY, source, part) for source, part in pieces)
    if case.user_request is not None:
        seen.append(observe(_CASE_KEY, REQUEST_SOURCE, case.user_request))
    if rules.trusted_values:
        seen.append(observe(_CASE_KEY, OPERATOR_SOURCE, list(rules.trusted_values)))
    return assess(case.call.args, sinks, ProvenanceIndex.of(seen), _CASE_KEY)


def _with_provenance(outcome: PolicyOutcome, provenance: ArgumentProvenance) -> PolicyOutcome:
    """Cedar's answer with the provenance check, in the order a decision takes them
    (:mod:`tether.core.decide`): a sink failing with ``deny`` stops the call before Cedar; one
    failing with ``approval_required`` raises anything Cedar does not deny to a human."""
    match provenance.outcome:
        case None:
            return outcome
        case Outcome.DENY:
            return PolicyOutcome(
                Decision.DENY,
                (untrusted_reason(provenance),),
                (PROVENANCE_POLICY,),
                risks=frozenset({Risk.ASI01}),
            )
        case Outcome.APPROVAL_REQUIRED:
            if outcome.decision is Decision.DENY:
                return outcome
            kept = outcome.reasons if outcome.decision is Decision.APPROVAL_REQUIRED else ()
            return replace(
                outcome,
                decision=Decision.APPROVAL_REQUIRED,
                reasons=(untrusted_reason(provenance), *kept),
                policy_ids=(PROVENANCE_POLICY, *outcome.policy_ids),
                obligations=(),
                risks=outcome.risks | {Risk.ASI01},
                approvers=max(1, outcome.approvers),
            )


def run_case(engine: CedarPolicyEngine, case: PolicyCase) -> CaseResult:
    """Decide one case and compare the outcome with what it expects."""
    provenance = _provenance(engine.provenance, case)
    request = replace(case.request.to_request(engine.classification), provenance=provenance)
    outcome = _with_provenance(engine.decide(request), provenance)
    return CaseResult(
        file=case.file,
        name=case.name,
        expected=case.expect,
        actual=outcome.decision,
        policy_ids=outcome.policy_ids,
        reasons=outcome.reasons,
        problems=_check(case, outcome),
        line=case.line,
    )


@dataclass(frozen=True, slots=True)
class SuiteReport:
    """Every case's result and every problem (bad case, bad file, policies that do not load)."""

    results: tuple[CaseResult, ...] = ()
    problems: tuple[Problem, ...] = ()
    files: tuple[str, ...] = field(default=())

    @property
    def failed(self) -> tuple[CaseResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    @property
    def ok(self) -> bool:
        return bool(self.results) and not self.problems and not self.failed


def _policy_problems(exc: PolicyInvalid, policy_dir: Path, case_file: CaseFile) -> list[Problem]:
    """The problems of policies that do not load, placed in the file they come from: the
    directory's files, or the case file's inline ``policies`` text."""
    if case_file.policies is None:
        return [replace(p, file=str(policy_dir / p.file)) for p in exc.problems]
    out: list[Problem] = []
    inline = case_file.path.stem + POLICY_SUFFIX
    for problem in exc.problems:
        if problem.file != inline:
            out.append(replace(problem, file=str(policy_dir / problem.file)))
        elif case_file.policies_at is not None and problem.line is not None:
            first, indent = case_file.policies_at
            col = problem.col + indent if problem.col is not None else None
            out.append(Problem(str(case_file.path), problem.message, first + problem.line - 1, col))
        else:
            out.append(Problem(str(case_file.path), f"policies: {problem.message}"))
    return out


def run_policy_suite(policy_dir: Path, cases: Path | None = None) -> SuiteReport:
    """Run every case that can run (default: ``policy_dir/tests/*.yaml``); a bad case, a bad
    file or policies that do not load are problems in the report, never an exception, except
    a case path that does not exist (``ConfigurationError``)."""
    results: list[CaseResult] = []
    problems: list[Problem] = []
    paths = case_paths(policy_dir, cases)
    directory_engine: CedarPolicyEngine | PolicyInvalid | None = None
    for path in paths:
        case_file = read_case_file(path)
        problems.extend(case_file.problems)
        if not case_file.cases:
            continue
        engine: CedarPolicyEngine | PolicyInvalid
        if case_file.policies is None and directory_engine is not None:
            engine = directory_engine
        else:
            try:
                engine = engine_for(policy_dir, case_file)
            except PolicyInvalid as exc:
                engine = exc
            if case_file.policies is None:
                directory_engine = engine
                if isinstance(engine, PolicyInvalid):
                    problems.extend(_policy_problems(engine, policy_dir, case_file))
            elif isinstance(engine, PolicyInvalid):
                problems.extend(_policy_problems(engine, policy_dir, case_file))
        if isinstance(engine, PolicyInvalid):
            continue
        results.extend(replace(run_case(engine, case), path=str(path)) for case in case_file.cases)
    return SuiteReport(tuple(results), tuple(problems), tuple(str(p) for p in paths))


def run_policy_tests(policy_dir: Path, cases: Path | None = None) -> list[CaseResult]:
    """Run every case (default: ``policy_dir/tests/*.yaml``) and return one result per case.

    Raises ``ConfigurationError`` when the policies do not load or a case file is malformed.
    """
    report = run_policy_suite(policy_dir, cases)
    if report.problems:
        raise ConfigurationError(
            "\n".join(str(p) for p in report.problems), code=ErrorCode.POLICY_INVALID
        )
    return list(report.results)


def report_json(report: SuiteReport) -> dict[str, Any]:
    """``tether policy test --format json``: the summary, each result and each problem."""
    return {
        "ok": report.ok,
        "summary": {
            "passed": len(report.results) - len(report.failed),
            "failed": len(report.failed),
            "problems": len(report.problems),
        },
        "results": [
            {
                "file": r.path or r.file,
                "line": r.line,
                "name": r.name,
                "passed": r.passed,
                "expected": r.expected.value,
                "actual": r.actual.value,
                "policy_ids": list(r.policy_ids),
                "reasons": [reason.to_json() for reason in r.reasons],
                "problems": list(r.problems),
            }
            for r in report.results
        ],
        "problems": [p.to_json() for p in report.problems],
    }
