"""Smoke test of ``bench/effect_observation.py``: a run end to end on this tree, on SQLite, that
records every effect (and every observation) it times and prints its table. Tiny numbers and no
timing threshold: the figures are the benchmark's to print, not a test's to assert."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "effect_observation.py"


@pytest.mark.slow
def test_a_tiny_run_prints_each_kind_of_report() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--calls", "3", "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = [" ".join(line.split()[:3]) for line in done.stdout.splitlines()[2:]]
    assert rows == [
        "with observation cpu",
        "with observation wall",
        "effect alone cpu",
        "effect alone wall",
    ]
