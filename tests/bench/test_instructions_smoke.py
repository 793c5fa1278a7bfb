"""Smoke test of ``bench/instructions.py``'s drivers: what valgrind counts must run end to end on
this tree (serve's hot path answering every authorize with an allow, the gateway answering every
call with its upstream's echo; each driver asserts it). No count is taken here: valgrind is a
benchmark's tool, not the suite's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "instructions.py"


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "calls"), [("authorize", 32), ("gateway", 3)])
def test_each_driver_runs_its_calls_end_to_end(mode: str, calls: int) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--drive", mode, str(calls)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_mode_it_does_not_know_is_refused_with_the_ones_it_does() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--modes", "authorise"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "unknown mode 'authorise'" in done.stderr
    assert "authorize, gateway" in done.stderr
