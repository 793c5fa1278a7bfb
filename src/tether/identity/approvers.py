"""Approver credentials for the embedded default: static, named approver tokens.

``tether approvers add NAME`` makes a random token (``tap_…``), prints it once, and keeps only
its SHA-256 in ``<data>/approvers.json``. A presented token is compared in constant time against
every stored digest. Approver ids are ``approver:NAME``: a distinct namespace from workloads, so
no SVID can ever be an approver. Humans may instead sign in with an OIDC provider
(:class:`OidcApprovers`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from tether.core.errors import ConfigurationError, ErrorCode, InvalidRequest, Unauthenticated
from tether.datadir import make_private_dir
from tether.identity.oidc import OidcVerifier
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

    def add(self, name: str, *, rotate: bool = False) -> str:
        """Create approver ``name``, or with ``rotate`` replace the token of an existing one;
        returns the token, which is not kept.

        Adding a name that exists is refused: it would silently end that approver's token.
        Rotating a name that does not exist is refused too, so a typo never mints a new approver.
        """
        if not _NAME.match(name):
            raise InvalidRequest(
                "approver names are lowercase letters, digits, '.', '_', '-' (1-64 characters)",
                code=ErrorCode.INVALID_FIELD,
            )
        self._refresh()  # another command may have added or removed approvers meanwhile
        exists = name in self._digests
        if exists and not rotate:
            raise InvalidRequest(
                f"approver {name!r} already exists; to give it a new token (its current one "
                f"stops working) run: tether approvers add {name} --rotate",
                code=ErrorCode.INVALID_FIELD,
            )
        if rotate and not exists:
            raise InvalidRequest(
                f"there is no approver {name!r} to rotate; add it without --rotate",
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
        make_private_dir(self._path.parent)
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


class OidcApprovers:
    """Humans signed in with an OIDC provider: ID tokens for the ``tether-approver`` audience.

    The audience differs from the one workloads use, so no workload token can pass as an
    approver's even when both come from the same issuer. The approver id is
    ``oidc:<issuer>#<subject>``.
    """

    def __init__(self, verifier: OidcVerifier, clock: Callable[[], datetime]) -> None:
        self._verifier = verifier
        self._clock = clock

    def verify(self, token: str) -> Approver:
        identity = self._verifier.verify(token, self._clock())
        return Approver(id=f"oidc:{identity.id}", name=identity.name)


class CompositeApprovers:
    """Try static approver tokens first (``tap_…``), then each OIDC issuer."""

    def __init__(self, static: StaticApprovers, oidc: Sequence[OidcApprovers] = ()) -> None:
        self.static = static
        self._oidc = tuple(oidc)

    def verify(self, token: str) -> Approver:
        if token.startswith(TOKEN_PREFIX) or not self._oidc:
            return self.static.verify(token)
        for source in self._oidc:
            try:
                return source.verify(token)
            except Unauthenticated:
                continue
        raise Unauthenticated("not an approver token", code=ErrorCode.INVALID_TOKEN)

    # The registry operations stay on the static approvers (``tether approvers add``).
    def add(self, name: str, *, rotate: bool = False) -> str:
        return self.static.add(name, rotate=rotate)

    def remove(self, name: str) -> bool:
        return self.static.remove(name)

    @property
    def names(self) -> list[str]:
        return self.static.names
