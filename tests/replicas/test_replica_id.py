"""Which audit partition a replica appends to: its configured replica id, else ``0`` on SQLite,
else a name stable per host and data directory (so a restart goes on with its own chain)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.core.errors import ConfigurationError
from tether.runtime import replica_partition

PG = "postgresql://tether@127.0.0.1/tether"


def test_a_configured_replica_id_is_the_partition(tmp_path: Path) -> None:
    assert replica_partition(tmp_path, PG, "web-1") == "web-1"
    assert replica_partition(tmp_path, None, "web-1") == "web-1"
    with pytest.raises(ConfigurationError, match="replica-id"):
        replica_partition(tmp_path, PG, "web 1")


def test_sqlite_without_one_keeps_the_one_legacy_partition(tmp_path: Path) -> None:
    assert replica_partition(tmp_path, None, None) == "0"


def test_postgresql_without_one_names_the_host_and_the_data_directory(tmp_path: Path) -> None:
    first = replica_partition(tmp_path / "a", PG, None)
    assert first == replica_partition(tmp_path / "a", PG, None)  # the same after a restart
    assert first != replica_partition(tmp_path / "b", PG, None)
    assert first != "0"
