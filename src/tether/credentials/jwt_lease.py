"""Scoped JWT leases for HTTP APIs: audience-bound, short-lived, signed by tether (ES256).

The token is a JWT (RFC 7519) an HTTP API verifies with tether's public keys, published as a JWK
Set (RFC 7517) at ``/.well-known/jwks.json``. Its claims:

    iss    tether's issuer name
    sub    the agent's SPIFFE ID (the workload the grant is bound to)
    aud    the one API the token is for (RFC 7519 §4.1.3): no other API may accept it
    scope  the allowed operations, space-separated (RFC 8693 §4.2, RFC 6749 §3.3),
           each ``tool:action`` such as ``crm.query:read``
    act    the delegation chain, when there is one, as nested RFC 8693 §4.1 ``act`` claims:
           the outermost ``act`` is the current (most recent) actor, each nested one the actor
           before it
    jti    a unique id (the lease id), so the API can refuse a revoked lease
    iat, nbf, exp   ``exp - iat`` is at most 300 s and ``exp`` never passes the grant's expiry

The header carries ``typ: tether-lease+jwt`` (RFC 8725 §3.11 explicit typing), so a lease can
never be presented as a grant or an SVID, and ``kid`` naming the key. :func:`verify_scoped_jwt`
is the reference verifier an API would run: algorithm pinned to ES256, ``typ`` checked, the
audience required to be the API's own, time checked against the ``now`` it is given.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from tether.core.errors import (
    ConfigurationError,
    Conflict,
    ErrorCode,
    InvalidRequest,
)
from tether.core.identity import parse_spiffe_id
from tether.core.lease import Lease
from tether.core.scope import Scope
from tether.identity._jose import (
    check_audience,
    check_leeway,
    check_time,
    numeric_date,
    reject,
    verify_jws,
)
from tether.identity.keys import KeySet, SigningKey

LEASE_TOKEN_TYPE: Final = "tether-lease+jwt"
#: The longest a scoped token may live, whatever is asked for.
MAX_TOKEN_TTL: Final = timedelta(seconds=300)
#: Deepest delegation chain a token carries (and a verifier accepts).
MAX_ACTOR_DEPTH: Final = 16
_MAX_TOKEN_BYTES: Final = 16 * 1024
_MAX_AUDIENCE: Final = 512
_MAX_OPERATIONS: Final = 64
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ): printable, no space, '"' or '\'.
_SCOPE_TOKEN: Final = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,256}$")
_AUDIENCE: Final = re.compile(r"^[\x21-\x7e]+$")


@dataclass(frozen=True, slots=True)
class ScopedToken:
    """A minted token and what it says. The token is a bearer credential: never in a repr."""

    token: str = field(repr=False)
    jti: str
    audience: str
    subject: str
    operations: tuple[str, ...]
    actors: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime

    def __repr__(self) -> str:
        return (
            f"ScopedToken(jti={self.jti!r}, audience={self.audience!r}, "
            f"operations={self.operations!r}, expires_at={self.expires_at.isoformat()!r}, "
            "token='**********')"
        )

    def __str__(self) -> str:
        return self.__repr__()


@dataclass(frozen=True, slots=True)
class ScopedClaims:
    """What a verified scoped token grants: for the API to check the operation it serves."""

    issuer: str
    subject: str
    audience: str
    operations: frozenset[str]
    actors: tuple[str, ...]
    jti: str
    issued_at: datetime
    expires_at: datetime

    def allows(self, operation: str) -> bool:
        return operation in self.operations


def scope_operations(scope: Scope) -> tuple[str, ...]:
    """The ``scope`` claim's operations for one tether scope: ``tool:action`` per action."""
    return tuple(sorted(f"{scope.tool}:{action.value}" for action in scope.actions))


class ScopedJwtIssuer:
    """Mints scoped, audience-bound lease tokens with tether's signing key."""

    def __init__(self, key: SigningKey, issuer: str) -> None:
        if not isinstance(issuer, str) or not _AUDIENCE.fullmatch(issuer) or len(issuer) > 512:
            raise ConfigurationError("a scoped JWT issuer needs a printable issuer name")
        self._key = key
        self._issuer = issuer

    @property
    def issuer(self) -> str:
        return self._issuer

    def issue(
        self,
        *,
        jti: str,
        audience: str,
        operations: Sequence[str],
        subject: str,
        now: datetime,
        grant_expires_at: datetime,
        ttl: timedelta = MAX_TOKEN_TTL,
        actors: Sequence[str] = (),
    ) -> ScopedToken:
        """Mint a token for ``audience`` allowing ``operations`` to ``subject``.

        ``actors`` is the delegation chain, most recent actor first. The lifetime is the least
        of ``ttl``, 300 s and what is left of the grant. Raises ``InvalidRequest`` for malformed
        input and ``Conflict(TASK_NOT_OPEN)`` when the grant has already expired.
        """
        _check_aware(now, "now")
        _check_aware(grant_expires_at, "grant_expires_at")
        if ttl <= timedelta(0):
            raise _invalid("ttl must be positive")
        if not jti or len(jti) > 128 or not _AUDIENCE.fullmatch(jti):
            raise _invalid("jti must be a printable id of at most 128 characters")
        if not audience or len(audience) > _MAX_AUDIENCE or not _AUDIENCE.fullmatch(audience):
            raise _invalid("audience must name one API, printable, without spaces")
        ops = tuple(dict.fromkeys(operations))
        if not ops or len(ops) > _MAX_OPERATIONS:
            raise _invalid(f"a token needs between 1 and {_MAX_OPERATIONS} operations")
        for op in ops:
            if not _SCOPE_TOKEN.fullmatch(op):
                raise _invalid("each operation must be printable, without spaces or quotes")
        _check_spiffe(subject, "subject")
        if len(actors) > MAX_ACTOR_DEPTH:
            raise _invalid(f"a delegation chain has at most {MAX_ACTOR_DEPTH} actors")
        for actor in actors:
            _check_spiffe(actor, "actor")

        issued = math.floor(now.timestamp())
        # Rounding down never lets a token outlive its grant nor exceed 300 s:
        # floor(x + n) - floor(x) is n for a whole n, and floor(g) <= g for the grant's expiry.
        expires = math.floor(min(now + min(ttl, MAX_TOKEN_TTL), grant_expires_at).timestamp())
        if expires <= issued:
            raise Conflict(
                "the grant has expired or has under a second left; open a new task",
                code=ErrorCode.TASK_NOT_OPEN,
            )
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "sub": subject,
            "aud": audience,
            "scope": " ".join(ops),
            "jti": jti,
            "iat": issued,
            "nbf": issued,
            "exp": expires,
        }
        if actors:
            claims["act"] = _nest_actors(actors)
        token = self._key.sign(claims, typ=LEASE_TOKEN_TYPE)
        return ScopedToken(
            token=token,
            jti=jti,
            audience=audience,
            subject=subject,
            operations=ops,
            actors=tuple(actors),
            issued_at=datetime.fromtimestamp(issued, UTC),
            expires_at=datetime.fromtimestamp(expires, UTC),
        )

    def issue_for_lease(
        self,
        lease: Lease,
        *,
        audience: str,
        now: datetime,
        grant_expires_at: datetime,
        actors: Sequence[str] = (),
    ) -> ScopedToken:
        """Mint the token a lease stands for: ``jti`` is the lease id, ``sub`` its agent,
        ``scope`` its scope's operations, and it expires no later than the lease."""
        if not lease.is_active_at(now):
            raise Conflict(
                f"lease {lease.lease_id} is not active; request a new lease",
                code=ErrorCode.TASK_NOT_OPEN,
            )
        return self.issue(
            jti=lease.lease_id,
            audience=audience,
            operations=scope_operations(lease.scope),
            subject=lease.agent,
            now=now,
            grant_expires_at=min(grant_expires_at, lease.expires_at),
            actors=actors,
        )

    def __repr__(self) -> str:
        return f"ScopedJwtIssuer(issuer={self._issuer!r}, key={self._key!r})"


def verify_scoped_jwt(
    token: str,
    jwks: KeySet | Mapping[str, Any],
    audience: str,
    now: datetime,
    *,
    issuer: str | None = None,
    leeway_seconds: int = 0,
) -> ScopedClaims:
    """Verify a scoped lease token as the API named ``audience`` should.

    ``jwks`` is tether's JWK Set document (as served at ``/.well-known/jwks.json``) or a
    :class:`KeySet`. ``issuer``, when given, must equal the ``iss`` claim. Raises
    ``Unauthenticated(code=INVALID_TOKEN)`` with a short message that never repeats the token.
    """
    keys = jwks if isinstance(jwks, KeySet) else KeySet.from_jwks(jwks)
    leeway = check_leeway(leeway_seconds)
    verified = verify_jws(
        token,
        keys=keys,
        algorithms=(SigningKey.algorithm,),
        typs=frozenset({LEASE_TOKEN_TYPE}),
        max_bytes=_MAX_TOKEN_BYTES,
        now=now,
    )
    claims = verified.claims
    iss = claims.get("iss")
    if not isinstance(iss, str) or (issuer is not None and iss != issuer):
        raise reject("token issuer is not trusted")
    # A lease token is for exactly one API: refuse a list, even one naming this API.
    if not isinstance(claims.get("aud"), str):
        raise reject("token audience is malformed")
    check_audience(claims, audience)
    check_time(claims, now, leeway)
    subject, jti, scope = claims.get("sub"), claims.get("jti"), claims.get("scope")
    if not isinstance(subject, str) or not _is_spiffe(subject):
        raise reject("token subject is malformed")
    if not isinstance(jti, str) or not jti:
        raise reject("token has no id")
    if not isinstance(scope, str) or not scope:
        raise reject("token has no scope")
    issued, expires = numeric_date(claims, "iat"), numeric_date(claims, "exp")
    if issued is None or expires is None:
        raise reject("token has no issue time")
    if expires - issued > MAX_TOKEN_TTL.total_seconds():
        raise reject("token lifetime is longer than a lease token may have")
    actors = _unnest_actors(claims.get("act"))
    return ScopedClaims(
        issuer=iss,
        subject=subject,
        audience=audience,
        operations=frozenset(op for op in scope.split(" ") if op),
        actors=actors,
        jti=jti,
        issued_at=datetime.fromtimestamp(issued, UTC),
        expires_at=datetime.fromtimestamp(expires, UTC),
    )


def jwks_document(keys: Iterable[SigningKey]) -> dict[str, list[dict[str, str]]]:
    """The JWK Set (RFC 7517 §5) to serve at ``/.well-known/jwks.json``: public keys only.

    List the current key first and keep a retired key while tokens it signed may still be live
    (at most :data:`MAX_TOKEN_TTL`). Duplicate keys (same ``kid``) appear once.
    """
    seen: dict[str, dict[str, str]] = {}
    for key in keys:
        seen.setdefault(key.kid, key.public_jwk())
    if not seen:
        raise ConfigurationError("a JWKS document needs at least one signing key")
    return {"keys": list(seen.values())}


def _nest_actors(actors: Sequence[str]) -> dict[str, Any]:
    """RFC 8693 §4.1: ``{"sub": most recent, "act": {"sub": the one before, ...}}``."""
    claim: dict[str, Any] = {"sub": actors[-1]}
    # Wrap from the oldest actor outwards: each newer actor's claim contains the ones before it.
    for actor in reversed(actors[:-1]):
        claim = {"sub": actor, "act": claim}
    return claim


def _unnest_actors(act: object) -> tuple[str, ...]:
    chain: list[str] = []
    current = act
    while current is not None:
        if len(chain) >= MAX_ACTOR_DEPTH:
            raise reject("token delegation chain is too deep")
        if not isinstance(current, dict):
            raise reject("token act claim is malformed")
        sub = current.get("sub")
        if not isinstance(sub, str) or not _is_spiffe(sub):
            raise reject("token act claim is malformed")
        chain.append(sub)
        current = current.get("act")
    return tuple(chain)


def _is_spiffe(value: str) -> bool:
    try:
        parse_spiffe_id(value)
    except ValueError:
        return False
    return True


def _check_spiffe(value: str, name: str) -> None:
    if not isinstance(value, str) or not _is_spiffe(value):
        raise _invalid(f"{name} must be a SPIFFE ID (spiffe://trust-domain/path)")


def _check_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise _invalid(f"{name} must be timezone-aware")


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, code=ErrorCode.INVALID_FIELD)


__all__ = [
    "LEASE_TOKEN_TYPE",
    "MAX_ACTOR_DEPTH",
    "MAX_TOKEN_TTL",
    "ScopedClaims",
    "ScopedJwtIssuer",
    "ScopedToken",
    "jwks_document",
    "scope_operations",
    "verify_scoped_jwt",
]
