"""Smoke test of ``bench/mcp_gateway.py``: a few calls per path run end to end on this tree, with
the paths taking turns call by call and in blocks; a block that does not divide the warm-up is
refused by name. No figure is judged here: timing is a benchmark's job, not the suite's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "mcp_gateway.py"


@pytest.mark.slow
@pytest.mark.parametrize(("block", "said"), [("1", "call by call"), ("2", "in blocks of 2")])
def test_the_lean_paths_are_measured_end_to_end(block: str, said: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--lean-only",
            *("--calls", "4", "--warmup", "2"),
            "--block",
            block,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert said in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith("gateway, lean path")]
    assert len(rows) == 2, done.stdout  # the HTTP upstream's and the stdio one's


def test_a_block_that_does_not_divide_the_warm_up_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--block", "3", "--warmup", "10"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--block must be at least 1 and divide --warmup" in done.stderr
