"""Decision semantics as data: each YAML case is one test, run as `tether policy test` runs it.

Cases live in ``tests/policy/cases/`` (with inline policies, validated against the example
schema) and in ``examples/policies/tests/`` (the example policies themselves).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.policy.engine import CedarPolicyEngine
from tether.policy.testing import PolicyCase, engine_for, load_case_file, run_case

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "policies"
CASE_FILES = sorted((Path(__file__).parent / "cases").glob("*.yaml")) + sorted(
    (EXAMPLES / "tests").glob("*.yaml")
)

_engines: dict[Path, CedarPolicyEngine] = {}


def _collect() -> list[pytest.param]:  # type: ignore[valid-type]
    params = []
    for path in CASE_FILES:
        for case in load_case_file(path).cases:
            params.append(pytest.param(path, case, id=f"{path.stem}::{case.name}"))
    return params


def _engine(path: Path) -> CedarPolicyEngine:
    if path not in _engines:
        _engines[path] = engine_for(EXAMPLES, load_case_file(path))
    return _engines[path]


def test_there_are_cases() -> None:
    assert len(CASE_FILES) >= 4
    assert len(_collect()) >= 40


@pytest.mark.parametrize(("path", "case"), _collect())
def test_case(path: Path, case: PolicyCase) -> None:
    result = run_case(_engine(path), case)
    assert result.passed, result.describe()
