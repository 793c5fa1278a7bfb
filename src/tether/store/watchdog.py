"""A client-side deadline on PostgreSQL connections, for a server that stops answering.

The server's own limits (``statement_timeout``, ``lock_timeout``) need a server that runs; TCP
keepalives and ``tcp_user_timeout`` need a peer that is gone. A server that is alive at the TCP
level but never answers (its process frozen, its storage stalled, its VM paused) would hold a call
forever: the kernel still acknowledges every byte. So each store call on PostgreSQL runs under a
:class:`Watchdog` guard; when the deadline passes, the watchdog shuts the connection's socket down
(``shutdown(2)``, which wakes the thread waiting on it). The driver sees the connection closed, the
pool discards it, and the store raises ``Unavailable``: the caller denies instead of hanging.

The deadline sits beyond the server's own limits, so a server that runs always answers first with
its own, clearer error; the watchdog only acts when nothing else can. As with any connection lost
mid-call, a ``COMMIT`` already sent may still have taken effect: the caller sees ``Unavailable`` and
denies, and the audit log holds whatever did commit, whole.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any


class Watchdog:
    """Severs connections whose guarded call outlives ``limit``. Safe to share between threads.

    One daemon thread per watchdog, started on first use and stopped by :meth:`close`.
    """

    def __init__(self, limit: timedelta) -> None:
        self._limit = limit.total_seconds()
        self._cond = threading.Condition()
        self._watched: dict[int, tuple[float, Any]] = {}
        self._next = 0
        self._thread: threading.Thread | None = None
        self._closed = False
        self._wake_at = 0.0  # when the thread next looks; it need not be woken before then

    @contextmanager
    def guard(self, dbapi_connection: Any, limit: timedelta | None = None) -> Iterator[None]:
        """Watch ``dbapi_connection`` (a psycopg connection) until the block ends."""
        seconds = self._limit if limit is None else limit.total_seconds()
        with self._cond:
            self._ensure_thread()
            token = self._next
            self._next += 1
            deadline = time.monotonic() + seconds
            self._watched[token] = (deadline, dbapi_connection)
            if deadline < self._wake_at:
                self._cond.notify()
        try:
            yield
        finally:
            # Under the lock: once this returns, the connection is never severed on our account,
            # so it can go back to the pool and to another caller.
            with self._cond:
                self._watched.pop(token, None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._watched.clear()
            self._cond.notify()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(
                target=self._run, name="tether-store-watchdog", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                for token, (deadline, conn) in list(self._watched.items()):
                    if deadline <= now:
                        del self._watched[token]
                        sever(conn)
                self._wake_at = min((d for d, _ in self._watched.values()), default=now + 60)
                self._cond.wait(timeout=max(self._wake_at - now, 0.01))


def sever(dbapi_connection: Any) -> None:
    """Shut down the connection's socket so whoever waits on it wakes up with an error."""
    try:
        fd = dbapi_connection.pgconn.socket
    except Exception:
        return  # already closed: nothing waits on it
    try:
        # A duplicate descriptor for the same socket: shutdown acts on the socket itself, and
        # closing the duplicate leaves the driver's descriptor for the driver to close.
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
