"""The SDK's public surface, its independence from the server, and its tables kept equal to the
server's: error codes and branches, HTTP statuses, reason codes."""

from __future__ import annotations

import inspect
import subprocess
import sys
from datetime import UTC, datetime

import pytest

import tether_sdk
from tether.api.authzen import AUTHZEN_STATUS, AuthZenCode
from tether.api.errors import HTTP_STATUS
from tether.core.errors import CODE_BRANCH
from tether.core.errors import ErrorCode as ServerErrorCode
from tether.core.verdict import ReasonCode as ServerReasonCode
from tether_sdk import ERROR_CODES, ErrorCode, ReasonCode, Task, TetherClient, Verdict
from tether_sdk.errors import error_for


def test_the_sdk_and_its_adapters_import_without_the_server() -> None:
    program = """
import sys
sys.modules["tether"] = None  # any import of the server package now fails
import tether_sdk, tether_sdk.openai_agents, tether_sdk.langchain, tether_sdk.langgraph, tether_sdk.mcp
assert not [m for m in sys.modules if m == "tether" or m.startswith("tether.")
            if sys.modules[m] is not None], "tether was imported"
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_core_sdk_imports_no_framework() -> None:
    program = """
import sys
import tether_sdk
heavy = {"agents", "langchain", "langchain_core", "langgraph", "mcp", "tether"}
print(sorted(m for m in heavy if m in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


#: Every code the server answers, and its HTTP status: the error tree's and the AuthZEN door's.
SERVER_STATUS = {
    **{code.value: status for code, status in HTTP_STATUS.items()},
    **{code.value: status for code, status in AUTHZEN_STATUS.items()},
}


def test_every_server_error_code_is_mapped_to_the_same_branch() -> None:
    assert {c.value for c in ErrorCode} == {c.value for c in ServerErrorCode} | {
        c.value for c in AuthZenCode
    }
    assert set(SERVER_STATUS) == {c.value for c in ErrorCode}  # every code has its status
    assert set(ERROR_CODES) == set(ErrorCode)
    for code, branch in CODE_BRANCH.items():
        assert ERROR_CODES[ErrorCode(code.value)].__name__ == branch.__name__, code
    assert ERROR_CODES[ErrorCode.SUBJECT_MISMATCH] is tether_sdk.Forbidden


def test_every_code_raises_its_branch_with_the_server_status() -> None:
    for code, status in SERVER_STATUS.items():
        error = error_for(code, "m", status)
        assert type(error) is ERROR_CODES[ErrorCode(code)]
        assert (error.code, error.status, error.message) == (code, status, "m")
    for code, status in HTTP_STATUS.items():
        assert type(error_for(code.value, "m", status)).__name__ == CODE_BRANCH[code].__name__


def test_an_unknown_code_falls_back_to_its_http_status() -> None:
    assert type(error_for("brand_new", "m", 403)) is tether_sdk.Forbidden
    assert type(error_for("brand_new", "m", 502)) is tether_sdk.Unavailable
    assert type(error_for("brand_new", "m", 418)) is tether_sdk.TetherError


def test_reason_codes_match_the_server() -> None:
    assert {c.value for c in ReasonCode} == {c.value for c in ServerReasonCode}


def test_the_public_surface_is_explicit() -> None:
    exported = set(tether_sdk.__all__)
    public = {
        name
        for name, value in vars(tether_sdk).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == exported - {"__version__"}
    for name in tether_sdk.__all__:
        assert hasattr(tether_sdk, name), name


def test_secrets_never_show_in_a_repr() -> None:
    task = Task("tsk_1", "eyJ.grant.secret", datetime.now(UTC), (), (), "rev")
    assert "eyJ" not in repr(task)
    client = TetherClient("http://127.0.0.1:1", svid="eyJ.svid.secret")
    assert "eyJ" not in repr(client)
    client.close()


def test_scopes_must_be_a_list() -> None:
    with pytest.raises(TypeError, match="list of scopes"):
        tether_sdk.client.TetherClient("http://127.0.0.1:1", svid="x").open_task(
            {"workflow": "w", "purpose": "p", "on_behalf_of": "u"},
            {"tool": "crm.query", "actions": ["read"]},  # type: ignore[arg-type]
        )


def test_a_scope_names_its_actions_as_a_tuple() -> None:
    with pytest.raises(TypeError, match="tuples"):
        tether_sdk.Scope("crm.query", "read")  # type: ignore[arg-type]


def test_a_verdict_carries_its_credential_without_showing_it() -> None:
    verdict = Verdict.from_json(
        {
            "decision": "allow",
            "decision_id": "dec_x",
            "decided_at": "2026-11-28T12:00:00+00:00",
            "credential": {
                "lease_id": "lse_x",
                "issuer": "payments-api",
                "kind": "scoped_jwt",
                "expires_at": "2026-11-28T12:02:00+00:00",
                "value": "eyJ.secret.sig",
                "audience": "https://payments.example",
            },
        }
    )
    assert verdict.credential is not None and verdict.credential.value == "eyJ.secret.sig"
    assert verdict.credential.audience == "https://payments.example"
    assert "secret" not in repr(verdict) and "secret" not in repr(verdict.credential)
    plain = {"decision": "allow", "decision_id": "dec_y", "decided_at": "2026-11-28T12:00:00Z"}
    assert Verdict.from_json(plain).credential is None


def test_the_adapters_call_mapping_is_importable_from_the_package() -> None:
    # sdk/README.md maps framework tools with ``ToolCall``, imported from ``tether_sdk``.
    from tether_sdk import ToolCall

    mapped = ToolCall(action="read", tool="crm.query", dataset="crm")
    assert (mapped.tool, mapped.action, mapped.dataset) == ("crm.query", "read", "crm")
