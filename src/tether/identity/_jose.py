"""Compact-JWS verification for every verifier here: the part PyJWT leaves to its caller.

PyJWT (with cryptography) does the cryptography: it decodes the compact form, checks the
signature with the key and algorithm bound together (a ``PyJWK`` verifies only the algorithm it
was built for, so an RSA or EC public key is never an HMAC secret), refuses RSA keys under 2048
bits and, at load (:class:`~tether.identity.keys.KeySet`), keys whose type or curve does not suit
their algorithm. What remains here is what PyJWT does not do, or does in a way tether cannot use:

1. **Bounds before any decoding**: a size cap and the exact compact shape (three base64url
   segments, ASCII, nothing trailing). PyJWT decodes whatever it is given.
2. **One strict JSON reader** (:mod:`tether.core.strict_json`) for header and payload: a repeated
   name, ``NaN`` or a lone surrogate refuses the token. PyJWT's ``json.loads`` keeps the last of
   two ``sub``, so two readers of one token could see two subjects.
3. **Header policy**, cheapest first: ``alg`` pinned to the verifier's list before any key is
   looked at; ``typ`` required to be one the verifier accepts (RFC 8725 §3.11 explicit typing,
   which keeps grants, leases and SVIDs apart); no ``crit`` and no ``b64`` (PyJWT accepts
   ``crit: ["b64"]``); ``kid`` a short string. ``jku``, ``x5u`` and ``jwk`` are never followed:
   trust comes only from configured keys.
4. **Key choice** by ``kid`` from a :class:`KeySource`, with one refresh when nothing matches
   (``jwks_url`` rate-limits it) and a token without ``kid`` accepted only by a one-key set.
   ``PyJWKClient`` needs a ``kid`` and times its cache with the wall clock (see ``jwks_url``).
5. **Claims against the ``now`` given**, never the wall clock: PyJWT's ``exp``/``nbf``/``iat``
   checks read ``datetime.now()``, take ``int()`` of any value (``"123"``, ``true``) and have one
   leeway, where grants need an exact ``exp``. Plus the lifetime cap (``exp - iat``) and
   ``aud`` required.
6. **One opaque error**: every failure is ``Unauthenticated(code=INVALID_TOKEN)`` with a fixed
   short message that never repeats the token or a value from it (PyJWT's messages may).
"""

from __future__ import annotations

import binascii
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import jwt
from jwt.exceptions import InvalidSignatureError, PyJWTError
from jwt.utils import base64url_decode

from tether.core import strict_json
from tether.core.errors import ConfigurationError, ErrorCode, Unauthenticated
from tether.identity.keys import VERIFY_ALGORITHMS, KeySet

#: Largest leeway a verifier may be configured with: clock skew, not a grace period.
MAX_LEEWAY_SECONDS = 300
#: Longest lifetime (``exp - iat``) a workload token may declare unless configured otherwise:
#: a token valid for years is a standing credential, which is what tether removes.
DEFAULT_MAX_LIFETIME_SECONDS = 24 * 3600
#: The most that may be configured (a year): beyond it the check would mean nothing.
MAX_MAX_LIFETIME_SECONDS = 366 * 24 * 3600
_SEGMENTS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
_MAX_KID_LENGTH = 256
_JWS = jwt.PyJWS(algorithms=sorted(VERIFY_ALGORITHMS), options={"enforce_minimum_key_length": True})


class KeySource(Protocol):
    """Where a verifier gets its keys: a static :class:`KeySet`, or a refreshing JWKS URL."""

    def current(self, now: datetime) -> KeySet:
        """The keys to use now; raises ``Unauthenticated`` when none can be had."""
        ...

    def refresh(self, now: datetime) -> KeySet | None:
        """Called once when no key matches a token: fresher keys, or ``None`` (rate-limited)."""
        ...


class ExpiredToken(Unauthenticated):
    """A token whose signature and claims were good but whose ``exp`` has passed."""


def reject(message: str) -> Unauthenticated:
    return Unauthenticated(message, code=ErrorCode.INVALID_TOKEN)


# -- configuration checks (raised at start, not per request) -------------------------------------


def check_algorithms(algorithms: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(algorithms)
    refused = [alg for alg in chosen if alg not in VERIFY_ALGORITHMS]
    if not chosen or refused:
        raise ConfigurationError(
            f"verifier algorithms must be a non-empty subset of {sorted(VERIFY_ALGORITHMS)}; "
            f"refused: {refused}"
        )
    return chosen


def check_leeway(seconds: int) -> int:
    if isinstance(seconds, bool) or not 0 <= seconds <= MAX_LEEWAY_SECONDS:
        raise ConfigurationError(f"leeway must be between 0 and {MAX_LEEWAY_SECONDS} seconds")
    return seconds


def check_max_lifetime(seconds: int) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise ConfigurationError("the maximum token lifetime is a whole number of seconds")
    if not 60 <= seconds <= MAX_MAX_LIFETIME_SECONDS:
        raise ConfigurationError(
            f"the maximum token lifetime must be between 60 and {MAX_MAX_LIFETIME_SECONDS} seconds"
        )
    return seconds


def check_audience_config(audience: str) -> str:
    if not isinstance(audience, str) or not audience or len(audience) > 512:
        raise ConfigurationError("a verifier needs a non-empty audience (at most 512 characters)")
    return audience


# -- decoding ------------------------------------------------------------------------------------


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = strict_json.loads(raw)
    except strict_json.JsonRefused as exc:
        raise reject("token is malformed") from exc
    if not isinstance(value, dict):
        raise reject("token is malformed")
    return value


def _segment(token: str, index: int) -> dict[str, Any]:
    try:
        raw = base64url_decode(token.split(".")[index])
    except (binascii.Error, ValueError) as exc:
        raise reject("token is malformed") from exc
    return _json_object(raw)


def check_shape(token: object, max_bytes: int) -> str:
    """The token if it is a compact JWS of at most ``max_bytes`` ASCII characters."""
    if not isinstance(token, str) or not token:
        raise reject("token is missing or not a string")
    if len(token) > max_bytes:
        raise reject("token is too large")
    if not token.isascii() or not _SEGMENTS.fullmatch(token):
        raise reject("token is malformed")
    return token


def unverified_claims(token: object, max_bytes: int) -> dict[str, Any]:
    """The payload *without* verifying anything: for routing to a verifier, never for trust."""
    return _segment(check_shape(token, max_bytes), 1)


@dataclass(frozen=True, slots=True)
class Verified:
    header: Mapping[str, Any]
    claims: Mapping[str, Any]


def normalize_typ(value: str) -> str:
    """RFC 7515 §4.1.9: ``typ`` compares case-insensitively, ``application/`` may be omitted."""
    lowered = value.lower()
    return lowered.removeprefix("application/")


def verify_jws(
    token: object,
    *,
    keys: KeySource,
    algorithms: tuple[str, ...],
    typs: frozenset[str | None],
    max_bytes: int,
    now: datetime,
) -> Verified:
    """Verify shape, header and signature; return the header and claims for claim checks.

    ``typs`` lists the accepted normalized ``typ`` values; ``None`` in it accepts a token
    without one.
    """
    compact = check_shape(token, max_bytes)
    header = _segment(compact, 0)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise reject("token algorithm is not allowed")
    typ = header.get("typ")
    if typ is not None and not isinstance(typ, str):
        raise reject("token type is not accepted")
    if (normalize_typ(typ) if typ is not None else None) not in typs:
        raise reject("token type is not accepted")
    if "crit" in header or "b64" in header:
        raise reject("token uses unsupported header extensions")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or len(kid) > _MAX_KID_LENGTH):
        raise reject("token key id is malformed")

    key = keys.current(now).select(kid, alg)
    if key is None:
        fresher = keys.refresh(now)
        key = fresher.select(kid, alg) if fresher is not None else None
    if key is None:
        raise reject("no trusted key matches this token")

    try:
        decoded = _JWS.decode_complete(compact, key=key, algorithms=[alg])
    except InvalidSignatureError as exc:
        raise reject("token signature is invalid") from exc
    except PyJWTError as exc:
        raise reject("token is malformed") from exc
    except Exception as exc:
        # INVARIANT: fail closed. A crypto library error on hostile input is a rejected token.
        raise reject("token could not be verified") from exc
    return Verified(header=header, claims=_json_object(decoded["payload"]))


# -- claims --------------------------------------------------------------------------------------


def epoch(now: datetime) -> float:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.timestamp()


def numeric_date(claims: Mapping[str, Any], name: str) -> int | float | None:
    """An RFC 7519 NumericDate claim, ``None`` when absent; anything else is malformed."""
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise reject(f"token {name} claim is malformed")
    if isinstance(value, float) and not math.isfinite(value):
        raise reject(f"token {name} claim is malformed")
    return value


def check_time(
    claims: Mapping[str, Any], now: datetime, leeway: int, *, exp_leeway: int | None = None
) -> None:
    """``exp`` required; ``nbf`` and ``iat`` checked when present; all against ``now``.

    ``leeway`` absorbs clock skew for ``nbf`` and ``iat``; ``exp_leeway`` (default: the same)
    may be set to 0 where the token's own issuer decides expiry, as for grants.
    """
    current = epoch(now)
    expires = numeric_date(claims, "exp")
    not_before = numeric_date(claims, "nbf")
    issued = numeric_date(claims, "iat")
    if expires is None:
        raise reject("token has no expiry")
    if not_before is not None and current + leeway < not_before:
        raise reject("token is not yet valid")
    if issued is not None and issued > current + leeway:
        raise reject("token was issued in the future")
    # RFC 7519 §4.1.4: the current time must be *before* exp.
    if current >= expires + (leeway if exp_leeway is None else exp_leeway):
        raise ExpiredToken("token has expired", code=ErrorCode.INVALID_TOKEN)


def check_lifetime(claims: Mapping[str, Any], max_seconds: int) -> None:
    """``iat`` required, and the lifetime it declares (``exp - iat``) at most ``max_seconds``.

    Independent of ``now``: a token minted for ten years is refused on its first day too.
    """
    issued = numeric_date(claims, "iat")
    expires = numeric_date(claims, "exp")
    if issued is None:
        raise reject("token has no issued-at time (iat); issue tokens that carry one")
    if expires is None:
        raise reject("token has no expiry")
    if expires - issued > max_seconds:
        raise reject(
            f"token lifetime (exp - iat) is longer than the {max_seconds} s allowed; "
            "issue shorter-lived tokens"
        )


def check_audience(claims: Mapping[str, Any], audience: str) -> None:
    """RFC 7519 §4.1.3: ``aud`` is required here and must name ``audience``."""
    aud = claims.get("aud")
    if aud is None:
        raise reject("token has no audience")
    if isinstance(aud, str):
        audiences = [aud]
    elif isinstance(aud, list) and all(isinstance(item, str) for item in aud):
        audiences = aud
    else:
        raise reject("token audience is malformed")
    if audience not in audiences:
        raise reject("token audience does not match")
