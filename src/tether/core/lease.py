"""Leases: every downstream credential tether mints lives exactly as long as its lease.

A lease is the server's record of one just-in-time credential (a scoped JWT, a PostgreSQL role, an
injected secret): which task and grant it serves, what it covers, when it ends. It follows the
lease model of HashiCorp Vault: a TTL, a hard maximum TTL fixed at issue, renewal that moves the
expiry forward from *now* but never past the maximum, and a revocation that is idempotent.

Invariants kept here (and property-tested):

* ``issued_at <= expires_at <= max_expires_at``, all timezone-aware.
* Renewal never moves ``expires_at`` past ``min(max_expires_at, grant_expires_at)``: a lease
  never outlives the grant it was minted under.
* An ended lease (revoked, expired, or past its expiry) is never renewed.
* ``revoke`` on an ended lease returns it unchanged.

Pure: no clock, no randomness, no I/O. ``now`` and random bytes are passed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final, NewType

from tether.core.errors import Conflict, ErrorCode, InvalidRequest
from tether.core.ids import GrantId, IdKind, TaskId, encode_id
from tether.core.scope import JSONValue, Scope
from tether.core.verdict import Obligation, ObligationKind

LeaseId = NewType("LeaseId", str)

#: The prefix of a lease id, as ``tsk_`` is a task's (``lse_`` + 26 Crockford base32 characters).
LEASE_ID_PREFIX: Final = "lse"
_LEASE_ID_RE: Final = re.compile(r"^lse_[0-9a-hjkmnp-tv-z]{26}$")


def new_lease_id(random_bytes: bytes) -> LeaseId:
    """A lease id from 16 random bytes (``os.urandom(16)`` in production, seeded in tests)."""
    # A lease id is not an IdKind (leases live outside the core's id set): reuse the task
    # encoding and put the lease prefix in front.
    body = encode_id(IdKind.TASK, random_bytes).partition("_")[2]
    return LeaseId(f"{LEASE_ID_PREFIX}_{body}")


def is_lease_id(value: str) -> bool:
    """True when ``value`` has the exact shape of a lease id."""
    return len(value) == 30 and _LEASE_ID_RE.match(value) is not None


class LeaseState(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


class IssuerKind(StrEnum):
    """Which issuer minted the credential a lease stands for; a closed set."""

    SCOPED_JWT = "scoped_jwt"
    POSTGRES_ROLE = "postgres_role"
    INJECTED_SECRET = "injected_secret"


class LeaseNotRenewable(Conflict):
    """Renewal refused: the lease is not renewable, has ended, or has reached its maximum TTL.

    A ``Conflict`` with ``code=LEASE_NOT_RENEWABLE``.
    """

    default_code = ErrorCode.LEASE_NOT_RENEWABLE


@dataclass(frozen=True, slots=True)
class Lease:
    """One just-in-time downstream credential, as tether records it. Never holds the secret."""

    lease_id: LeaseId
    task_id: TaskId
    grant_id: GrantId
    agent: str
    issuer: IssuerKind
    scope: Scope
    issued_at: datetime
    expires_at: datetime
    max_expires_at: datetime
    renewable: bool
    state: LeaseState
    ended_at: datetime | None = None
    #: The configured issuer (its name in ``credentials.yaml``) and the decision that minted it.
    issuer_name: str = ""
    decision_id: str = ""

    def __post_init__(self) -> None:
        for name in ("issued_at", "expires_at", "max_expires_at"):
            _require_aware(getattr(self, name), name)
        # INVARIANT: issued_at <= expires_at <= max_expires_at.
        if not self.issued_at <= self.expires_at <= self.max_expires_at:
            raise InvalidRequest(
                "a lease must satisfy issued_at <= expires_at <= max_expires_at",
                code=ErrorCode.INVALID_FIELD,
            )

    def is_active_at(self, now: datetime) -> bool:
        """True while the lease is active and ``now`` is before its expiry."""
        return self.state is LeaseState.ACTIVE and now < self.expires_at

    def state_at(self, now: datetime) -> LeaseState:
        """The state as of ``now``: an active lease past its expiry reads as expired."""
        if self.state is LeaseState.ACTIVE and now >= self.expires_at:
            return LeaseState.EXPIRED
        return self.state

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "lease_id": self.lease_id,
            "task_id": self.task_id,
            "grant_id": self.grant_id,
            "agent": self.agent,
            "issuer": self.issuer.value,
            "scope": self.scope.to_json(),
            "issued_at": self.issued_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "max_expires_at": self.max_expires_at.isoformat(),
            "renewable": self.renewable,
            "state": self.state.value,
            "ended_at": None if self.ended_at is None else self.ended_at.isoformat(),
            "issuer_name": self.issuer_name,
            "decision_id": self.decision_id,
        }


def open_lease(
    *,
    lease_id: LeaseId,
    task_id: TaskId,
    grant_id: GrantId,
    agent: str,
    issuer: IssuerKind,
    scope: Scope,
    now: datetime,
    ttl: timedelta,
    max_ttl: timedelta,
    grant_expires_at: datetime,
    renewable: bool = False,
    issuer_name: str = "",
    decision_id: str = "",
) -> Lease:
    """A new active lease: expiry ``now + ttl`` and maximum ``now + max_ttl``, both capped at
    the grant's expiry. Refuses a non-positive TTL and a grant that has already expired."""
    _require_aware(now, "now")
    _require_aware(grant_expires_at, "grant_expires_at")
    _require_positive(ttl, "ttl")
    _require_positive(max_ttl, "max_ttl")
    if not is_lease_id(lease_id):
        raise InvalidRequest("lease_id must be a lease id (lse_…)", code=ErrorCode.INVALID_FIELD)
    if grant_expires_at <= now:
        raise Conflict(
            "the grant has expired; open a new task to get a lease",
            code=ErrorCode.TASK_NOT_OPEN,
        )
    # INVARIANT: a lease never outlives its grant.
    max_expires_at = min(now + max_ttl, grant_expires_at)
    return Lease(
        lease_id=lease_id,
        task_id=task_id,
        grant_id=grant_id,
        agent=agent,
        issuer=issuer,
        scope=scope,
        issued_at=now,
        expires_at=min(now + ttl, max_expires_at),
        max_expires_at=max_expires_at,
        renewable=renewable,
        state=LeaseState.ACTIVE,
        issuer_name=issuer_name,
        decision_id=decision_id,
    )


def renew(
    lease: Lease, now: datetime, requested_ttl: timedelta, grant_expires_at: datetime
) -> Lease:
    """Move the expiry to ``now + requested_ttl``, capped at the lease's maximum and at the
    grant's expiry (as Vault does, from *now*: a short request may shorten the lease).

    Raises :class:`LeaseNotRenewable` when the lease is not renewable, has been revoked or has
    expired, or has no time left under its caps; ``InvalidRequest`` for a non-positive TTL.
    """
    _require_aware(now, "now")
    _require_aware(grant_expires_at, "grant_expires_at")
    _require_positive(requested_ttl, "requested_ttl")
    if not lease.renewable:
        raise LeaseNotRenewable(
            f"lease {lease.lease_id} is not renewable; request a new lease instead"
        )
    state = lease.state_at(now)
    if state is not LeaseState.ACTIVE:
        raise LeaseNotRenewable(
            f"lease {lease.lease_id} is {state.value} and cannot be renewed; request a new lease"
        )
    # INVARIANT: renewal never passes min(max_expires_at, grant_expires_at).
    cap = min(lease.max_expires_at, grant_expires_at)
    if cap <= now:
        raise LeaseNotRenewable(
            f"lease {lease.lease_id} has reached its maximum TTL or its grant's expiry; "
            "request a new lease under a live grant"
        )
    return replace(lease, expires_at=min(now + requested_ttl, cap))


def revoke(lease: Lease, now: datetime) -> Lease:
    """End the lease now. Idempotent: a lease that has already ended is returned unchanged."""
    _require_aware(now, "now")
    if lease.state is not LeaseState.ACTIVE:
        return lease
    return replace(lease, state=LeaseState.REVOKED, ended_at=now)


def expire(lease: Lease, now: datetime) -> Lease:
    """Mark an active lease whose expiry has passed as expired (for the reaper); otherwise the
    lease is returned unchanged."""
    _require_aware(now, "now")
    if lease.state is LeaseState.ACTIVE and now >= lease.expires_at:
        return replace(lease, state=LeaseState.EXPIRED, ended_at=lease.expires_at)
    return lease


def credential_obligation(lease: Lease, policy_id: str | None = None) -> Obligation:
    """The obligation an allow carries so the enforcement point uses this lease's credential."""
    return Obligation(ObligationKind.CREDENTIAL, lease.lease_id, policy_id)


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRequest(f"{name} must be timezone-aware", code=ErrorCode.INVALID_FIELD)


def _require_positive(value: timedelta, name: str) -> None:
    if value <= timedelta(0):
        raise InvalidRequest(f"{name} must be positive", code=ErrorCode.INVALID_FIELD)


__all__ = [
    "LEASE_ID_PREFIX",
    "IssuerKind",
    "Lease",
    "LeaseId",
    "LeaseNotRenewable",
    "LeaseState",
    "credential_obligation",
    "expire",
    "is_lease_id",
    "new_lease_id",
    "open_lease",
    "renew",
    "revoke",
]
