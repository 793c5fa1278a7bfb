"""Witnesses of the audit log: where each signed checkpoint is also kept, outside the database.

``--audit-witness`` names one: a file path (each checkpoint appended as one JSON line, the file
created 0600) or an ``http(s)://`` URL (each checkpoint POSTed as JSON; any answer but 2xx is a
failure). A failure raises; the checkpointer logs it and sends the newest checkpoint again on its
next tick (:mod:`tether.service.checkpoints`), so a witness that was down catches up.

The payload is the checkpoint itself (public: sizes, hashes, a time, a signature), never a record.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tether.core.checkpoint import Checkpoint
from tether.core.scope import JSONValue


def payload(checkpoint: Checkpoint) -> dict[str, JSONValue]:
    return {"type": "tether.audit.checkpoint", "checkpoint": checkpoint.to_json()}


class FileWitness:
    """Appends each checkpoint to a file, one JSON object per line."""

    def __init__(self, path: Path) -> None:
        self._path = path

    @property
    def name(self) -> str:
        return str(self._path)

    def send(self, checkpoint: Checkpoint) -> None:
        line = json.dumps(payload(checkpoint), separators=(",", ":")) + "\n"
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())


class WebhookWitness:
    """POSTs each checkpoint as JSON; a non-2xx answer or a transport error raises."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("a witness URL is http(s)://host/...")
        self._url = url
        # Logs name the endpoint without what may be secret (userinfo, query).
        self._name = f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"
        self._name += parts.path
        self._timeout = timeout

    @property
    def name(self) -> str:
        return self._name

    def send(self, checkpoint: Checkpoint) -> None:
        response = httpx.post(self._url, json=payload(checkpoint), timeout=self._timeout)
        response.raise_for_status()


MAX_WITNESS_LINE = 64 * 1024


def read_witness_file(path: Path) -> list[Checkpoint]:
    """The checkpoints a :class:`FileWitness` kept (for ``tether audit verify --witness``);
    ``ValueError`` naming the first line that is not one."""
    found: list[Checkpoint] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                if len(raw) > MAX_WITNESS_LINE:
                    raise ValueError("longer than 64 KiB")
                data = json.loads(raw)
                if not isinstance(data, dict) or data.get("type") != "tether.audit.checkpoint":
                    raise ValueError("not a tether.audit.checkpoint object")
                found.append(Checkpoint.from_json(data.get("checkpoint")))
            except ValueError as error:
                raise ValueError(f"line {number} of {path}: {error}") from None
    return found


def witness_for(target: str) -> FileWitness | WebhookWitness:
    """The witness ``target`` names: a URL when it starts with http(s)://, else a file path."""
    if target.startswith(("http://", "https://")):
        return WebhookWitness(target)
    return FileWitness(Path(target))


__all__ = ["FileWitness", "WebhookWitness", "payload", "read_witness_file", "witness_for"]
