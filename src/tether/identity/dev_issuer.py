"""A development issuer of JWT-SVIDs (SPIFFE JWT-SVID spec, RFC 7519); never for production.

The embedded default (``tether serve``, ``tether demo``) needs agents with identities and no
SPIRE. This issuer mints ES256 JWT-SVIDs for ``spiffe://<trust-domain>/agent/<name>`` with
tether's own key. Anyone holding that key can be any agent, so it is refused outright when
``TETHER_ENV`` is ``production``: a production deployment must verify SVIDs or OIDC tokens from
a real issuer.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from tether.core.errors import ErrorCode, Forbidden, InvalidRequest
from tether.identity.jwt_svid import JwtSvidVerifier, check_trust_domain
from tether.identity.keys import SigningKey

#: The audience dev SVIDs are minted for when the caller does not say.
DEFAULT_AUDIENCE = "tether"
#: The embedded default's SPIFFE trust domain.
DEFAULT_TRUST_DOMAIN = "tether.local"
#: Where the development issuer's key lives in a data directory.
DEV_ISSUER_KEY = Path("keys") / "dev-issuer.pem"
#: Longest lifetime a dev SVID may have.
MAX_TTL_SECONDS = 24 * 3600
_AGENT_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def ensure_dev_allowed(environ: Mapping[str, str]) -> None:
    """Raise ``Forbidden(DEV_ISSUER_REFUSED)`` when ``TETHER_ENV`` says this is production."""
    if environ.get("TETHER_ENV", "").strip().lower() == "production":
        raise Forbidden(
            "the development identity issuer is disabled when TETHER_ENV=production; "
            "configure a SPIFFE trust bundle or an OIDC issuer for agents instead",
            code=ErrorCode.DEV_ISSUER_REFUSED,
        )


class DevIssuer:
    """Mints development JWT-SVIDs. Construction refuses in production (see module docstring)."""

    def __init__(
        self,
        key: SigningKey,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        ensure_dev_allowed(os.environ if environ is None else environ)
        self._key = key
        self._trust_domain = check_trust_domain(trust_domain)

    @property
    def trust_domain(self) -> str:
        return self._trust_domain

    def spiffe_id(self, agent: str) -> str:
        """``spiffe://<trust-domain>/agent/<agent>``; raises ``InvalidRequest`` for a bad name."""
        if not isinstance(agent, str) or not _AGENT_NAME.fullmatch(agent) or agent in {".", ".."}:
            raise InvalidRequest(
                "an agent name is 1-64 letters, digits, '.', '-' or '_' (not '.' or '..')"
            )
        return f"spiffe://{self._trust_domain}/agent/{agent}"

    def mint_svid(
        self, agent: str, *, audience: str, now: datetime, ttl_seconds: int = 3600
    ) -> str:
        """An ES256 JWT-SVID for ``agent``: header ``alg``/``kid``/``typ``, claims
        ``sub``/``aud``/``exp``/``iat``."""
        subject = self.spiffe_id(agent)
        if not isinstance(audience, str) or not audience or len(audience) > 512:
            raise InvalidRequest("an SVID audience is a non-empty string")
        if isinstance(ttl_seconds, bool) or not 0 < ttl_seconds <= MAX_TTL_SECONDS:
            raise InvalidRequest(f"an SVID lifetime is 1 to {MAX_TTL_SECONDS} seconds")
        if now.tzinfo is None:
            raise InvalidRequest("now must be timezone-aware")
        issued = math.floor(now.timestamp())
        claims = {"sub": subject, "aud": [audience], "iat": issued, "exp": issued + ttl_seconds}
        return self._key.sign(claims, typ="JWT")

    def dev_verifier(
        self, audience: str = DEFAULT_AUDIENCE, *, leeway_seconds: int = 60
    ) -> JwtSvidVerifier:
        """A verifier that trusts this issuer's key for its trust domain, and nothing else."""
        return JwtSvidVerifier(
            self._key.key_set(),
            {self._trust_domain},
            audience,
            algorithms=(SigningKey.algorithm,),
            leeway_seconds=leeway_seconds,
        )

    def __repr__(self) -> str:
        return f"DevIssuer(trust_domain={self._trust_domain!r}, key={self._key!r})"


def open_dev_issuer(
    data_dir: Path, *, trust_domain: str = DEFAULT_TRUST_DOMAIN, environ: Mapping[str, str]
) -> DevIssuer:
    """The development issuer of a data directory (its key created on first use); refused when
    ``environ`` says production. Lives here, not in the runtime, so ``tether dev svid`` starts
    without importing the server."""
    ensure_dev_allowed(environ)
    key = SigningKey.load_or_create(data_dir / DEV_ISSUER_KEY)
    return DevIssuer(key, trust_domain=trust_domain, environ=environ)
