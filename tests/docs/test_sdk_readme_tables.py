"""The SDK README's tables say what the SDK does: its error table is ``ERROR_CODES`` with the
server's statuses, and its client table names every public method of ``TetherClient``."""

from __future__ import annotations

import inspect
import re

from doc_session import ROOT

import tether_sdk
from tether.api.authzen import AUTHZEN_STATUS
from tether.api.errors import HTTP_STATUS
from tether_sdk import ERROR_CODES, AsyncTetherClient, TetherClient

README = (ROOT / "sdk" / "README.md").read_text(encoding="utf-8")


def _rows(header: str) -> list[list[str]]:
    """The rows of the table whose header line starts with ``header``."""
    lines = README.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_the_error_table_is_the_sdks_error_mapping_with_the_servers_statuses() -> None:
    statuses = {code.value: status for code, status in HTTP_STATUS.items()}
    statuses |= {code.value: status for code, status in AUTHZEN_STATUS.items()}
    documented: dict[str, str] = {}
    for exception, http, codes in _rows("| exception | HTTP | codes |"):
        branch = exception.strip("`")
        server_codes = re.findall(r"`([a-z_]+)`", codes.split(";")[0])
        for code in server_codes:
            assert code not in documented, f"{code} is documented twice"
            documented[code] = branch
        said = {int(s) for s in re.findall(r"\d{3}", http)}
        assert {statuses[c] for c in server_codes} == said, exception
    assert documented == {code.value: branch.__name__ for code, branch in ERROR_CODES.items()}


def test_the_client_table_names_every_route_method() -> None:
    rows = _rows("| method | route | answer |")
    documented = {name for row in rows for name in re.findall(r"`(\w+)\(", row[0])}
    for client in (TetherClient, AsyncTetherClient):
        public = {
            name
            for name, member in inspect.getmembers(client, inspect.isfunction)
            if not name.startswith("_")
        }
        helpers = {"close", "aclose", "task", "wait_for_approval"}
        assert public - helpers == documented, client.__name__
    assert {"Lease", "LeaseIntrospection", "BreakGlass"} <= set(tether_sdk.__all__)
