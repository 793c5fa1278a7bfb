"""The key that signs audit checkpoints (:mod:`tether.core.checkpoint`): Ed25519 (RFC 8032).

It lives in the data directory (``keys/audit-checkpoint.pem``, 0600), never in the database: the
point of a checkpoint is that whoever can write the store cannot sign one. Its public half
(``tether audit public-key``) is what auditors and witnesses verify with; its ``key_id`` is the
RFC 7638 thumbprint of its JWK (RFC 8037 ``OKP``/``Ed25519``).
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwt.algorithms import OKPAlgorithm

from tether.core.checkpoint import Checkpoint, Signer
from tether.core.errors import ConfigurationError
from tether.identity.keys import create_private_file, jwk_thumbprint, load_private_key, private_pem

KEY_FILE = Path("keys") / "audit-checkpoint.pem"
"""Where the key lives, relative to the data directory."""

_MAX_PUBLIC_KEY_FILE = 16 * 1024


def _key_id(public: ed25519.Ed25519PublicKey) -> str:
    return jwk_thumbprint(OKPAlgorithm.to_jwk(public, as_dict=True))


class CheckpointPublicKey:
    """Verifies checkpoints; built from the private key or from a PEM public key file."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key: ed25519.Ed25519PublicKey) -> None:
        self._key = key
        self.key_id = _key_id(key)

    @classmethod
    def from_file(cls, path: Path) -> CheckpointPublicKey:
        """A PEM ``PUBLIC KEY`` (or the private key file itself); ``ConfigurationError``."""
        try:
            with path.open("rb") as handle:
                data = handle.read(_MAX_PUBLIC_KEY_FILE + 1)
        except OSError as exc:
            raise ConfigurationError(f"cannot read public key {path}: {exc.strerror}") from exc
        if b"PRIVATE KEY" in data:
            return CheckpointKey.load(path).public()
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            key = None
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise ConfigurationError(
                f"{path} is not an Ed25519 public key in PEM (get it with `tether audit "
                "public-key`)"
            )
        return cls(key)

    def pem(self) -> str:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def verifies(self, checkpoint: Checkpoint) -> bool:
        """True when this key signed ``checkpoint`` as it stands."""
        if checkpoint.key_id != self.key_id:
            return False
        try:
            self._key.verify(checkpoint.signature_bytes(), checkpoint.message())
        except (InvalidSignature, ValueError):
            return False
        return True

    def __repr__(self) -> str:
        return f"CheckpointPublicKey(key_id={self.key_id!r})"


class CheckpointKey:
    """The Ed25519 private key; never in a repr or a pickle."""

    __slots__ = ("_private", "_public")

    def __init__(self, private: ed25519.Ed25519PrivateKey) -> None:
        self._private = private
        self._public = CheckpointPublicKey(private.public_key())

    @classmethod
    def path_in(cls, data_dir: Path) -> Path:
        return data_dir / KEY_FILE

    @classmethod
    def load_or_create(cls, path: Path) -> CheckpointKey:
        """The key at ``path``, or a new one written there (0600, without clobbering)."""
        if path.exists():
            return cls.load(path)
        key = cls(ed25519.Ed25519PrivateKey.generate())
        return key if create_private_file(path, private_pem(key._private)) else cls.load(path)

    @classmethod
    def load(cls, path: Path) -> CheckpointKey:
        private = load_private_key(path, "audit checkpoint key")
        if not isinstance(private, ed25519.Ed25519PrivateKey):
            raise ConfigurationError(f"audit checkpoint key {path} must be an Ed25519 key")
        return cls(private)

    @property
    def key_id(self) -> str:
        return self._public.key_id

    def public(self) -> CheckpointPublicKey:
        return self._public

    def signer(self) -> Signer:
        return Signer(self.key_id, self._private.sign)

    def __repr__(self) -> str:
        return f"CheckpointKey(key_id={self.key_id!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a CheckpointKey cannot be pickled")


__all__ = ["KEY_FILE", "CheckpointKey", "CheckpointPublicKey"]
