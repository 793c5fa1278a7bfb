"""Smoke test of ``bench/throughput.py``: its core runs end to end and counts right answers only.

Tiny numbers, the SQLite scenario and the floor (PostgreSQL is left to the benchmark itself), and
no timing threshold: the figures of a shared machine are the benchmark's to print, not a test's to
assert.
"""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
REQUESTS = 40
CONNECTIONS = 4


def load_throughput(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))  # its sibling modules, as when it runs as a script
    spec = importlib.util.spec_from_file_location("bench_throughput", BENCH / "throughput.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_sqlite_and_floor_rounds_count_only_right_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    throughput = load_throughput(monkeypatch)

    results = throughput.measure(
        ["floor", "sqlite"],
        rounds=2,
        seconds=None,
        requests=REQUESTS,
        warmup=0,
        concurrency=CONNECTIONS,
    )

    assert list(results.rounds) == ["floor", "sqlite"]
    # The floor answers {"status": "ok"}; tether answers a verdict, here {"decision": "allow", ...}.
    for name, expected in (("floor", "ok"), ("sqlite", "allow")):
        rounds = results.rounds[name]
        assert len(rounds) == 2
        for r in rounds:
            assert r.sent == r.answered == REQUESTS, (name, r)
            assert r.statuses == {"200": REQUESTS}, (name, r.statuses)
            assert r.answers == {expected: REQUESTS}, (name, r.answers)
            assert len(r.latencies_ms) == REQUESTS
            assert all(ms > 0 for ms in r.latencies_ms)
            assert r.errors == [] and r.problems() == []
            assert r.elapsed > 0 and r.rate > 0
    assert throughput.check(results) == []

    printed = io.StringIO()
    throughput.report(results, printed)
    text = printed.getvalue()
    assert "decisions/s" in text and "p50 ms" in text and "p99 ms" in text
    assert "target 1 replica >= 50% of the floor" in text
