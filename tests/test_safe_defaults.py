"""Safe defaults a new operator gets without asking: a private data directory, no example
policies in production, approver tokens that are never replaced by accident."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tether.cli.main import app
from tether.core.errors import ConfigurationError, ErrorCode, InvalidRequest, Unauthenticated
from tether.identity import SigningKey
from tether.identity.approvers import StaticApprovers
from tether.runtime import RuntimeConfig, approver_registry, open_runtime, packaged_policies
from tether.service.clock import ManualClock

runner = CliRunner()


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The umask most shells have (022): files tether does not restrict come out 0644."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def everything_under(root: Path) -> list[Path]:
    return [root, *sorted(root.rglob("*"))]


# -- item 8: the data directory is private -------------------------------------------------------


def test_a_new_data_directory_and_everything_in_it_is_private(
    tmp_path: Path, clock: ManualClock, loose_umask: None
) -> None:
    data = tmp_path / "fresh" / "data"  # parents missing too
    runtime = open_runtime(
        RuntimeConfig(data_dir=data, policy_dir=packaged_policies(), environ={}), clock=clock
    )
    try:
        runtime.approvers.add("alice")
        runtime.store.ping()
        names = {p.name for p in data.iterdir()}
        # SQLite's write-ahead log and shared memory exist while the store is open.
        assert {"tether.db", "tether.db-wal", "tether.db-shm", "approvers.json"} <= names
        assert {p.name for p in (data / "keys").iterdir()} >= {
            "grant-signing.pem",
            "audit-hmac.key",
            "lease-signing.pem",
            "dev-issuer.pem",
        }
        for path in everything_under(data):
            expected = 0o700 if path.is_dir() else 0o600
            assert mode(path) == expected, f"{path} is {mode(path):04o}"
        assert mode(data.parent) == 0o700  # a parent tether had to create is private as well
    finally:
        runtime.close()


@pytest.mark.parametrize("loose", [0o755, 0o750, 0o711, 0o705])
def test_a_data_directory_open_to_other_users_is_refused_with_the_fix(
    tmp_path: Path, clock: ManualClock, loose: int
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(loose)
    with pytest.raises(ConfigurationError) as caught:
        open_runtime(RuntimeConfig(data_dir=data, environ={}), clock=clock)
    assert f"chmod 700 {data}" in caught.value.message
    assert "--fix-permissions" in caught.value.message
    assert not (data / "tether.db").exists()  # nothing was written into it
    assert mode(data) == loose


def test_fix_permissions_tightens_the_directory_and_what_it_holds(
    tmp_path: Path, clock: ManualClock, loose_umask: None
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    old_db = data / "tether.db"
    old_db.touch()
    old_db.chmod(0o644)  # as an older tether left it
    (data / "keys").mkdir()
    (data / "keys").chmod(0o755)
    runtime = open_runtime(
        RuntimeConfig(data_dir=data, environ={}, fix_permissions=True), clock=clock
    )
    try:
        for path in everything_under(data):
            assert mode(path) & 0o077 == 0, f"{path} is {mode(path):04o}"
        assert mode(data) == 0o700 and mode(old_db) == 0o600
    finally:
        runtime.close()


def tether_serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run ``tether serve`` as an operator would; it must exit on its own (a server that
    starts instead is stopped by the timeout, failing the test)."""
    result = subprocess.run(
        [sys.executable, "-m", "tether", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "300", "HOME": str(tmp_path), **(env or {})},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_serve_refuses_a_loose_data_directory_before_listening(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    output = tether_serve(tmp_path, "--data-dir", str(data))
    assert "configuration_error" in output and f"chmod 700 {data}" in output


def test_other_commands_refuse_a_loose_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o750)
    for command in (["approvers", "add", "alice"], ["db", "upgrade"]):
        result = runner.invoke(app, [*command, "--data-dir", str(data)])
        assert result.exit_code == 2, (command, result.output)
        assert f"chmod 700 {data}" in result.output, command
    assert list(data.iterdir()) == []


def test_a_signing_key_created_alone_makes_its_directories_private(
    tmp_path: Path, loose_umask: None
) -> None:
    key_file = tmp_path / "new" / "keys" / "grant-signing.pem"
    SigningKey.load_or_create(key_file)
    assert mode(tmp_path / "new") == 0o700
    assert mode(key_file.parent) == 0o700 and mode(key_file) == 0o600


# -- item 13: production refuses the bundled example policies -------------------------------------


def production_config(tmp_path: Path, **extra: object) -> RuntimeConfig:
    bundle = tmp_path / "bundle.jwks"
    bundle.write_text(json.dumps(SigningKey.generate().jwks()))
    return RuntimeConfig(
        data_dir=tmp_path / "data",
        environ={"TETHER_ENV": "production"},
        trust_bundle=bundle,
        **extra,  # type: ignore[arg-type]
    )


def test_production_refuses_to_start_on_the_example_policies(
    tmp_path: Path, clock: ManualClock
) -> None:
    for config in (
        production_config(tmp_path),
        production_config(tmp_path, policy_dir=packaged_policies()),
    ):
        with pytest.raises(ConfigurationError) as caught:
            open_runtime(config, clock=clock)
        assert "--policies" in caught.value.message
        assert "TETHER_ENV=production" in caught.value.message


def test_production_starts_on_an_explicit_policy_directory(
    tmp_path: Path, clock: ManualClock
) -> None:
    own = tmp_path / "policies"
    shutil.copytree(packaged_policies(), own)  # the operator's own copy, reviewed and edited
    runtime = open_runtime(production_config(tmp_path, policy_dir=own), clock=clock)
    runtime.close()


def test_tether_serve_in_production_without_policies_exits_with_the_reason(
    tmp_path: Path,
) -> None:
    config = production_config(tmp_path)
    output = tether_serve(
        tmp_path,
        "--data-dir",
        str(config.data_dir),
        "--trust-bundle",
        str(config.trust_bundle),
        env={"TETHER_ENV": "production"},
    )
    assert "needs your own policy directory" in output and "--policies DIR" in output


# -- item 16: adding an approver never replaces one by accident ----------------------------------


def token_of(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("tap_"))


def test_approvers_add_refuses_an_existing_name_unless_rotate(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = runner.invoke(app, ["approvers", "add", "alice", "--data-dir", str(data)])
    assert first.exit_code == 0, first.output
    original = token_of(first.output)

    again = runner.invoke(app, ["approvers", "add", "alice", "--data-dir", str(data)])
    assert again.exit_code == 2
    assert "approver 'alice' already exists" in again.output
    assert "tether approvers add alice --rotate" in again.output
    assert "tap_" not in again.output
    assert approver_registry(data).verify(original).name == "alice"  # still works

    rotated = runner.invoke(app, ["approvers", "add", "alice", "--rotate", "--data-dir", str(data)])
    assert rotated.exit_code == 0, rotated.output
    assert "the old one no longer works" in rotated.output
    fresh = token_of(rotated.output)
    registry = approver_registry(data)
    assert registry.verify(fresh).name == "alice"
    with pytest.raises(Unauthenticated):
        registry.verify(original)

    typo = runner.invoke(app, ["approvers", "add", "alcie", "--rotate", "--data-dir", str(data)])
    assert typo.exit_code == 2 and "no approver 'alcie' to rotate" in typo.output
    assert approver_registry(data).names == ["alice"]


def test_the_registry_refuses_a_name_another_process_added(tmp_path: Path) -> None:
    path = tmp_path / "approvers.json"
    mine, theirs = StaticApprovers(path), StaticApprovers(path)
    token = theirs.add("bob")
    with pytest.raises(InvalidRequest) as caught:
        mine.add("bob")  # its view predates the other process's add
    assert caught.value.code is ErrorCode.INVALID_FIELD
    assert StaticApprovers(path).verify(token).name == "bob"
