"""``tether serve`` logs: one JSON object per line, each authorize request's line naming its
decision, task and agent, and never a token."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import structlog
from ops_support import READ_CRM, open_task, serve_process, svid_for

from tether.logs import REDACTED, configure_logging, get_logger, redact_secrets, wants_json


def test_serve_logs_json_lines_naming_the_decision_and_never_a_token(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    # No --log-format: stderr is a file, not a terminal, so the default is JSON.
    with serve_process(data_dir) as server:
        svid = svid_for(data_dir, "analyst")
        opened = open_task(server.base_url, svid)
        verdict = httpx.post(
            f"{server.base_url}/v1/authorize",
            json={"grant": opened["grant"], **READ_CRM},
            headers={"Authorization": f"Bearer {svid}"},
            timeout=30,
        ).json()
        # A request uvicorn itself refuses: its own log line must be JSON too.
        host, port = server.base_url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            raw.recv(1024)
        server.stop()
        lines = server.log_lines()

    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(isinstance(entry, dict) for entry in entries)
    (decided,) = [e for e in entries if e["event"] == "decision"]
    assert decided["decision_id"] == verdict["decision_id"]
    assert decided["task_id"] == opened["task_id"]
    assert decided["agent"] == "spiffe://tether.local/agent/analyst"
    assert decided["tool"] == "crm.query"
    assert decided["decision"] == "allow"
    assert any(e.get("logger") == "uvicorn.error" for e in entries)
    text = "\n".join(lines)
    assert svid not in text
    assert str(opened["grant"]) not in text


def test_auto_format_is_for_people_on_a_terminal() -> None:
    leader, follower = pty.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as terminal:
            assert wants_json("auto", terminal) is False
            assert wants_json("json", terminal) is True
    finally:
        os.close(leader)
        os.close(follower)


def test_fields_named_as_secrets_are_redacted() -> None:
    event = redact_secrets(
        None,
        "info",
        {"event": "x", "grant": "eyJhbGciOi", "api_token": "t0k3n", "svid": "eyJ", "tool": "crm"},
    )
    assert event == {
        "event": "x",
        "grant": REDACTED,
        "api_token": REDACTED,
        "svid": REDACTED,
        "tool": "crm",
    }


def test_a_secret_field_is_redacted_every_time_it_is_logged_whatever_its_case() -> None:
    # Field names are judged once and remembered: the second line must be judged the same.
    for _ in range(2):
        event = redact_secrets(None, "info", {"Authorization": "Bearer x", "DB_Password": "p"})
        assert event == {"Authorization": REDACTED, "DB_Password": REDACTED}


def test_a_json_line_carries_a_utc_timestamp_with_microseconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("info", json=True)
    try:
        before = datetime.now(UTC)
        get_logger("tether.test").info("stamped", tool="crm.query")
        after = datetime.now(UTC)
    finally:
        structlog.reset_defaults()
    entry = json.loads(stream.getvalue())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", entry["timestamp"])
    stamped = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))
    assert before - timedelta(microseconds=1) <= stamped <= after
    assert (entry["event"], entry["tool"], entry["level"]) == ("stamped", "crm.query", "info")


def test_every_json_line_is_one_json_object_whatever_its_fields_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Lines orjson writes, and lines it refuses (an integer past 64 bits, a lone surrogate, a
    # key that is not a string) written by the standard library instead: never a lost line.
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("info", json=True)
    odd = object()
    try:
        log = get_logger("tether.test")
        log.info("plain", tool="crm.query", count=3)
        log.info("odd", value=odd)
        log.info("huge", count=2**70)
        log.info("surrogate", text="\ud800")
        log.info("keys", mapping={1: "one"})
    finally:
        structlog.reset_defaults()
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["event"] for e in entries] == ["plain", "odd", "huge", "surrogate", "keys"]
    assert (entries[0]["tool"], entries[0]["count"]) == ("crm.query", 3)
    assert entries[1]["value"] == repr(odd)
    assert entries[2]["count"] == 2**70
    assert entries[3]["text"] == "\ud800"
    assert entries[4]["mapping"] == {"1": "one"}
