"""Structured logs (structlog): one JSON object per line, or a console rendering for people.

Never pass a token, key or argument value here. As a second line of defence, a field whose name
says it holds a secret (``token``, ``grant``, ``svid``, ``authorization``, ``password``,
``*_token``, ``*_secret``...) is written as ``"[redacted]"`` whatever its value.

Log lines carry the context bound with ``structlog.contextvars``: during an authorize request that
is the agent, the tool and action, and, once the decision is recorded, its decision id and task
id (see :mod:`tether.observability.services`), plus the trace id when traces are exported.

A server logs with ``queued=True``: a line is rendered where it is logged, but written to stderr
by a thread of its own (:class:`_QueuedStderr`, the standard library's ``QueueHandler`` /
``QueueListener`` arrangement for one stream), so a slow or blocked stderr never holds up a
request. What is queued is written before the process exits.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import orjson
import structlog

LogFormat = Literal["auto", "json", "console"]

REDACTED = "[redacted]"
_SECRET_NAMES = frozenset(
    {
        "authorization",
        "credential",
        "grant",
        "grant_token",
        "password",
        "secret",
        "store_url",
        "database_url",
        "svid",
        "token",
    }
)
_SECRET_SUFFIXES = ("_token", "_secret", "_password", "_credential", "_svid")


class _Stderr:
    """Whatever ``sys.stderr`` is at write time; a log line never raises into tether's work."""

    def write(self, text: str) -> int:
        try:
            return sys.stderr.write(text)
        except (ValueError, OSError):
            return 0

    def flush(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            sys.stderr.flush()


class _QueuedStderr:
    """A stream whose writes are queued and written by a writer thread (started on first use)
    to the stream that was ``sys.stderr`` when each line was logged, so a line never lands in a
    stream swapped in later (a test's capture, a redirect); ``flush`` is a no-op for the logger.

    The thread writes what is queued every ``interval`` seconds, in one write per stream, and
    at once when asked to :meth:`drain`. Logging a line is a put on a queue nobody waits on:
    a thread woken for each line, and a write and flush per line, cost a decision logged at
    ``info`` more CPU than the decision itself (the wake-up and the interpreter lock passed
    back and forth between the writer and the event loop)."""

    def __init__(self, interval: float = 0.05) -> None:
        self._queue: queue.SimpleQueue[tuple[TextIO, str] | threading.Event] = queue.SimpleQueue()
        self._interval = interval
        self._now = threading.Event()  # set by drain: write without waiting for the tick
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._write_forever, name="tether-log-writer", daemon=True
                    )
                    self._thread.start()
                    atexit.register(self.drain)
        self._queue.put((sys.stderr, text))
        return len(text)

    def flush(self) -> None:
        pass

    def _write_forever(self) -> None:
        while True:
            self._now.wait(self._interval)
            self._now.clear()
            self._write_queued()

    def _write_queued(self) -> None:
        """Write every line queued so far, in order, one write and one flush per stream run;
        then tell each drain waiting among them that its lines are written."""
        lines: list[str] = []
        stream: TextIO | None = None
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, threading.Event):
                _write(stream, lines)
                stream, lines = None, []
                item.set()
                continue
            if item[0] is not stream:
                _write(stream, lines)
                stream, lines = item[0], []
            lines.append(item[1])
        _write(stream, lines)

    def drain(self, timeout: float = 5.0) -> None:
        """Wait (at most ``timeout`` seconds) until every line queued so far is written."""
        if self._thread is None:
            return
        written = threading.Event()
        self._queue.put(written)
        self._now.set()
        written.wait(timeout)


def _write(stream: TextIO | None, lines: list[str]) -> None:
    """Write ``lines`` to ``stream`` and flush it; a closed or broken stream loses them."""
    if stream is None or not lines:
        return
    with contextlib.suppress(ValueError, OSError):
        stream.write("".join(lines))
        stream.flush()


_queued_stderr: _QueuedStderr | None = None
# The level configure_logging last set (structlog's default, before it is called: everything).
_threshold = logging.NOTSET


def _queued() -> _QueuedStderr:
    global _queued_stderr
    if _queued_stderr is None:
        _queued_stderr = _QueuedStderr()
    return _queued_stderr


def flush_logs() -> None:
    """Write every queued log line now (a server's shutdown: a signal may end the process
    before ``atexit`` runs)."""
    if _queued_stderr is not None:
        _queued_stderr.drain()


def wants_json(log_format: LogFormat, stream: TextIO | None = None) -> bool:
    """``auto`` means JSON unless ``stream`` (stderr by default) is a terminal: people read a
    terminal, log collectors read everything else."""
    if log_format == "auto":
        target = sys.stderr if stream is None else stream
        try:
            return not target.isatty()
        except (AttributeError, ValueError):
            return True
    return log_format == "json"


def _names_a_secret(key: str) -> bool:
    name = key.lower()
    return name in _SECRET_NAMES or name.endswith(_SECRET_SUFFIXES)


#: Field names already judged (a log line names the same few fields every time); bounded.
_judged: dict[str, bool] = {}
_JUDGED_NAMES = 4096


def redact_secrets(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Blank every field named as a secret (a processor; see the module docstring)."""
    for key in event:
        secret = _judged.get(key)
        if secret is None:
            secret = _names_a_secret(key)
            if len(_judged) < _JUDGED_NAMES:
                _judged[key] = secret
        if secret:
            event[key] = REDACTED
    return event


# The second a line was logged in, as ISO 8601, for the lines of that same second.
_second: tuple[int, str] = (0, "")


def _add_timestamp(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """``timestamp``: UTC, ISO 8601 with microseconds and ``Z``, as structlog's
    ``TimeStamper(fmt="iso", utc=True)`` writes it, with the date formatted once a second."""
    global _second
    now = time.time()
    whole = int(now)
    second, text = _second
    if whole != second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second = (whole, text)
    event["timestamp"] = f"{text}.{int((now - whole) * 1_000_000):06d}Z"
    return event


def _fallback(value: object) -> str:
    return repr(value)


_encode_line = json.JSONEncoder(default=_fallback).encode


def _render_json(event: MutableMapping[str, Any], **_: Any) -> str:
    """The line's JSON object, written by orjson (0.25 µs for a decision's line here, the
    standard library 2.2 µs); what is not JSON is written as its ``repr``, or as orjson writes
    it (a datetime in ISO 8601, an enum as its value). What orjson refuses (a key that is not
    a string, an integer past 64 bits, a string holding a lone surrogate) is written by
    ``json.dumps`` as structlog's ``JSONRenderer`` calls it."""
    try:
        return orjson.dumps(event, default=_fallback).decode("utf-8")
    except orjson.JSONEncodeError:
        return _encode_line(event)


# The process's id, read once and again in a forked child (``getpid`` is a system call).
_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def _add_pid(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # Which worker wrote the line, when ``tether serve --workers N`` shares one stderr.
    event["pid"] = _pid
    return event


class _LineLogger:
    """What a bound logger writes its rendered line through: the line and its newline in one
    write to ``stream`` (structlog's ``PrintLogger`` takes a lock and calls ``print``, which
    writes the line and the newline apart and then flushes: two queued items per line)."""

    def __init__(self, stream: Any) -> None:
        self._write = stream.write

    def msg(self, message: str) -> None:
        self._write(message + "\n")

    log = debug = info = warn = warning = fatal = failure = err = error = critical = exception = msg


def configure_logging(
    level: str = "info", *, json: bool = True, capture_stdlib: bool = False, queued: bool = False
) -> None:
    """Log at ``level`` and above to stderr, as JSON lines or for a console.

    ``capture_stdlib`` renders the standard library's log records (uvicorn's, say) the same
    way, so a JSON log stays one JSON object per line. ``queued`` writes lines from a thread of
    their own, off the caller's path (servers).
    """
    global _threshold
    stream: Any = _queued() if queued else _Stderr()
    threshold = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    _threshold = threshold
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _add_timestamp,
        redact_secrets,
    ]
    if json:
        shared += [_add_pid, structlog.processors.format_exc_info]
    renderer: Any = (
        structlog.processors.JSONRenderer(_render_json) if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=lambda *_args: _LineLogger(stream),
        cache_logger_on_first_use=False,
    )
    if capture_stdlib:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
                processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            )
        )
        root = logging.getLogger()
        root.handlers = [handler]
        root.setLevel(threshold)


def enabled(level: int) -> bool:
    """Whether a line at ``level`` (``logging.INFO``...) is written: a hot path checks before it
    builds a line nobody reads."""
    return level >= _threshold


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
