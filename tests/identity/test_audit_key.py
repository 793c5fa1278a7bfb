"""The audit checkpoint key: Ed25519, in the data directory, readable by its owner only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tether.core.audit import ChainFormat
from tether.core.errors import ConfigurationError
from tether.core.merkle import Frontier, leaf_hash
from tether.identity.audit_key import CheckpointKey, CheckpointPublicKey


def test_created_0600_loaded_again_and_never_shown(tmp_path: Path) -> None:
    path = CheckpointKey.path_in(tmp_path)
    key = CheckpointKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = CheckpointKey.load_or_create(path)
    assert again.key_id == key.key_id
    assert "PRIVATE" not in repr(key) and key.key_id in repr(key)
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(key)


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    CheckpointKey.load_or_create(path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        CheckpointKey.load(path)


def test_the_public_key_file_verifies_and_a_changed_checkpoint_fails(tmp_path: Path) -> None:
    key = CheckpointKey.load_or_create(tmp_path / "k.pem")
    (tmp_path / "pub.pem").write_text(key.public().pem())
    public = CheckpointPublicKey.from_file(tmp_path / "pub.pem")
    assert public.key_id == key.key_id
    frontier = Frontier().append(leaf_hash(b"x"))
    checkpoint = key.signer().checkpoint(
        ChainFormat.JCS, frontier, "ab" * 32, "2026-01-01T00:00:00+00:00"
    )
    assert public.verifies(checkpoint)
    for field, value in (("size", 2), ("head", "cd" * 32), ("at", "2027-01-01T00:00:00+00:00")):
        changed = type(checkpoint).from_json(checkpoint.to_json() | {field: value})
        assert not public.verifies(changed), field
    assert not public.verifies(type(checkpoint).from_json(checkpoint.to_json() | {"format": 1}))


def test_a_file_that_is_not_an_ed25519_public_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text(
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    )
    with pytest.raises(ConfigurationError, match="not an Ed25519 public key"):
        CheckpointPublicKey.from_file(tmp_path / "junk.pem")
