"""Servers write their log lines from a thread (:func:`tether.logs.configure_logging` with
``queued``): each line goes to the stream that was stderr when it was logged."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator

import pytest
import structlog

from tether.logs import _QueuedStderr, configure_logging, flush_logs, get_logger


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


class _CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_lines_are_written_together_at_the_tick_not_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A thread woken per line cost each decision logged at info more CPU than the decision:
    # lines wait for the writer's tick (here never) or a drain, and go out in one write.
    stream = _CountingStream()
    monkeypatch.setattr(sys, "stderr", stream)
    queued = _QueuedStderr(interval=3600)
    for n in range(5):
        queued.write(f"line {n}\n")
    assert stream.getvalue() == ""  # the writer thread was not woken by a line
    queued.drain()
    assert stream.getvalue() == "".join(f"line {n}\n" for n in range(5))
    assert stream.writes == 1


def test_a_drain_writes_lines_for_several_streams_in_the_order_logged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = _CountingStream(), _CountingStream()
    queued = _QueuedStderr(interval=3600)
    for stream, text in ((first, "a\n"), (second, "b\n"), (first, "c\n")):
        monkeypatch.setattr(sys, "stderr", stream)
        queued.write(text)
    queued.drain()
    assert (first.getvalue(), second.getvalue()) == ("a\nc\n", "b\n")
