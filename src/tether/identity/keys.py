"""Keys: tether's own signing key, and the public key sets verifiers trust.

Follows RFC 7517 (JWK and JWK Set), RFC 7518 §6 (key parameters), RFC 7638 (JWK thumbprint as the
stable ``kid``) and the SPIFFE Trust Domain and Bundle spec (a bundle is a JWK Set whose keys carry
``use: "jwt-svid"`` or ``use: "x509-svid"``).

:class:`SigningKey` holds an EC P-256 private key. It is loaded from, or created atomically at, a
PEM file readable only by its owner; its repr names the ``kid`` and never the key.
:class:`KeySet` is an immutable set of *public* keys. It refuses private or symmetric key material:
trust is configured with public keys only, so an HMAC secret can never stand in for one.

PyJWT does the JWK work (``PyJWK`` parses a key and binds it to one algorithm; its algorithms
write a public key as a JWK and check a key's type, curve and size). What is here and not in
PyJWT: the RFC 7638 thumbprint; a key set that refuses private and symmetric members, skips keys
not meant for signatures (``use``) and picks a key by ``kid`` for one algorithm; and the key
file handling (0600, atomic creation, never echoed).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from jwt.algorithms import ECAlgorithm
from jwt.exceptions import PyJWKError, PyJWTError
from jwt.utils import base64url_encode

from tether.core.errors import ConfigurationError
from tether.datadir import make_private_dir

#: The algorithms a verifier may use, and the public key type each needs. PyJWT checks the rest
#: of a key's fit when it is loaded (the JWK's ``kty``, the EC curve, the RSA size); this also
#: keeps EdDSA to Ed25519.
_PUBLIC_TYPES: Mapping[str, type] = {
    "ES256": ec.EllipticCurvePublicKey,
    "ES384": ec.EllipticCurvePublicKey,
    "EdDSA": ed25519.Ed25519PublicKey,
    "RS256": rsa.RSAPublicKey,
}
#: The algorithms a verifier may be configured with. Nothing symmetric (HS*) and never ``none``:
#: a verifier holds public keys only.
VERIFY_ALGORITHMS = frozenset(_PUBLIC_TYPES)
#: JWK members that carry private or symmetric key material (RFC 7518 §6).
_SECRET_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
#: JWK ``use`` values a signature verifier accepts; SPIFFE bundles mark JWT keys ``jwt-svid``.
_VERIFY_USES = frozenset({"sig", "jwt-svid"})
_MAX_JWKS_FILE_BYTES = 1024 * 1024


_THUMBPRINT_MEMBERS: Mapping[str, tuple[str, ...]] = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK, base64url without padding."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise ValueError("thumbprints are defined here for EC, RSA and OKP keys only")
    # RFC 7638 §3: required members only, lexicographic order, no whitespace.
    canonical = json.dumps(
        {name: jwk[name] for name in members}, separators=(",", ":"), sort_keys=True
    )
    return base64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest()).decode("ascii")


def create_private_file(target: Path, data: bytes) -> bool:
    """Write ``data`` to a new file at ``target``, readable only by its owner (0600, directory
    0700), atomically. ``False`` when the file appeared meanwhile: two processes racing to create
    one key end up with one, the loser loading the winner's file instead of overwriting it."""
    make_private_dir(target.parent)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, target)  # fails if the target appeared meanwhile: never clobber
        except FileExistsError:
            return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    return True


def read_private_file(path: Path, what: str) -> bytes:
    """The bytes of a key file; ``ConfigurationError`` if unreadable or readable by others."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} {path}: {exc.strerror}") from exc
    if os.name == "posix" and mode & 0o077:
        raise ConfigurationError(f"{what} {path} is readable by other users; run: chmod 600 {path}")
    return data


def load_private_key(path: Path, what: str) -> PrivateKeyTypes:
    """The unencrypted PEM private key in ``path`` (readable by its owner only), whatever its
    type; ``ConfigurationError`` naming ``what`` otherwise, never echoing the file's bytes."""
    pem = read_private_file(path, what)
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # Never echo the file's bytes: they are (or resemble) a private key.
        raise ConfigurationError(f"{what} {path} is not an unencrypted PEM private key") from exc


def private_pem(key: PrivateKeyTypes) -> bytes:
    """``key`` as unencrypted PKCS#8 PEM, for a file only its owner reads."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class SigningKey:
    """tether's EC P-256 signing key (ES256). The private key never appears in a repr or pickle."""

    __slots__ = ("_kid", "_private", "_public_jwk")

    algorithm = "ES256"

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ConfigurationError("tether's signing key must be an EC P-256 key")
        self._private = private_key
        jwk = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
        self._kid = jwk_thumbprint(jwk)
        self._public_jwk = {**jwk, "kid": self._kid, "alg": self.algorithm, "use": "sig"}

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh in-memory key (tests, ephemeral development servers)."""
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> SigningKey:
        """Load the PEM key at ``path``, or create one there (mode 0600, atomically).

        Two processes racing to create the same file end up with one key: the loser of the race
        loads the winner's file instead of overwriting it.
        """
        target = Path(path)
        if target.exists():
            return cls._load(target)
        key = cls.generate()
        if not create_private_file(target, private_pem(key._private)):
            return cls._load(target)
        return key

    @classmethod
    def _load(cls, path: Path) -> SigningKey:
        private = load_private_key(path, "signing key")
        if not isinstance(private, ec.EllipticCurvePrivateKey):
            raise ConfigurationError(f"signing key {path} must be an EC P-256 key")
        return cls(private)

    @property
    def kid(self) -> str:
        """The RFC 7638 thumbprint of the public key: stable across restarts for one key file."""
        return self._kid

    def public_jwk(self) -> dict[str, str]:
        return dict(self._public_jwk)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [self.public_jwk()]}

    def key_set(self) -> KeySet:
        """The public half as a :class:`KeySet`, for verifiers that trust this key."""
        return KeySet.from_jwks(self.jwks())

    def sign(self, claims: Mapping[str, Any], *, typ: str) -> str:
        """Sign ``claims`` as a compact ES256 JWS with ``kid`` and ``typ`` headers (RFC 7515)."""
        return jwt.encode(
            dict(claims),
            self._private,
            algorithm=self.algorithm,
            headers={"kid": self._kid, "typ": typ},
        )

    def __repr__(self) -> str:
        return f"SigningKey(kid={self._kid!r}, alg={self.algorithm!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a SigningKey cannot be pickled")


class KeySet:
    """An immutable set of public verification keys (RFC 7517 JWK Set), selected by ``kid``.

    Also a :class:`~tether.identity.KeySource` that never changes, so a verifier takes a
    static set and a refreshing JWKS URL the same way.
    """

    __slots__ = ("_keys",)

    def __init__(self, keys: tuple[jwt.PyJWK, ...]) -> None:
        if not keys:
            raise ConfigurationError("a key set needs at least one usable public signing key")
        self._keys = keys

    @classmethod
    def from_jwks(cls, data: object) -> KeySet:
        """Build from a parsed JWK Set or SPIFFE bundle; raises ``ConfigurationError``.

        Keys that are not for signatures (SPIFFE ``x509-svid`` authorities, ``use: "enc"``) and
        keys no algorithm in :data:`VERIFY_ALGORITHMS` can use are skipped, as RFC 7517 §5 asks.
        Private or symmetric key material is refused outright.
        """
        if not isinstance(data, Mapping) or not isinstance(data.get("keys"), list):
            raise ConfigurationError('a JWK Set is a JSON object with a "keys" list')
        usable: list[jwt.PyJWK] = []
        for member in data["keys"]:
            if not isinstance(member, dict):
                continue
            if _SECRET_MEMBERS & member.keys() or member.get("kty") == "oct":
                raise ConfigurationError("a trusted key set must hold public keys only")
            if member.get("use", "sig") not in _VERIFY_USES:
                continue
            if member.get("kid") is not None and not isinstance(member.get("kid"), str):
                continue
            try:
                # PyJWK binds the key to one algorithm (the JWK's ``alg``, else the one its
                # ``kty``/``crv`` imply) and refuses a ``kty`` that does not suit it;
                # prepare_key refuses an EC curve other than the algorithm's.
                key = jwt.PyJWK(member)
                public = key.Algorithm.prepare_key(key.key)
                too_short = key.Algorithm.check_key_length(public)
            except (PyJWKError, PyJWTError, ValueError, TypeError, KeyError, NotImplementedError):
                continue
            fits = isinstance(public, _PUBLIC_TYPES.get(key.algorithm_name, ()))
            if fits and too_short is None:
                usable.append(key)
        return cls(tuple(usable))

    def select(self, kid: str | None, algorithm: str) -> jwt.PyJWK | None:
        """The key for a token with header ``kid`` and ``alg``, or ``None``.

        A named ``kid`` must match a key's ``kid``. A token without ``kid`` (or naming one when
        the set's only key has none) may use the set's single key. The key must be bound to the
        algorithm: this is what keeps an RSA or EC public key from being used as an HMAC secret.
        """
        candidates = [k for k in self._keys if k.algorithm_name == algorithm]
        if kid is not None:
            for key in candidates:
                if key.key_id == kid:
                    return key
        if len(self._keys) == 1 and len(candidates) == 1:
            only = candidates[0]
            if kid is None or only.key_id is None:
                return only
        return None

    def algorithms(self) -> frozenset[str]:
        return frozenset(k.algorithm_name for k in self._keys)

    def kids(self) -> tuple[str | None, ...]:
        return tuple(k.key_id for k in self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[jwt.PyJWK]:
        return iter(self._keys)

    def __repr__(self) -> str:
        return f"KeySet(kids={list(self.kids())!r})"

    # -- KeySource ---------------------------------------------------------------------------

    def current(self, now: datetime) -> KeySet:
        return self

    def refresh(self, now: datetime) -> KeySet | None:
        return None


def load_jwks_file(path: str | os.PathLike[str]) -> KeySet:
    """Load a JWK Set or SPIFFE trust bundle (JSON) from ``path``; raises ``ConfigurationError``."""
    source = Path(path)
    try:
        with source.open("rb") as handle:
            raw = handle.read(_MAX_JWKS_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"cannot read key set {source}: {exc.strerror}") from exc
    if len(raw) > _MAX_JWKS_FILE_BYTES:
        raise ConfigurationError(f"key set {source} is larger than 1 MiB")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ConfigurationError(f"key set {source} is not valid JSON") from exc
    return KeySet.from_jwks(data)


__all__ = ["VERIFY_ALGORITHMS", "KeySet", "SigningKey", "jwk_thumbprint", "load_jwks_file"]
