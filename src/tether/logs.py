"""Structured logs (structlog): one JSON object per line, or a console rendering for people.

Never pass a token, key or argument value here. As a second line of defence, a field whose name
says it holds a secret (``token``, ``grant``, ``svid``, ``authorization``, ``password``,
``*_token``, ``*_secret``...) is written as ``"[redacted]"`` whatever its value.

Log lines carry the context bound with ``structlog.contextvars``: during an authorize request that
is the agent, the tool and action, and, once the decision is recorded, its decision id and task
id (see :mod:`tether.observability.services`), plus the trace id when traces are exported.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

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


def redact_secrets(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Blank every field named as a secret (a processor; see the module docstring)."""
    for key in event:
        name = key.lower()
        if name in _SECRET_NAMES or name.endswith(_SECRET_SUFFIXES):
            event[key] = REDACTED
    return event


def _add_pid(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # Which worker wrote the line, when ``tether serve --workers N`` shares one stderr.
    event["pid"] = os.getpid()
    return event


def configure_logging(
    level: str = "info", *, json: bool = True, capture_stdlib: bool = False
) -> None:
    """Log at ``level`` and above to stderr, as JSON lines or for a console.

    ``capture_stdlib`` renders the standard library's log records (uvicorn's, say) the same
    way, so a JSON log stays one JSON object per line.
    """
    threshold = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    if json:
        shared += [_add_pid, structlog.processors.format_exc_info]
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    if capture_stdlib:
        handler = logging.StreamHandler(_Stderr())
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
                processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            )
        )
        root = logging.getLogger()
        root.handlers = [handler]
        root.setLevel(threshold)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
