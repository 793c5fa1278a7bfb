"""Grant tokens: tether's own short-lived bearer tokens, as JWTs (RFC 7519, RFC 8725 §3.11).

A grant token names a grant (``jti``) and its task (``tid``), is bound to the agent's workload id
(``sub``), and expires with the grant. It is signed ES256 with tether's key and carries the
explicit type ``typ: tether-grant+jwt`` with ``aud: tether-grant`` (RFC 8725 §3.11: explicit
typing), so a grant can never be presented as a workload SVID and an SVID can never be presented
as a grant, even when both are signed by the same key.

The store stays the source of truth: a verified token only says which grant to look up.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from tether.core.errors import ErrorCode, Unauthenticated
from tether.core.ids import GrantId, IdKind, TaskId, is_well_formed
from tether.core.task import Grant
from tether.identity._cache import VerifiedCache
from tether.identity._jose import (
    ExpiredToken,
    check_audience,
    check_leeway,
    check_time,
    numeric_date,
    verify_jws,
)
from tether.identity.keys import KeySet, SigningKey
from tether.service.ports import GrantClaims

GRANT_TOKEN_TYPE = "tether-grant+jwt"
GRANT_AUDIENCE = "tether-grant"
_MAX_AGENT_LENGTH = 2048


class InvalidGrantToken(Unauthenticated):
    """A grant token that does not verify. Always ``code=INVALID_TOKEN``.

    ``expired`` is true only when everything else about the token verified (signature, type,
    issuer, audience, ids) and its ``exp`` has passed: the service may then answer with a
    ``grant_expired`` reason instead of a bare ``invalid_token``, and a forged token can never
    earn that more helpful answer.
    """

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message, code=ErrorCode.INVALID_TOKEN)
        self.expired = expired


class GrantTokenSigner:
    """Signs and verifies grant tokens; implements ``GrantSigner``."""

    def __init__(
        self,
        key: SigningKey,
        issuer: str = "tether",
        *,
        leeway_seconds: int = 5,
        max_token_bytes: int = 8192,
    ) -> None:
        self._key = key
        self._keys: KeySet = key.key_set()
        self._issuer = issuer
        # Leeway covers skew between replicas for nbf/iat only: expiry is exact.
        self._leeway = check_leeway(leeway_seconds)
        self._cache: VerifiedCache[GrantClaims] = VerifiedCache()
        self._max_bytes = max_token_bytes

    def sign(self, grant: Grant) -> str:
        issued = math.floor(_epoch(grant.issued_at))
        # Rounding exp down never lets a token outlive its grant.
        expires = math.floor(_epoch(grant.expires_at))
        claims: dict[str, object] = {
            "iss": self._issuer,
            "aud": GRANT_AUDIENCE,
            "sub": grant.agent,
            "jti": grant.grant_id,
            "tid": grant.task_id,
            "iat": issued,
            "nbf": issued,
            "exp": expires,
        }
        if grant.delegators:
            # RFC 8693 §4.1: the current actor outermost, each earlier one nested inside.
            act: dict[str, object] = {"sub": grant.delegators[0]}
            for actor in grant.delegators[1:]:
                act = {"sub": actor, "act": act}
            claims["act"] = act
        return self._key.sign(claims, typ=GRANT_TOKEN_TYPE)

    def verify(self, token: str, now: datetime) -> GrantClaims:
        cached = self._cache.get(token, now)
        if cached is not None:
            return cached
        try:
            return self._verify(token, now)
        except ExpiredToken as exc:
            raise InvalidGrantToken("grant has expired", expired=True) from exc
        except InvalidGrantToken:
            raise
        except Unauthenticated as exc:
            raise InvalidGrantToken(exc.message) from exc

    def _verify(self, token: str, now: datetime) -> GrantClaims:
        verified = verify_jws(
            token,
            keys=self._keys,
            algorithms=(SigningKey.algorithm,),
            typs=frozenset({GRANT_TOKEN_TYPE}),
            max_bytes=self._max_bytes,
            now=now,
        )
        claims = verified.claims
        if claims.get("iss") != self._issuer:
            raise InvalidGrantToken("grant token issuer is not this tether")
        check_audience(claims, GRANT_AUDIENCE)
        grant_id, task_id, agent = claims.get("jti"), claims.get("tid"), claims.get("sub")
        if not isinstance(grant_id, str) or not is_well_formed(grant_id, IdKind.GRANT):
            raise InvalidGrantToken("grant token names no valid grant")
        if not isinstance(task_id, str) or not is_well_formed(task_id, IdKind.TASK):
            raise InvalidGrantToken("grant token names no valid task")
        if not isinstance(agent, str) or not 0 < len(agent) <= _MAX_AGENT_LENGTH:
            raise InvalidGrantToken("grant token names no agent")
        for required in ("iat", "nbf"):
            if numeric_date(claims, required) is None:
                raise InvalidGrantToken(f"grant token has no {required}")
        check_time(claims, now, self._leeway, exp_leeway=0)
        expires = numeric_date(claims, "exp")
        try:
            if expires is None:  # check_time already refused this; keep mypy and -O honest
                raise ValueError("no exp")
            expires_at = datetime.fromtimestamp(expires, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise InvalidGrantToken("grant token expiry is out of range") from exc
        verified_claims = GrantClaims(
            grant_id=GrantId(grant_id), task_id=TaskId(task_id), agent=agent, expires_at=expires_at
        )
        self._cache.put(token, verified_claims, claims, now, leeway=self._leeway, exp_leeway=0)
        return verified_claims

    def __repr__(self) -> str:
        return f"GrantTokenSigner(issuer={self._issuer!r}, key={self._key!r})"


def _epoch(when: datetime) -> float:
    if when.tzinfo is None:
        raise ValueError("grant times must be timezone-aware")
    return when.timestamp()
