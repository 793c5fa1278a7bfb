"""A minimal secret store: standing secrets encrypted at rest with Fernet (AES-128-CBC + HMAC).

Layout in the data directory:

    secrets.json        {"version": 1, "secrets": {NAME: {"token": <Fernet token>,
                                                         "updated_at": <ISO 8601>}}}   (0600)
    keys/secrets.key    the Fernet key (0600, created on first use) unless
                        TETHER_SECRETS_KEY holds one (urlsafe base64 of 32 bytes)

Each token encrypts ``{"name": NAME, "value": VALUE}``, and reading checks the name, so a token
copied under another name does not decrypt as that secret. Values come back as
:class:`~tether.core.secret.Secret`: redacted in every repr, revealed only where injected.
Errors name the secret, never its value, and say nothing about why a token failed to decrypt.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from cryptography.fernet import Fernet, InvalidToken

from tether.core.errors import ConfigurationError, ErrorCode, InvalidRequest, NotFound
from tether.core.secret import Secret
from tether.datadir import make_private_dir, prepare_data_dir

KEY_ENV: Final = "TETHER_SECRETS_KEY"
MAX_SECRET_BYTES: Final = 16 * 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def is_valid_secret_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name))


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by the owner only."""
    make_private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


class SecretStore:
    """Named secrets under one data directory; see the module docstring for the layout."""

    def __init__(self, data_dir: Path, environ: Mapping[str, str] | None = None) -> None:
        prepare_data_dir(data_dir)  # private: refused when open to other users
        self._path = data_dir / "secrets.json"
        self._key_path = data_dir / "keys" / "secrets.key"
        self._environ = os.environ if environ is None else environ
        self._fernet: Fernet | None = None

    @property
    def path(self) -> Path:
        return self._path

    def __repr__(self) -> str:
        return f"SecretStore(path={str(self._path)!r})"

    # -- the key -------------------------------------------------------------------------------

    def _cipher(self) -> Fernet:
        if self._fernet is None:
            self._fernet = Fernet(self._key())
        return self._fernet

    def _key(self) -> bytes:
        from_env = self._environ.get(KEY_ENV, "").strip()
        if from_env:
            try:
                Fernet(from_env.encode("ascii"))
            except (ValueError, UnicodeEncodeError):
                raise ConfigurationError(
                    f"{KEY_ENV} is not a Fernet key (urlsafe base64 of 32 bytes); make one with "
                    "python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'"
                ) from None
            return from_env.encode("ascii")
        if self._key_path.exists():
            key = self._key_path.read_bytes().strip()
            try:
                Fernet(key)
            except ValueError:
                raise ConfigurationError(
                    f"{self._key_path} is not a Fernet key; restore it from a backup "
                    "(without it the stored secrets cannot be read)"
                ) from None
            return key
        key = Fernet.generate_key()
        _write_private(self._key_path, key)
        return key

    # -- reading and writing -------------------------------------------------------------------

    def _load(self) -> dict[str, dict[str, str]]:
        if not self._path.exists():
            return {}
        try:
            raw = json.loads(self._path.read_bytes())
            entries = raw["secrets"]
            if raw.get("version") != 1 or not isinstance(entries, dict):
                raise ValueError
            for name, entry in entries.items():
                if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
                    raise ValueError(name)
        except (ValueError, KeyError, TypeError):
            raise ConfigurationError(
                f"{self._path} is not a tether secret store; restore it from a backup"
            ) from None
        return entries

    def names(self) -> list[str]:
        return sorted(self._load())

    def updated_at(self, name: str) -> str | None:
        entry = self._load().get(name)
        return entry.get("updated_at") if entry is not None else None

    def get(self, name: str) -> Secret:
        """The secret called ``name``; ``NotFound`` if there is none."""
        entry = self._load().get(name)
        if entry is None:
            raise NotFound(
                f"no secret named {name!r}; set it with `tether secrets set {name}`",
                code=ErrorCode.NOT_FOUND,
            )
        try:
            plain = json.loads(self._cipher().decrypt(entry["token"].encode("ascii")))
        except (InvalidToken, ValueError, UnicodeError):
            raise ConfigurationError(
                f"secret {name!r} cannot be decrypted with the configured key "
                f"({KEY_ENV} or keys/secrets.key)"
            ) from None
        if not isinstance(plain, dict) or plain.get("name") != name:
            raise ConfigurationError(f"secret {name!r} was stored under another name")
        value = plain.get("value")
        if not isinstance(value, str):
            raise ConfigurationError(f"secret {name!r} is malformed")
        return Secret(value)

    def set(self, name: str, value: Secret, now: datetime | None = None) -> None:
        """Store (or replace) ``name``, encrypted."""
        if not is_valid_secret_name(name):
            raise InvalidRequest(
                "a secret name is 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                "or digit"
            )
        revealed = value.reveal()
        if not revealed or len(revealed.encode()) > MAX_SECRET_BYTES:
            raise InvalidRequest(f"a secret value is 1 to {MAX_SECRET_BYTES} bytes")
        token = self._cipher().encrypt(json.dumps({"name": name, "value": revealed}).encode())
        entries = self._load()
        entries[name] = {
            "token": token.decode("ascii"),
            "updated_at": (now or datetime.now(UTC)).isoformat(),
        }
        self._save(entries)

    def delete(self, name: str) -> bool:
        entries = self._load()
        if entries.pop(name, None) is None:
            return False
        self._save(entries)
        return True

    def _save(self, entries: dict[str, dict[str, str]]) -> None:
        body = {"version": 1, "secrets": dict(sorted(entries.items()))}
        _write_private(self._path, json.dumps(body, indent=2).encode() + b"\n")
