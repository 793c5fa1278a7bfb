"""What the lease and break-glass routes answer, as frozen values.

A ``Lease`` is one just-in-time credential tether minted for an allowed call (the credential
itself came once, in the verdict, and is not here); ``LeaseIntrospection`` is what a downstream
API learns when it asks whether a lease token is live; ``BreakGlass`` is an emergency elevation
request on a task and where it stands.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


def _when(raw: Any) -> datetime | None:
    return datetime.fromisoformat(str(raw)) if raw else None


@dataclass(frozen=True, slots=True)
class Lease:
    """A just-in-time credential's lease: ``state`` is ``active``, ``expired`` or ``revoked``."""

    lease_id: str
    task_id: str
    issuer: str
    kind: str
    scope: Mapping[str, Any]
    issued_at: datetime
    expires_at: datetime
    state: str
    ended_at: datetime | None

    @staticmethod
    def from_json(raw: Mapping[str, Any]) -> Lease:
        return Lease(
            lease_id=str(raw["lease_id"]),
            task_id=str(raw["task_id"]),
            issuer=str(raw["issuer"]),
            kind=str(raw["kind"]),
            scope=dict(raw.get("scope") or {}),
            issued_at=datetime.fromisoformat(str(raw["issued_at"])),
            expires_at=datetime.fromisoformat(str(raw["expires_at"])),
            state=str(raw["state"]),
            ended_at=_when(raw.get("ended_at")),
        )


@dataclass(frozen=True, slots=True)
class LeaseIntrospection:
    """Whether a lease token is live for an audience (RFC 7662 style); the rest only if so."""

    active: bool
    lease_id: str | None = None
    sub: str | None = None
    scope: str | None = None
    exp: int | None = None

    @staticmethod
    def from_json(raw: Mapping[str, Any]) -> LeaseIntrospection:
        exp = raw.get("exp")
        return LeaseIntrospection(
            active=bool(raw.get("active")),
            lease_id=raw.get("lease_id"),
            sub=raw.get("sub"),
            scope=raw.get("scope"),
            exp=int(exp) if exp is not None else None,
        )


@dataclass(frozen=True, slots=True)
class BreakGlass:
    """An emergency elevation request: ``state`` is ``pending``, ``active``, ``denied``,
    ``expired`` or ``ended``; it needs ``required`` approvals from people other than the one who
    asked, and a post-incident review afterwards (``needs_review``)."""

    breakglass_id: str
    task_id: str
    agent: str
    scopes: tuple[Mapping[str, Any], ...]
    reason: str
    requested_by: str
    state: str
    required: int
    approvals: int
    decide_by: datetime | None
    active_until: datetime | None
    needs_review: bool

    @staticmethod
    def from_json(raw: Mapping[str, Any]) -> BreakGlass:
        return BreakGlass(
            breakglass_id=str(raw["breakglass_id"]),
            task_id=str(raw["task_id"]),
            agent=str(raw["agent"]),
            scopes=tuple(dict(s) for s in raw.get("scopes") or ()),
            reason=str(raw.get("reason", "")),
            requested_by=str(raw["requested_by"]),
            state=str(raw["state"]),
            required=int(raw.get("required", 0)),
            approvals=int(raw.get("approvals", 0)),
            decide_by=_when(raw.get("decide_by")),
            active_until=_when(raw.get("active_until")),
            needs_review=bool(raw.get("needs_review")),
        )
