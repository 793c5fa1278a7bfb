"""Which audit partition a replica appends to: its configured replica id, else ``0`` on SQLite,
else a name stable per host and data directory (so a restart goes on with its own chain)."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tether.core.errors import ConfigurationError
from tether.datadir import hold_first_free
from tether.runtime import _partition_slots, open_store, replica_partition

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


def test_processes_of_one_data_directory_never_share_a_default_partition(
    tmp_path: Path, store_url: str
) -> None:
    """Two replicas on one host and data directory (or two workers of one) each get a chain of
    their own; a name comes free when its holder closes, and is used again."""
    base = replica_partition(tmp_path, store_url, None)
    first = open_store(tmp_path, store_url)
    second = open_store(tmp_path, store_url)
    try:
        assert (first.db.partition, second.db.partition) == (base, f"{base}.1")
        first.close()
        again = open_store(tmp_path, store_url)
        try:
            assert again.db.partition == base
        finally:
            again.close()
    finally:
        first.close()
        second.close()


def test_a_named_replica_shares_its_partition_unless_each_process_asks_for_its_own(
    tmp_path: Path, store_url: str
) -> None:
    named = [open_store(tmp_path, store_url, replica_id="web-1") for _ in range(2)]
    workers = [
        open_store(tmp_path, store_url, replica_id="web-1", own_partition=True) for _ in range(2)
    ]
    try:
        assert [s.db.partition for s in named] == ["web-1", "web-1"]
        assert [s.db.partition for s in workers] == ["web-1", "web-1.1"]
    finally:
        for store in named + workers:
            store.close()


def test_a_name_held_by_a_killed_process_comes_free(tmp_path: Path) -> None:
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, pathlib; from tether.datadir import hold_first_free;"
            f"held = hold_first_free(pathlib.Path({str(run)!r}), ['a', 'b']); print('held', flush=True);"
            "sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        name, held = hold_first_free(run, ["a", "b"])
        assert name == "b"
        held.close()
        holder.kill()
        holder.wait(timeout=10)
        name, held = hold_first_free(run, ["a", "b"])
        assert name == "a"
        held.close()
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert stat.S_IMODE((run / "a.lock").stat().st_mode) == 0o600


def test_every_name_held_is_a_clear_error(tmp_path: Path) -> None:
    _, held = hold_first_free(tmp_path, ["only"])
    try:
        with pytest.raises(ConfigurationError, match="held by running processes"):
            hold_first_free(tmp_path, ["only"])
    finally:
        held.close()


def test_a_long_name_gets_slot_numbers_within_the_partition_limit() -> None:
    slots = list(_partition_slots("w" * 64, 12))
    assert slots[0] == "w" * 64 and slots[11] == "w" * 61 + ".11"
    assert all(len(s) <= 64 for s in slots) and len(set(slots)) == 12
