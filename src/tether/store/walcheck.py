"""SQLite's WAL checkpoints, on a thread of their own instead of inside a write's ``COMMIT``.

In WAL mode SQLite copies the log back into the database file (a *checkpoint*, with an
``fsync`` of the file under ``synchronous = NORMAL``) from inside the ``COMMIT`` that takes the
log past 1,000 pages. With the decisions' group commit led by the event loop
(:mod:`tether.store.groupcommit`), that ``COMMIT`` ran on the loop: measured under load, one
every ~2 s stalled every request in flight for 15-20 ms, and a slow ``fsync`` for over 100 ms,
which made the p99.

So a file database's connections in this process are opened with ``wal_autocheckpoint = 0``
and :class:`WalCheckpointer` runs ``PRAGMA wal_checkpoint(PASSIVE)`` on a connection of its
own, from a daemon thread, once :data:`EVERY_COMMITS` writes committed or
:data:`EVERY_SECONDS` passed with any. A passive checkpoint never waits for or blocks a writer
or a reader; SQLite's driver releases the interpreter lock while it runs, so the ``fsync`` holds
up nobody. The log is reset by the next write after a checkpoint that copied all of it.
Other processes on the same file (a CLI command) keep SQLite's own checkpoints, and the last
connection to close checkpoints what is left, as before.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Final

EVERY_COMMITS: Final = 200
"""Commits between checkpoints: a decision's commit writes a few pages, so well under SQLite's
1,000-page default."""
EVERY_SECONDS: Final = 1.0


class WalCheckpointer:
    def __init__(self, path: Path, busy_millis: int) -> None:
        self._path = path
        self._busy_millis = busy_millis
        self._due = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._commits = 0
        self._thread: threading.Thread | None = None
        #: Checkpoints run, and the last failure's type (for tests and logs; never raised).
        self.runs = 0
        self.last_error: str | None = None

    def committed(self) -> None:
        """A write of this process committed (called on every commit: cheap)."""
        self._commits += 1  # racy increments only move when a checkpoint runs
        if self._thread is None:
            self._start()
        if self._commits >= EVERY_COMMITS:
            self._due.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(
                target=self._run, name="tether-wal-checkpoint", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stop.is_set():
                self._due.wait(EVERY_SECONDS)
                self._due.clear()
                if self._stop.is_set() or self._commits == 0:
                    continue
                self._commits = 0
                try:
                    if conn is None:
                        conn = sqlite3.connect(self._path, isolation_level=None)
                        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_millis)}")
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.runs += 1
                except sqlite3.Error as error:
                    # The next commit's checkpoint tries again; SQLite's log stays whole meanwhile.
                    self.last_error = type(error).__name__
                    if conn is not None:
                        conn.close()
                    conn = None
        finally:
            if conn is not None:
                conn.close()

    def close(self) -> None:
        """Stop the thread (its checkpoint in progress finishes first)."""
        self._stop.set()
        self._due.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=30)


__all__ = ["EVERY_COMMITS", "EVERY_SECONDS", "WalCheckpointer"]
