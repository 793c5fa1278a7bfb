"""``tether report``: privileges, risks, framework controls and observe-mode flips, from the
audit log.

Each command reads the store of ``--data-dir`` or an exported JSON-lines file (``--file``, as
``tether audit export`` writes it), keeps the records in ``[--since, --until)`` and prints a
table (or ``--json``). The reports themselves are pure functions in :mod:`tether.reports`.
An empty log is reported as such (exit 0); a malformed file or record is a one-line error with
exit 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tether.cli.common import (
    DEFAULT_DATA_DIR,
    StoreUrl,
    fail,
    store_url_of,
    tether_errors,
)
from tether.cli.exits import ExitCode
from tether.cli.output import print_rich_table
from tether.core.audit import AuditRecord
from tether.core.checkpoint import is_export_checkpoint
from tether.core.scope import JSONValue
from tether.core.verdict import Decision
from tether.reports import (
    MalformedRecord,
    Window,
    activity,
    controls,
    flips,
    parse_instant,
    privileges,
    proposed_policy,
    render_privileges_html,
    risks,
)
from tether.reports.controls import Coverage
from tether.reports.frameworks import not_addressed
from tether.reports.html import RATIO_DEFINITION, ratio_text
from tether.reports.jsonout import controls_json, flips_json, privileges_json, risks_json
from tether.reports.risks import RiskTable
from tether.runtime import open_store

app = typer.Typer(
    help=(
        "Reports over the audit log: privileges used against granted, risks, controls, and the "
        "calls observe-mode policies would have changed."
    ),
    no_args_is_help=True,
)

MAX_LINE_BYTES = 4 * 1024 * 1024

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        "-d",
        help="tether's data directory, whose store is read. Env: TETHER_DATA_DIR.",
        envvar="TETHER_DATA_DIR",
        file_okay=False,
        show_default=str(DEFAULT_DATA_DIR),
    ),
]
FileOption = Annotated[
    Path | None,
    typer.Option(
        "--file",
        "-f",
        help="Read an exported JSON-lines audit file (tether audit export) instead of a store.",
        dir_okay=False,
    ),
]
SinceOption = Annotated[
    str | None,
    typer.Option("--since", help="Only records at or after this ISO-8601 time (UTC if no offset)."),
]
UntilOption = Annotated[
    str | None,
    typer.Option("--until", help="Only records before this ISO-8601 time (UTC if no offset)."),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the report as one JSON document instead.")
]


def _console() -> Console:
    # Made per command so COLUMNS set for this run is honoured; not wrapped in a pipe or file.
    console = Console(highlight=False)
    console.soft_wrap = not console.is_terminal
    return console


def _malformed(message: str) -> NoReturn:
    fail(message, "malformed_audit", ExitCode.CHECK_FAILED)


def _read_file(path: Path) -> Iterator[AuditRecord]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if len(raw) > MAX_LINE_BYTES:
                _malformed(f"line {number} of {path} is larger than 4 MiB")
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
                if is_export_checkpoint(data):
                    continue  # the signed line closing an export: `tether audit verify` checks it
                yield AuditRecord.from_json(data)
            except ValueError as error:  # JSONDecodeError and UnicodeDecodeError too
                _malformed(f"line {number} of {path} is not an audit record: {error}")


def _window(since: str | None, until: str | None) -> Window:
    bounds: list[datetime | None] = []
    for name, value in (("--since", since), ("--until", until)):
        if value is None:
            bounds.append(None)
            continue
        try:
            bounds.append(parse_instant(value))
        except ValueError:
            fail(
                f"{name} must be an ISO-8601 time such as 2026-11-28T12:00:00Z, not {value!r}",
                "invalid_option",
            )
    try:
        return Window(bounds[0], bounds[1])
    except ValueError as error:
        fail(str(error), "invalid_option")


def _load(
    ctx: typer.Context, data_dir: Path | None, file: Path | None, store_url: str | None = None
) -> tuple[list[AuditRecord], str]:
    """All records of the source, and its name; fails with one line on anything wrong."""
    # TETHER_DATA_DIR in the environment must not clash with --file; only a typed option does.
    given = ctx.get_parameter_source("data_dir")
    explicit = given is not None and given.name == "COMMANDLINE"
    if file is not None and data_dir is not None and explicit:
        fail("give --data-dir or --file, not both", "invalid_option")
    if file is not None:
        if not file.is_file():
            fail(f"{file} does not exist or is not a file", "file_not_found", ExitCode.NOT_FOUND)
        try:
            return list(_read_file(file)), str(file)
        except OSError as error:
            fail(f"cannot read {file}: {error.strerror}", "file_unreadable", ExitCode.USAGE)
    directory = data_dir or DEFAULT_DATA_DIR
    url = store_url_of(store_url)
    if url is not None:
        with tether_errors():
            store = open_store(directory, url)
            try:
                return list(store.audit_records()), "the --store-url database"
            finally:
                store.close()
    if not (directory / "tether.db").exists():
        fail(
            f"no tether store in {directory}; pass --data-dir of a directory `tether serve` "
            "used, or --file of an exported audit log",
            "store_not_found",
            ExitCode.NOT_FOUND,
        )
    with tether_errors():
        store = open_store(directory)
        try:
            return list(store.audit_records()), str(directory)
        finally:
            store.close()


@contextmanager
def _reading(source: str) -> Iterator[None]:
    """A record the report cannot read is a one-line error naming it, exit 1."""
    try:
        yield
    except MalformedRecord as error:
        _malformed(f"{error} (in {source})")


def _say_empty(console: Console, records: int, in_window: int, source: str, window: Window) -> bool:
    """Print why there is nothing to report; True when so."""
    if records == 0:
        console.print(f"no audit records in {escape(source)}: nothing to report yet")
        return True
    if in_window == 0:
        console.print(
            f"no audit records {escape(window.describe())} in {escape(source)} "
            f"({records} outside the window): nothing to report"
        )
        return True
    return False


def _print_json(value: dict[str, JSONValue]) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


# -- privileges --------------------------------------------------------------------------------


@app.command("privileges")
def privileges_command(
    ctx: typer.Context,
    data_dir: DataDirOption = None,
    file: FileOption = None,
    store_url: StoreUrl = None,
    since: SinceOption = None,
    until: UntilOption = None,
    html: Annotated[
        Path | None,
        typer.Option("--html", help="Also write a self-contained HTML report with charts."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Granted against used privilege per agent and workflow, with a tighter proposal."""
    window = _window(since, until)
    console = _console()
    records, source = _load(ctx, data_dir, file, store_url)
    with _reading(source):
        report = privileges(records, window)
        if html is not None:
            page = render_privileges_html(
                report,
                activity(records, window),
                source=source,
                generated_at=datetime.now(UTC),
            )
            try:
                html.write_text(page, encoding="utf-8")
            except OSError as error:
                fail(f"cannot write {html}: {error.strerror}", "write_failed", ExitCode.USAGE)
    if as_json:
        _print_json(privileges_json(report))
        return
    if html is not None:
        console.print(f"wrote the HTML report to {escape(str(html))}")
    if _say_empty(console, len(records), report.records, source, window):
        return
    if not report.groups:
        console.print(
            f"no task was opened {escape(window.describe())}: no grant to compare "
            f"({report.records} records, {report.unattributed} unattributed decisions)"
        )
        return
    table = Table(
        "agent",
        "workflow",
        "tasks",
        "granted",
        "used",
        "ratio",
        "unused tools",
        "unused actions",
        "unused datasets",
        title="least privilege: granted against used (tool, action, dataset) triples",
    )
    for g in report.groups:
        table.add_row(
            escape(g.agent),
            escape(g.workflow),
            str(g.tasks),
            str(len(g.granted)),
            str(len(g.used_granted)),
            ratio_text(g.ratio),
            escape(", ".join(g.unused_tools) or "-"),
            escape(
                "; ".join(
                    f"{tool}: {', '.join(a.value for a in acts)}"
                    for tool, acts in g.unused_actions.items()
                )
                or "-"
            ),
            escape(
                "; ".join(f"{tool}: {', '.join(ds)}" for tool, ds in g.unused_datasets.items())
                or "-"
            ),
        )
    print_rich_table(console, table)
    console.print(
        f"all: {report.used_total} of {report.granted_total} granted triples used, ratio "
        f"{ratio_text(report.ratio)}; {report.unattributed} decision(s) on no task of the window"
    )
    console.print(f"[dim]{escape(RATIO_DEFINITION)}[/]")
    for g in report.groups:
        console.rule(f"proposed for {escape(g.agent)} · {escape(g.workflow)}")
        if g.used_outside_grant:
            outside = ", ".join(
                str(t) for t in sorted(g.used_outside_grant, key=lambda t: t.sort_key)
            )
            console.print(f"[bold red]used under break-glass[/]: {escape(outside)}")
        console.print("grant scopes:", style="bold")
        console.print(json.dumps(g.proposed_json(), sort_keys=True), markup=False, soft_wrap=True)
        for p in g.proposed:
            if p.note:
                console.print(f"[yellow]note[/]: {escape(p.note)}")
        console.print("Cedar policy:", style="bold")
        # Never wrapped: a wrapped "//" comment is no longer Cedar that parses.
        console.print(proposed_policy(g), markup=False, soft_wrap=True)


# -- risks -------------------------------------------------------------------------------------


def _risk_rows(table: Table, key: str, counts: RiskTable) -> None:
    for risk, c in counts.items():
        table.add_row(escape(key), risk.value, risk.label, str(c.deny), str(c.approval_required))


@app.command("risks")
def risks_command(
    ctx: typer.Context,
    data_dir: DataDirOption = None,
    file: FileOption = None,
    store_url: StoreUrl = None,
    since: SinceOption = None,
    until: UntilOption = None,
    as_json: JsonOption = False,
) -> None:
    """Denials and approval requests by OWASP Agentic risk id, agent and workflow."""
    window = _window(since, until)
    console = _console()
    records, source = _load(ctx, data_dir, file, store_url)
    with _reading(source):
        report = risks(records, window)
    if as_json:
        _print_json(risks_json(report))
        return
    if _say_empty(console, len(records), report.records, source, window):
        return
    if not report.totals:
        console.print(
            f"{report.decisions} decision(s) {escape(window.describe())}, none denied or sent "
            "for approval: no risk to count"
        )
        return
    totals = Table(
        "risk", "name", "deny", "approval_required", title="OWASP Agentic (ASI) risks guarded"
    )
    for risk, c in report.totals.items():
        totals.add_row(risk.value, risk.label, str(c.deny), str(c.approval_required))
    print_rich_table(console, totals)
    by_agent = Table("agent", "risk", "name", "deny", "approval_required", title="by agent")
    for agent, counts in report.by_agent.items():
        _risk_rows(by_agent, agent, counts)
    print_rich_table(console, by_agent)
    by_workflow = Table(
        "workflow", "risk", "name", "deny", "approval_required", title="by workflow"
    )
    for workflow, counts in report.by_workflow.items():
        _risk_rows(by_workflow, workflow if workflow is not None else "(no task)", counts)
    print_rich_table(console, by_workflow)
    console.print(
        f"{report.denials} denial(s) and {report.approvals} approval request(s) among "
        f"{report.decisions} decision(s); a verdict counts once for each risk id it carries"
    )


# -- controls ----------------------------------------------------------------------------------


@app.command("controls")
def controls_command(
    ctx: typer.Context,
    data_dir: DataDirOption = None,
    file: FileOption = None,
    store_url: StoreUrl = None,
    since: SinceOption = None,
    until: UntilOption = None,
    as_json: JsonOption = False,
) -> None:
    """Framework alignment of tether's controls, with evidence and gaps from the log."""
    window = _window(since, until)
    console = _console()
    records, source = _load(ctx, data_dir, file, store_url)
    with _reading(source):
        report = controls(records, window)
    if as_json:
        _print_json(controls_json(report))
        return
    if _say_empty(console, len(records), report.records, source, window):
        return
    table = Table(
        "control",
        "status",
        "OWASP ASI",
        "OWASP NHI (2025)",
        "NIST AI RMF",
        "NIST CSF 2.0",
        "CSA MAESTRO",
        "decisions",
        "denials",
        "approvals",
        "break-glass",
        "other evidence",
        title=f"framework alignment ({report.records} records {escape(window.describe())})",
    )
    styles = {Coverage.EVIDENCED: "green", Coverage.IDLE: "yellow", Coverage.NOT_SEEN: "dim"}
    for row in report.rows:
        c, e = row.control, row.evidence
        table.add_row(
            escape(c.name),
            f"[{styles[row.coverage]}]{row.coverage.value}[/]",
            ", ".join(r.value for r in c.asi),
            "\n".join(f"{n.value} {n.label}" for n in c.nhi) or "-",
            ", ".join(f.value for f in c.ai_rmf),
            ", ".join(f.value for f in c.csf),
            "\n".join(f"{m.value} {m.label}" for m in c.maestro),
            str(e.decisions),
            str(e.denials),
            str(e.approvals),
            str(e.breakglass_uses),
            escape("\n".join(f"{name}: {n}" for name, n in e.facts) or "-"),
        )
    print_rich_table(console, table)
    if report.gaps:
        console.print("[bold]not covered, from what the log shows:[/]")
        for gap in report.gaps:
            console.print(f"  [yellow]•[/] {escape(gap.message)}")
    else:
        console.print("[green]no gap shows in the log for this window[/]")
    nhi, layers = not_addressed()
    console.print(
        "outside tether's reach (no control addresses them): "
        + escape(
            ", ".join(
                [f"{n.value} {n.label}" for n in nhi]
                + [f"MAESTRO {m.value} {m.label}" for m in layers]
            )
        )
    )


# -- flips -------------------------------------------------------------------------------------


@app.command("flips")
def flips_command(
    ctx: typer.Context,
    data_dir: DataDirOption = None,
    file: FileOption = None,
    store_url: StoreUrl = None,
    since: SinceOption = None,
    until: UntilOption = None,
    as_json: JsonOption = False,
) -> None:
    """Calls whose verdict an observe-mode policy would have changed, by policy, agent, tool."""
    window = _window(since, until)
    console = _console()
    records, source = _load(ctx, data_dir, file, store_url)
    with _reading(source):
        report = flips(records, window)
    if as_json:
        _print_json(flips_json(report))
        return
    if _say_empty(console, len(records), report.records, source, window):
        return
    if not report.rows:
        console.print(
            f"no observe-mode policy would have changed any of the {report.decisions} "
            f"decision(s) {escape(window.describe())}"
        )
        return
    totals = Table(
        "policy",
        "calls",
        "would deny",
        "would ask",
        "would allow",
        "agents",
        "tools",
        title="observe-mode policies: calls whose verdict they would have changed",
    )
    for p in report.by_policy:
        totals.add_row(
            escape(p.policy_id),
            str(p.calls),
            str(p.would.get(Decision.DENY, 0)),
            str(p.would.get(Decision.APPROVAL_REQUIRED, 0)),
            str(p.would.get(Decision.ALLOW, 0)),
            str(p.agents),
            str(p.tools),
        )
    print_rich_table(console, totals)
    table = Table("policy", "would", "was", "agent", "tool", "calls", title="by agent and tool")
    for r in report.rows:
        table.add_row(
            escape(r.policy_id),
            r.would.value,
            r.was.value,
            escape(r.agent),
            escape(r.tool),
            str(r.calls),
        )
    print_rich_table(console, table)
    console.print(
        f"{report.flipped} of {report.decisions} decision(s) {escape(window.describe())} would "
        'have changed; enforce a policy by removing @mode("observe") or renaming its '
        "*.observe.cedar file to *.cedar"
    )
