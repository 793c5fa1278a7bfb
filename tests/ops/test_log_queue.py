"""Servers write their log lines from a thread (:func:`tether.logs.configure_logging` with
``queued``): each line goes to the stream that was stderr when it was logged."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator

import pytest
import structlog

from tether.logs import configure_logging, flush_logs, get_logger


@pytest.fixture
def queued() -> Iterator[None]:
    configure_logging("info", json=True, queued=True)
    try:
        yield
    finally:
        flush_logs()
        structlog.reset_defaults()


def test_a_queued_line_goes_where_stderr_was_when_it_was_logged(
    queued: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    get_logger("tether.test").info("logged_while_first")
    monkeypatch.setattr(sys, "stderr", second)  # swapped before the writer got to the line
    get_logger("tether.test").info("logged_while_second")
    flush_logs()
    assert "logged_while_first" in first.getvalue()
    assert "logged_while_first" not in second.getvalue()
    assert "logged_while_second" in second.getvalue()


def test_a_closed_stream_loses_its_line_and_nothing_else(
    queued: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed, open_ = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", closed)
    get_logger("tether.test").info("to_a_stream_closed_before_it_is_written")
    closed.close()
    monkeypatch.setattr(sys, "stderr", open_)
    get_logger("tether.test").info("still_written")
    flush_logs()
    assert "still_written" in open_.getvalue()
