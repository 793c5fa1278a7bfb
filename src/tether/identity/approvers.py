"""Approver credentials for the embedded default: static, named approver tokens.

``tether approvers add NAME`` makes a random token (``tap_…``), prints it once, and keeps only
its SHA-256 in ``<data>/approvers.json``. A presented token is compared in constant time against
every stored digest. Approver ids are ``approver:NAME``: a distinct namespace from workloads, so
no SVID can ever be an approver.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from pathlib import Path

from tether.core.errors import ConfigurationError, ErrorCode, InvalidRequest, Unauthenticated
from tether.service.approvals import Approver

TOKEN_PREFIX = "tap_"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class StaticApprovers:
    """Named approvers whose tokens are stored only as digests."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._digests = self._load()

    def _current_stamp(self) -> tuple[int, int] | None:
        try:
            info = self._path.stat()
        except FileNotFoundError:
            return None
        return (info.st_mtime_ns, info.st_size)

    def _refresh(self) -> None:
        """Pick up approvers added or removed by the CLI while the server runs."""
        if self._current_stamp() != self._stamp:
            self._digests = self._load()

    def _load(self) -> dict[str, str]:
        self._stamp = self._current_stamp()
        if self._stamp is None:
            return {}
        try:
            raw = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ConfigurationError(f"{self._path} cannot be read: {error}") from None
        if not isinstance(raw, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
        ):
            raise ConfigurationError(f"{self._path} must map approver names to token digests")
        return dict(raw)

    @property
    def names(self) -> list[str]:
        return sorted(self._digests)

    def add(self, name: str) -> str:
        """Create (or replace) approver ``name``; returns the token, which is not kept."""
        if not _NAME.match(name):
            raise InvalidRequest(
                "approver names are lowercase letters, digits, '.', '_', '-' (1-64 characters)",
                code=ErrorCode.INVALID_FIELD,
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self._digests[name] = _digest(token)
        self._save()
        return token

    def remove(self, name: str) -> bool:
        removed = self._digests.pop(name, None) is not None
        if removed:
            self._save()
        return removed

    def _save(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self._digests, handle, sort_keys=True)
        os.replace(tmp, self._path)
        self._stamp = self._current_stamp()

    def verify(self, token: str) -> Approver:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 256:
            raise Unauthenticated("not an approver token", code=ErrorCode.INVALID_TOKEN)
        self._refresh()
        presented = _digest(token)
        found: str | None = None
        for name, digest in self._digests.items():
            # Compare against every entry, so timing says nothing about which one matched.
            if hmac.compare_digest(presented, digest):
                found = name
        if found is None:
            raise Unauthenticated("unknown approver token", code=ErrorCode.INVALID_TOKEN)
        return Approver(id=f"approver:{found}", name=found)
