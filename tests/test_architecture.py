"""Dependencies point inward, and every error code is mapped at every edge."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from tether.api.errors import HTTP_STATUS
from tether.core.errors import CODE_BRANCH, ErrorCode, TetherError

SRC = Path(__file__).resolve().parent.parent / "src" / "tether"


def _imports(package: str) -> set[str]:
    names: set[str] = set()
    for path in (SRC / package).rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
    return names


def test_core_imports_only_the_standard_library() -> None:
    for name in _imports("core"):
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names or name.startswith("tether.core"), name


def test_service_imports_only_core_and_itself() -> None:
    for name in _imports("service"):
        top = name.split(".")[0]
        assert (
            top in sys.stdlib_module_names
            or name.startswith("tether.core")
            or name.startswith("tether.service")
        ), name


# That adapters never import an entry point is the "layers" import-linter contract in
# pyproject.toml; tests/test_import_contracts.py proves it breaks on such an import.


def test_every_error_code_has_a_branch_and_an_http_status() -> None:
    assert set(CODE_BRANCH) == set(ErrorCode)
    assert set(HTTP_STATUS) == set(ErrorCode)
    for code, branch in CODE_BRANCH.items():
        assert issubclass(branch, TetherError)
        status = HTTP_STATUS[code]
        assert 400 <= status < 600, code


# Every door decides a call through Authorizer.enforce (or its twin for an event loop,
# enforce_async: the same input check, the same steps), the one enforcement entry that checks
# the call's input once; none calls authorize() directly, so none can skip or re-do that check.
# The v1 API's authorize is served by api/hotpath.py (api/app.py declares it and answers through
# the same function). The MCP gateway decides through its decision point (mcp/pdp.py): in process
# through enforce, or remotely through tether serve's /v1/authorize (api/hotpath.py).
_DOORS = ("api/hotpath.py", "api/authzen.py", "mcp/gateway.py", "mcp/pdp.py", "proxy/app.py")
_ENTRY = {"enforce", "enforce_async"}


def _attribute_calls(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    } | {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "authorizer"
    }


def test_every_door_goes_through_the_one_enforcement_entry() -> None:
    for door in _DOORS:
        used = _attribute_calls(SRC / door)
        assert used & _ENTRY, door
        assert "authorize" not in used, f"{door} calls authorize() instead of enforce()"


def test_no_door_keeps_its_own_copy_of_the_argument_bounds() -> None:
    for door in _DOORS:
        source = (SRC / door).read_text()
        assert "max_args_depth" not in source, door
        assert "max_args_bytes" not in source, door
