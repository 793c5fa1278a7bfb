"""Tool and prompt descriptor pinning (OWASP ASI04, "rug-pull" tool poisoning).

A tool's descriptor is what a model reads to decide how to use it: its name, description and
input schema. The gateway pins ``sha256(canonical JSON of {name, description, inputSchema})``
for each upstream tool the first time it sees it (or takes the pin from a file the operator
supplies). A descriptor that later differs is *pending*: withheld from ``tools/list`` and refused
on ``tools/call`` until an operator approves it (``tether mcp pins approve <upstream.tool>``),
which makes the pending digest the pin.

Prompts are pinned the same way, on ``sha256(canonical JSON of {name, description, arguments})``
(each argument's name, description and whether it is required), under the key
``prompt:<upstream>.<prompt>`` (:func:`prompt_key`), so a prompt never shares a pin with a tool of
the same name: ``tether mcp pins approve prompt:crm.summarize`` approves a changed prompt.

The pins file (JSON, 0600, replaced atomically under an advisory lock so the gateway and the CLI
can both write it):

    {"version": 1,
     "tools": {"crm.query": {"sha256": "…", "pinned_at": "…",
                             "pending": {"sha256": "…", "seen_at": "…",
                                         "descriptor": {"name", "description", "inputSchema"}}}}}
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from tether.core.audit import canonical_json
from tether.core.errors import ConfigurationError, ErrorCode, NotFound
from tether.core.scope import JSONValue
from tether.datadir import make_private_dir


def descriptor(name: str, description: str | None, input_schema: Mapping[str, Any]) -> JSONValue:
    """The part of a tool's definition that is pinned, in its wire spelling."""
    schema: JSONValue = json.loads(json.dumps(input_schema))
    return {"name": name, "description": description, "inputSchema": schema}


#: The pins file key of a prompt: ``prompt:<upstream>.<prompt>``.
PROMPT_PREFIX = "prompt:"


def prompt_key(exposed: str) -> str:
    return PROMPT_PREFIX + exposed


def prompt_descriptor(
    name: str, description: str | None, arguments: list[Mapping[str, Any]] | None
) -> JSONValue:
    """The part of a prompt's definition that is pinned, in its wire spelling."""
    pinned: list[JSONValue] = [
        {
            "name": argument.get("name"),
            "description": argument.get("description"),
            "required": argument.get("required"),
        }
        for argument in arguments or []
    ]
    return {"name": name, "description": description, "arguments": pinned}


def digest(value: JSONValue) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


class PinStatus(StrEnum):
    MATCH = "match"  # the descriptor is the pinned one
    PINNED = "pinned"  # first sight: pinned now
    CHANGED = "changed"  # differs from the pin: withheld until approved


@dataclass(frozen=True, slots=True)
class PinCheck:
    status: PinStatus
    pinned: str
    seen: str
    #: True the first time this particular change is seen (audit it once, not per listing).
    new_change: bool = False


@dataclass(frozen=True, slots=True)
class PinEntry:
    tool: str
    sha256: str
    pinned_at: str
    pending_sha256: str | None
    pending_seen_at: str | None
    pending_description: str | None


class PinStore:
    """The pins file, re-read whenever it changes on disk (the CLI approves out of process)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self._stamp: tuple[int, int] | None = None
        self._tools: dict[str, dict[str, Any]] = {}

    @property
    def path(self) -> Path:
        return self._path

    # -- file handling -------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        make_private_dir(self._path.parent)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _refresh(self) -> None:
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            self._stamp, self._tools = None, {}
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            raw = json.loads(self._path.read_bytes())
            tools = raw["tools"]
            if raw.get("version") != 1 or not isinstance(tools, dict):
                raise ValueError
            for entry in tools.values():
                if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
                    raise ValueError
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigurationError(
                f"{self._path} is not a tether pins file; fix it or move it away to re-pin"
            ) from None
        self._stamp, self._tools = stamp, tools

    def _save(self) -> None:
        body = json.dumps({"version": 1, "tools": dict(sorted(self._tools.items()))}, indent=2)
        tmp = self._path.with_name(self._path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body + "\n")
        os.replace(tmp, self._path)
        stat = self._path.stat()
        self._stamp = (stat.st_mtime_ns, stat.st_size)

    # -- the gateway's side --------------------------------------------------------------------

    def status(self, tool: str, seen: str) -> PinStatus | None:
        """Whether ``seen`` is the pinned digest of ``tool`` (``None``: never pinned)."""
        self._refresh()
        entry = self._tools.get(tool)
        if entry is None:
            return None
        return PinStatus.MATCH if entry["sha256"] == seen else PinStatus.CHANGED

    def check(self, tool: str, described: JSONValue, now: datetime) -> PinCheck:
        """Compare a descriptor with its pin, pinning on first sight and recording a change."""
        seen = digest(described)
        current = self.status(tool, seen)
        if current is PinStatus.MATCH:
            return PinCheck(PinStatus.MATCH, seen, seen)
        with self._locked():
            self._refresh()
            entry = self._tools.get(tool)
            if entry is None:
                self._tools[tool] = {"sha256": seen, "pinned_at": now.isoformat()}
                self._save()
                return PinCheck(PinStatus.PINNED, seen, seen)
            if entry["sha256"] == seen:
                return PinCheck(PinStatus.MATCH, seen, seen)
            pending = entry.get("pending")
            new_change = not isinstance(pending, dict) or pending.get("sha256") != seen
            if new_change:
                entry["pending"] = {
                    "sha256": seen,
                    "seen_at": now.isoformat(),
                    "descriptor": described,
                }
                self._save()
            return PinCheck(PinStatus.CHANGED, str(entry["sha256"]), seen, new_change)

    # -- the operator's side -------------------------------------------------------------------

    def entries(self) -> list[PinEntry]:
        self._refresh()
        out = []
        for tool, entry in sorted(self._tools.items()):
            pending = entry.get("pending") if isinstance(entry.get("pending"), dict) else None
            described = pending.get("descriptor") if pending else None
            out.append(
                PinEntry(
                    tool=tool,
                    sha256=str(entry["sha256"]),
                    pinned_at=str(entry.get("pinned_at", "")),
                    pending_sha256=str(pending["sha256"]) if pending else None,
                    pending_seen_at=str(pending.get("seen_at", "")) if pending else None,
                    pending_description=(
                        str(described.get("description"))
                        if isinstance(described, dict) and described.get("description")
                        else None
                    ),
                )
            )
        return out

    def approve(self, tool: str, now: datetime) -> tuple[str, str]:
        """Make the pending descriptor of ``tool`` its pin; returns (old digest, new digest)."""
        with self._locked():
            self._refresh()
            entry = self._tools.get(tool)
            if entry is None:
                raise NotFound(
                    f"no pinned tool {tool!r} in {self._path}; `tether mcp pins list` shows them",
                    code=ErrorCode.NOT_FOUND,
                )
            pending = entry.get("pending")
            if not isinstance(pending, dict) or not isinstance(pending.get("sha256"), str):
                raise NotFound(
                    f"{tool!r} has no changed descriptor waiting for approval",
                    code=ErrorCode.NOT_FOUND,
                )
            old = str(entry["sha256"])
            self._tools[tool] = {"sha256": pending["sha256"], "pinned_at": now.isoformat()}
            self._save()
            return old, str(pending["sha256"])
