"""``tether policy``: validate, test, explain and format policies; print the context schema.

Output is plain lines (``file:line:col: message`` for problems), never wrapped or cut, so it
pipes into editors, grep and CI. Exit codes: 0 ok, 1 a check failed (an invalid policy, a failed
or bad test case), 2 usage (a bad option or request).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from tether.cli.common import fail
from tether.cli.exits import ExitCode
from tether.core import strict_json
from tether.core.errors import ConfigurationError
from tether.policy import CedarPolicyEngine, format_policy_text

if TYPE_CHECKING:
    from tether.configfile import Problem

app = typer.Typer(help="Validate, test, explain and format Cedar policies.")

PolicyDir = Annotated[
    Path,
    typer.Argument(
        help="Policy directory: *.cedar, schema.cedarschema, catalog.yaml, tests/*.yaml.",
        exists=True,
        file_okay=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=False))


def _load(policy_dir: Path, as_json: bool) -> CedarPolicyEngine:
    """The engine for ``policy_dir``, or print every problem and exit 1."""
    from tether.policy.diagnostics import PolicyInvalid

    try:
        return CedarPolicyEngine.load(policy_dir)
    except PolicyInvalid as exc:
        placed = [replace(p, file=str(policy_dir / p.file)) for p in exc.problems]
        _print_problems(placed, as_json)
        raise typer.Exit(ExitCode.CHECK_FAILED) from None
    except ConfigurationError as exc:
        fail(exc.message, exc.code.value, ExitCode.CHECK_FAILED)


def _print_problems(problems: Sequence[Any], as_json: bool) -> None:
    if as_json:
        _echo_json({"ok": False, "problems": [p.to_json() for p in problems]})
        return
    for problem in problems:
        typer.echo(str(problem))
    count = len(problems)
    typer.echo(f"{count} problem{'s' if count != 1 else ''}", err=True)


@app.command("validate")
def validate(
    target: Annotated[
        Path,
        typer.Argument(
            help="A policy directory, or one file of it: a *.cedar file (checked against the "
            "schema.cedarschema beside it), the schema, catalog.yaml, workflows.yaml, "
            "dataflow.yaml or credentials.yaml.",
            exists=True,
        ),
    ],
    as_json: Json = False,
) -> None:
    """Parse and validate policies against the schema, and the YAML files beside them
    (credentials.yaml included); exit 1 listing each problem as file:line:col: message."""
    from tether.policy.bundle import CheckReport, check_path

    try:
        report = CheckReport(()) if _is_credentials(target) else check_path(target)
    except ConfigurationError as exc:  # a file that cannot be read: the check failed
        fail(exc.message, exc.code.value, ExitCode.CHECK_FAILED)
    problems = [*report.problems, *_credentials_problems(target)]
    if problems:
        _print_problems(problems, as_json)
        raise typer.Exit(ExitCode.CHECK_FAILED)
    observed = sum(1 for p in report.policies if p.observed)
    if as_json:
        _echo_json(
            {
                "ok": True,
                "policies": len(report.policies),
                "observe_mode": observed,
                "revision": report.revision,
                "problems": [],
            }
        )
        return
    if _is_credentials(target):
        typer.echo(f"ok: {target} is valid")
        return
    revision = f" (revision {report.revision[:12]})" if report.revision else ""
    typer.echo(
        f"ok: {len(report.policies)} policies valid against the schema{revision}"
        + (f"; {observed} in observe mode (audited, not enforced)" if observed else "")
    )


def _is_credentials(target: Path) -> bool:
    from tether.credentials.downstream import CREDENTIALS_FILE

    return target.name == CREDENTIALS_FILE and not target.is_dir()


def _credentials_problems(target: Path) -> list[Problem]:
    """The problems of ``credentials.yaml``: ``target`` itself, or the one in the directory
    ``target`` (none when it has none). The policy package does not read that file (it is the
    credentials package's), so the command checks it here."""
    from tether.credentials.downstream import CREDENTIALS_FILE, check_credentials_file

    path = target / CREDENTIALS_FILE if target.is_dir() else target
    if not _is_credentials(path) or not path.exists():
        return []
    return check_credentials_file(path)


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"
    JUNIT = "junit"


@app.command("test")
def test(
    policy_dir: PolicyDir,
    cases: Annotated[
        Path | None,
        typer.Option("--cases", "-c", help="A case file or directory (default: DIR/tests)."),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only failures, problems and the summary.")
    ] = False,
    output: Annotated[
        Format,
        typer.Option("--format", "-f", help="text, json, or junit (JUnit XML for CI)."),
    ] = Format.TEXT,
    as_json: Annotated[bool, typer.Option("--json", help="The same as --format json.")] = False,
) -> None:
    """Run YAML policy test cases (request → expected decision). Exit 0 when all pass, 1 when
    a case fails or a case file is bad (each bad case is reported at file:line and the others
    still run), 2 on a usage error, 4 when a path named does not exist."""
    from tether.policy.junit import junit_xml
    from tether.policy.testing import report_json, run_policy_suite

    if cases is not None and not cases.exists():
        fail(f"{cases}: no such case file or directory", "file_not_found", ExitCode.NOT_FOUND)
    try:
        report = run_policy_suite(policy_dir, cases)
    except ConfigurationError as error:
        fail(error.message, error.code.value, ExitCode.CHECK_FAILED)
    fmt = Format.JSON if as_json else output
    if fmt is Format.JSON:
        _echo_json(report_json(report))
    elif fmt is Format.JUNIT:
        typer.echo(junit_xml(report), nl=False)
    else:
        for result in report.results:
            if result.passed and quiet:
                continue
            if result.passed:
                typer.echo(f"PASS {result.where} {result.name} ({result.actual.value})")
            else:
                typer.echo(f"FAIL {result.where} {result.describe().split(' :: ', 1)[1]}")
        for problem in report.problems:
            typer.echo(str(problem))
        passed = len(report.results) - len(report.failed)
        summary = f"{passed} passed, {len(report.failed)} failed"
        if report.problems:
            count = len(report.problems)
            summary += f", {count} problem{'s' if count != 1 else ''}"
        typer.echo(summary)
    if not report.results and not report.problems:
        fail(
            f"no test cases found under {cases or policy_dir / 'tests'}",
            "no_cases",
            ExitCode.CHECK_FAILED,
        )
    raise typer.Exit(ExitCode.OK if report.ok else ExitCode.CHECK_FAILED)


def _usage(message: str) -> NoReturn:
    fail(message, "usage", ExitCode.USAGE)


def _arg_value(text: str) -> Any:
    """``--arg k=v``: ``v`` as JSON when it is JSON (``500``, ``true``, ``[1]``), else text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _request_from_flags(
    agent: str | None,
    tool: str | None,
    action: str | None,
    dataset: str | None,
    classification: str | None,
    args: Sequence[str],
    args_json: str | None,
    intent: dict[str, str | None],
    task_id: str | None,
    delegated_by: Sequence[str],
    dataflow: str | None,
) -> dict[str, Any]:
    call: dict[str, Any] = {"tool": tool, "action": action}
    if dataset is not None:
        call["dataset"] = dataset
    if classification is not None:
        call["classification"] = classification
    values: dict[str, Any] = {}
    if args_json is not None:
        try:
            values = json.loads(args_json)
        except ValueError as exc:
            _usage(f"--args is not JSON: {exc}")
        if not isinstance(values, dict):
            _usage("--args must be a JSON object")
    for item in args:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _usage(f"--arg {item!r}: write it as name=value")
        values[key] = _arg_value(value)
    if values:
        call["args"] = values
    raw: dict[str, Any] = {"agent": agent, "call": call}
    given_intent = {k: v for k, v in intent.items() if v is not None}
    if given_intent:
        raw["intent"] = given_intent
    if task_id is not None:
        raw["task_id"] = task_id
    if delegated_by:
        raw["delegated_by"] = list(delegated_by)
    if dataflow is not None:
        raw["dataflow"] = dataflow
    return raw


#: The largest --request document read (a request, not a log).
MAX_REQUEST_BYTES = 1024 * 1024


def _read_request(source: str) -> dict[str, Any]:
    try:
        if source == "-":
            data = sys.stdin.buffer.read(MAX_REQUEST_BYTES + 1)
        else:
            with Path(source).open("rb") as handle:
                data = handle.read(MAX_REQUEST_BYTES + 1)
    except OSError as exc:
        _usage(f"--request {source}: cannot be read ({exc.strerror})")
    if len(data) > MAX_REQUEST_BYTES:
        _usage(f"--request {source}: larger than {MAX_REQUEST_BYTES} bytes; send one request")
    try:
        # The same strict reader as the API: a repeated key or a lone surrogate is refused.
        raw = strict_json.loads(data)
    except ValueError as exc:
        _usage(f"--request {source}: not JSON ({exc})")
    if not isinstance(raw, dict):
        _usage("--request must be a JSON object: {agent, call: {tool, action, …}, …}")
    return raw


@app.command("explain")
def explain(
    policy_dir: PolicyDir,
    agent: Annotated[
        str | None,
        typer.Option(help="The workload: a SPIFFE ID such as spiffe://tether.local/agent/x."),
    ] = None,
    tool: Annotated[str | None, typer.Option(help="The tool called.")] = None,
    action: Annotated[
        str | None, typer.Option(help="read, write, delete, send, execute or spend.")
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="The dataset the call touches.")] = None,
    classification: Annotated[
        str | None, typer.Option(help="Override the dataset's classification from the catalog.")
    ] = None,
    arg: Annotated[
        list[str] | None,
        typer.Option("--arg", help="A call argument, name=value (value read as JSON if it is)."),
    ] = None,
    args_json: Annotated[
        str | None, typer.Option("--args", help="The call's arguments as a JSON object.")
    ] = None,
    workflow: Annotated[str | None, typer.Option(help="The task's declared workflow.")] = None,
    purpose: Annotated[str | None, typer.Option(help="The task's declared purpose.")] = None,
    on_behalf_of: Annotated[str | None, typer.Option(help="Whom the task acts for.")] = None,
    task_id: Annotated[str | None, typer.Option(help="The task id.")] = None,
    delegated_by: Annotated[
        list[str] | None,
        typer.Option("--delegated-by", help="Who delegated the grant, root first (repeat)."),
    ] = None,
    dataflow: Annotated[
        str | None, typer.Option(help="The task's data-flow label so far (e.g. confidential).")
    ] = None,
    request: Annotated[
        str | None,
        typer.Option(
            "--request",
            "-r",
            help="The request as JSON (a file, or - for stdin), with the keys of a test case: "
            "agent, call {tool, action, dataset, classification, args}, intent, task_id, "
            "delegated_by, dataflow. Not together with the flags above.",
        ),
    ] = None,
    as_json: Json = False,
) -> None:
    """Decide one request against DIR, without a server: print the verdict, the policies that
    matched (file:line), the reasons and the exact context Cedar saw."""
    from tether.policy.cases import parse_request
    from tether.policy.explain import explain as explain_request

    flags = [agent, tool, action, dataset, classification, args_json, workflow, purpose]
    flags += [on_behalf_of, task_id, dataflow]
    if request is not None:
        if any(f is not None for f in flags) or arg or delegated_by:
            _usage("give the request either as --request JSON or as flags, not both")
        raw = _read_request(request)
    else:
        intent = {"workflow": workflow, "purpose": purpose, "on_behalf_of": on_behalf_of}
        raw = _request_from_flags(
            agent,
            tool,
            action,
            dataset,
            classification,
            arg or [],
            args_json,
            intent,
            task_id,
            delegated_by or [],
            dataflow,
        )
    try:
        spec = parse_request(raw)
    except ValueError as exc:
        _usage(f"the request: {exc}")
    engine = _load(policy_dir, as_json)
    explanation = explain_request(engine, spec.to_request(engine.classification))
    if as_json:
        _echo_json(explanation.to_json())
        return
    for line in _explanation_lines(explanation):
        typer.echo(line)


def _explanation_lines(explanation: Any) -> list[str]:
    outcome, call = explanation.outcome, explanation.request.call
    approvers = f" ({outcome.approvers} approvers)" if outcome.approvers > 1 else ""
    lines = [f"decision: {outcome.decision.value}{approvers}", "reasons:"]
    lines += [f"  {r.code.value}: {r.message}" for r in outcome.reasons]
    by_id = {t.policy.policy_id: t.policy for t in explanation.evaluated}
    if outcome.policy_ids:
        decided = [f"{i} ({by_id[i].where})" if i in by_id else i for i in outcome.policy_ids]
        lines.append(f"decided by: {', '.join(decided)}")
    if outcome.obligations:
        lines.append(
            "obligations: " + ", ".join(f"{o.kind.value}={o.value}" for o in outcome.obligations)
        )
    lines.append(f"risks: {', '.join(sorted(r.value for r in outcome.risks))}")
    head = f"{call.action.value} on {call.tool}"
    width = max((len(t.policy.policy_id) for t in explanation.evaluated), default=0)
    width = max([width, *(len(t.policy.policy_id) for t in explanation.observing)])
    if explanation.evaluated:
        lines.append(f"policies whose head applies to {head}:")
        lines += [_trace_line(t, width) for t in explanation.evaluated]
    if explanation.observing:
        lines.append("observe-mode policies (audited, never enforced):")
        lines += [_trace_line(t, width) for t in explanation.observing]
    for observed in outcome.observed:
        lines.append(f"  observe: {observed.policy_id} would make it {observed.would.value}")
    if explanation.note:
        lines.append(f"note: {explanation.note}")
    if explanation.context is not None:
        lines.append("context Cedar saw (only the attributes these policies read):")
        lines += ["  " + ln for ln in json.dumps(explanation.context, indent=2).splitlines()]
    lines.append(f"policy revision: {explanation.revision}")
    return lines


def _trace_line(trace: Any, width: int) -> str:
    meta = trace.policy
    state = "error" if trace.error else ("matched" if trace.satisfied else "not matched")
    kind = "forbid (approval)" if meta.is_approval_forbid else meta.effect.value
    line = f"  {state:<11}  {kind:<17}  {meta.policy_id:<{width}}  {meta.where}"
    return line + (f"  {trace.error}" if trace.error else "")


@app.command("context-schema")
def context_schema(
    as_json: Annotated[
        bool, typer.Option("--json", help="Cedar's JSON schema format instead of Cedar syntax.")
    ] = False,
) -> None:
    """Print the request tether sends Cedar (principal, action, resource and the context
    record) as a Cedar schema to start a schema.cedarschema from."""
    from tether.policy.shape import request_schema_json, request_schema_text

    if as_json:
        _echo_json(request_schema_json())
    else:
        typer.echo(request_schema_text(), nl=False)


@app.command("fmt")
def fmt(
    policy_dir: PolicyDir,
    check: Annotated[
        bool, typer.Option("--check", help="Only report files that are not formatted; exit 1.")
    ] = False,
) -> None:
    """Format every *.cedar file with Cedar's formatter."""
    unformatted: list[str] = []
    try:
        for path in sorted(policy_dir.glob("*.cedar")):
            text = path.read_text(encoding="utf-8")
            formatted = format_policy_text(text, name=str(path))
            if formatted != text:
                unformatted.append(path.name)
                if not check:
                    path.write_text(formatted, encoding="utf-8")
    except ConfigurationError as exc:
        typer.echo(exc.message)
        raise typer.Exit(ExitCode.CHECK_FAILED) from None
    if check and unformatted:
        fail(
            f"not formatted: {', '.join(unformatted)} (run tether policy fmt)",
            "unformatted",
            ExitCode.CHECK_FAILED,
        )
    verb = "would reformat" if check else "reformatted"
    typer.echo(f"{verb} {len(unformatted)} file(s)" if unformatted else "all files formatted")
