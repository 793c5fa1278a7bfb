"""The import-linter contracts in pyproject.toml bite: one wrong import breaks the rule it names.

Each case copies ``src/tether`` to a temporary directory, adds one import that goes against the
layering, and runs ``lint-imports`` on the copy: the copy is first on ``PYTHONPATH`` and the
configuration is the project's own ``pyproject.toml``, copied next to it. The untouched copy
must pass, so each failure is caused by the one import added.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "tether"
PYPROJECT = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
ADAPTERS = ("policy", "identity", "credentials", "store", "cache", "notify", "reports")


def _contracts() -> dict[str, dict[str, Any]]:
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    return {contract["id"]: contract for contract in config["contracts"]}


def _copy_tree(tmp_path: Path) -> Path:
    shutil.copytree(SRC, tmp_path / "src" / "tether", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PYPROJECT, tmp_path / "pyproject.toml")
    return tmp_path / "src" / "tether"


def _env(tmp_path: Path) -> dict[str, str]:
    # COLUMNS keeps long contract names on one line of the report.
    return {**os.environ, "PYTHONPATH": str(tmp_path / "src"), "COLUMNS": "1000"}


def _lint(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(tmp_path / "pyproject.toml")],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _verdicts(output: str) -> dict[str, str]:
    """Map each contract's name to KEPT or BROKEN, read from the report's summary lines."""
    verdicts: dict[str, str] = {}
    for contract in _contracts().values():
        name = str(contract["name"])
        for line in output.splitlines():
            if line.startswith(name + " "):
                verdicts[name] = line[len(name) :].split()[0]
    return verdicts


def test_lint_imports_analyses_the_copy_not_the_installed_package(tmp_path: Path) -> None:
    copy = _copy_tree(tmp_path)
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "import importlib.util; print(importlib.util.find_spec('tether').origin)",
        ],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(found.stdout.strip()) == copy / "__init__.py"


def test_the_unmodified_copy_keeps_every_contract(tmp_path: Path) -> None:
    _copy_tree(tmp_path)
    result = _lint(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    verdicts = _verdicts(result.stdout)
    assert verdicts == {str(c["name"]): "KEPT" for c in _contracts().values()}


@dataclass(frozen=True)
class WrongImport:
    package: str  # the package of the copy whose __init__ gets the import
    statement: str
    contract: str  # id of the contract that must break
    evidence: str  # what the report must say about it


WRONG_IMPORTS = [
    WrongImport("store", "import tether.credentials.secrets", "adapters-independent",
                "tether.store -> tether.credentials.secrets"),
    WrongImport("policy", "import tether.identity.keys", "adapters-independent",
                "tether.policy -> tether.identity.keys"),
    WrongImport("reports", "import tether.cli", "layers", "tether.reports -> tether.cli"),
    WrongImport("core", "import tether.service.ports", "layers", "tether.core -> tether.service.ports"),
    WrongImport("service", "import tether.store", "layers", "tether.service -> tether.store"),
    WrongImport("notify", "import tether.api", "layers", "tether.notify -> tether.api"),
    WrongImport("mcp", "import tether.proxy", "layers", "tether.mcp -> tether.proxy"),
    WrongImport("service", "import tether.logs", "layers", "tether.service -> tether.logs"),
    WrongImport("cache", "import tether.service.authorize", "adapters-see-ports",
                "tether.cache -> tether.service.authorize"),
    WrongImport("core", "import yaml", "core-service-stdlib", "tether.core -> yaml"),
    WrongImport("service", "import jwt", "core-service-stdlib", "tether.service -> jwt"),
    WrongImport("store", "import fastapi", "adapters-no-door-frameworks", "tether.store -> fastapi"),
]  # fmt: skip


@pytest.mark.parametrize("wrong", WRONG_IMPORTS, ids=lambda w: f"{w.package}: {w.statement}")
def test_a_wrong_import_breaks_the_contract_that_names_it(
    tmp_path: Path, wrong: WrongImport
) -> None:
    copy = _copy_tree(tmp_path)
    init = copy / wrong.package / "__init__.py"
    init.write_text(init.read_text() + f"\n{wrong.statement}  # the wrong import under test\n")
    result = _lint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    name = str(_contracts()[wrong.contract]["name"])
    assert _verdicts(result.stdout)[name] == "BROKEN", result.stdout
    assert wrong.evidence in result.stdout, result.stdout


def test_a_new_top_level_package_must_choose_its_layer(tmp_path: Path) -> None:
    copy = _copy_tree(tmp_path)
    (copy / "newpart").mkdir()
    (copy / "newpart" / "__init__.py").write_text('"""A part nobody placed in the layers."""\n')
    result = _lint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert _verdicts(result.stdout)[str(_contracts()["layers"]["name"])] == "BROKEN"
    assert "- tether.newpart" in result.stdout


def _third_party_imports() -> set[str]:
    names: set[str] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name != "tether"}


def test_core_and_service_are_denied_every_third_party_package_tether_imports() -> None:
    # The forbidden contract is a list; this keeps it complete, so it acts as "standard library only".
    forbidden = set(_contracts()["core-service-stdlib"]["forbidden_modules"])
    assert _third_party_imports() <= forbidden


def test_every_contract_names_the_same_adapters() -> None:
    contracts = _contracts()
    adapters = {f"tether.{name}" for name in ADAPTERS}
    layer = " : ".join(ADAPTERS)
    assert layer in contracts["layers"]["layers"]
    assert set(contracts["adapters-independent"]["modules"]) == adapters
    no_frameworks = contracts["adapters-no-door-frameworks"]["source_modules"]
    assert set(no_frameworks) == adapters
