"""``tether policy``: validate, test and format a policy directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tether.cli.common import console, fail, tether_errors
from tether.cli.exits import ExitCode
from tether.policy import CedarPolicyEngine, format_policy_text, run_policy_tests

app = typer.Typer(help="Validate, test and format Cedar policies.")

PolicyDir = Annotated[
    Path,
    typer.Argument(
        help="Policy directory: *.cedar, schema.cedarschema, catalog.yaml, tests/*.yaml.",
        exists=True,
        file_okay=False,
    ),
]


@app.command("validate")
def validate(policy_dir: PolicyDir) -> None:
    """Parse every policy and validate it against the schema; exit 1 naming what is wrong."""
    with tether_errors():
        engine = CedarPolicyEngine.load(policy_dir)
    snapshot = engine.snapshot
    observed = snapshot.observe_index.size
    console.print(
        f"[green]ok[/]: {len(snapshot.bundle.policies)} policies valid against the schema "
        f"(revision {engine.revision[:12]})"
        + (f"; {observed} in observe mode (audited, not enforced)" if observed else ""),
        highlight=False,
    )


@app.command("test")
def test(
    policy_dir: PolicyDir,
    cases: Annotated[
        Path | None,
        typer.Option("--cases", "-c", help="A case file or directory (default: DIR/tests)."),
    ] = None,
) -> None:
    """Run YAML policy test cases (request → expected decision); exit 1 on any failure."""
    with tether_errors():
        results = run_policy_tests(policy_dir, cases)
    if not results:
        fail(
            f"no test cases found under {cases or policy_dir / 'tests'}",
            "no_cases",
            ExitCode.CHECK_FAILED,
        )
    table = Table("file", "case", "expected", "actual", "result", title="policy tests")
    for result in results:
        table.add_row(
            result.file,
            result.name,
            result.expected.value,
            result.actual.value,
            "[green]pass[/]" if result.passed else f"[red]FAIL[/] {'; '.join(result.problems)}",
        )
    console.print(table)
    failed = [r for r in results if not r.passed]
    summary = f"{len(results) - len(failed)} passed, {len(failed)} failed"
    if failed:
        for result in failed:
            console.print(f"[red]FAIL[/] {result.describe()}", highlight=False)
        fail(summary, "policy_tests_failed", ExitCode.CHECK_FAILED)
    console.print(f"[green]{summary}[/]")


@app.command("fmt")
def fmt(
    policy_dir: PolicyDir,
    check: Annotated[
        bool, typer.Option("--check", help="Only report files that are not formatted; exit 1.")
    ] = False,
) -> None:
    """Format every *.cedar file with Cedar's formatter."""
    unformatted: list[str] = []
    with tether_errors():
        for path in sorted(policy_dir.glob("*.cedar")):
            text = path.read_text(encoding="utf-8")
            formatted = format_policy_text(text, name=path.name)
            if formatted != text:
                unformatted.append(path.name)
                if not check:
                    path.write_text(formatted, encoding="utf-8")
    if check and unformatted:
        fail(
            f"not formatted: {', '.join(unformatted)} (run tether policy fmt)",
            "unformatted",
            ExitCode.CHECK_FAILED,
        )
    verb = "would reformat" if check else "reformatted"
    console.print(f"{verb} {len(unformatted)} file(s)" if unformatted else "all files formatted")
