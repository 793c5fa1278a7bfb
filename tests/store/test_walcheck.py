"""SQLite's WAL checkpoints run on a thread of their own, never inside a write's COMMIT
(:mod:`tether.store.walcheck`)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from tether.core.audit import AuditKind
from tether.core.errors import ErrorCode
from tether.store import SqlStore
from tether.store.walcheck import EVERY_COMMITS

from .conftest import Make


def _until(condition: object, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def _write(store: SqlStore, make: Make, n: int) -> None:
    for _ in range(n):
        store.append_audit(make.entry(AuditKind.DECISION, body={"pad": "x" * 2000}))


def test_commits_leave_the_log_to_the_checkpoint_thread(tmp_path: Path, make: Make) -> None:
    path = tmp_path / "tether.db"
    store = SqlStore.sqlite(path)
    try:
        with store.db.live(ErrorCode.STORE_UNAVAILABLE).connect() as conn:
            (pages,) = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").one()
        assert pages == 0  # no COMMIT of this process checkpoints
        wal = store.db._wal
        assert wal is not None
        before = path.stat().st_size
        _write(store, make, EVERY_COMMITS + 20)
        assert _until(lambda: wal.runs >= 1), wal.last_error
        # The records reached the database file itself: only a checkpoint copies them there.
        assert path.stat().st_size > before + EVERY_COMMITS * 2000
    finally:
        store.close()
    assert wal._thread is not None and not wal._thread.is_alive()


def test_without_the_thread_the_log_would_only_grow(tmp_path: Path, make: Make) -> None:
    """The control: the same writes with the thread stopped leave the database file as it was,
    so the test above sees the thread's work and not SQLite's own checkpoints."""
    path = tmp_path / "tether.db"
    store = SqlStore.sqlite(path)
    try:
        wal = store.db._wal
        assert wal is not None
        wal.close()
        before = path.stat().st_size
        _write(store, make, EVERY_COMMITS + 20)
        assert wal.runs == 0
        assert path.stat().st_size < before + 64 * 1024
        assert (tmp_path / "tether.db-wal").stat().st_size > EVERY_COMMITS * 2000
    finally:
        store.close()
    # The last connection's close checkpoints what is left, as SQLite always does.
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT count(*) FROM audit").fetchone()[0] == EVERY_COMMITS + 20
