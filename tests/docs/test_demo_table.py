"""The README's demo table is what ``tether demo --markdown`` prints (run
``tests/docs/demo_table.py`` to update it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from demo_table import README, demo_markdown, readme_table


@pytest.mark.slow
def test_the_readme_table_is_the_demos_output(tmp_path: Path) -> None:
    done = demo_markdown(tmp_path / "demo")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("| # | agent | call | verdict | why |\n")
    assert "demo complete" in done.stderr  # the narrative goes to stderr, the table alone out
    assert readme_table(README.read_text(encoding="utf-8")) == done.stdout, (
        "README.md's demo table differs from `tether demo --markdown`: run "
        "`.venv/bin/python tests/docs/demo_table.py` and review the diff"
    )


@pytest.mark.slow
def test_the_markdown_rows_are_the_json_calls(tmp_path: Path) -> None:
    """One row a call, in order, with the verdict the demo's JSON gives."""
    as_json = subprocess.run(
        [sys.executable, "-m", "tether", "demo", "--json", "-d", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert as_json.returncode == 0, as_json.stderr
    calls = json.loads(as_json.stdout)["calls"]
    rows = readme_table(README.read_text(encoding="utf-8")).splitlines()[2:]
    assert len(rows) == len(calls)
    for row, call in zip(rows, calls, strict=True):
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert (cells[0], cells[3]) == (str(call["number"]), call["decision"]), row


def test_json_and_markdown_together_are_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tether", "demo", "--json", "--markdown", "-d", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "not both" in done.stderr
