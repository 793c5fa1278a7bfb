"""Noticing that a policy directory changed, and a thread that keeps asking.

The engine (:class:`tether.policy.engine.CedarPolicyEngine`) does the reload itself: it builds a
new snapshot off to the side and swaps one reference, keeping the last good snapshot when the new
files do not load. This module supplies what it compares (a :func:`fingerprint` of the
directory's bundle files: name, mtime in ns, size), the value a reload returns
(:class:`ReloadResult`) and :class:`PolicyWatcher`, a daemon thread calling
``check_for_changes()`` every ``interval`` seconds until stopped. Tests call
``check_for_changes()`` or ``reload()`` directly instead of waiting for the thread.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from tether.core.errors import ConfigurationError
from tether.policy.bundle import is_policy_source

Fingerprint = frozenset[tuple[str, int, int]]

_log = structlog.get_logger("tether.policy")


def fingerprint(policy_dir: Path) -> Fingerprint:
    """(name, mtime_ns, size) of each bundle file; empty when the directory cannot be read."""
    entries: set[tuple[str, int, int]] = set()
    try:
        with os.scandir(policy_dir) as it:
            for entry in it:
                if is_policy_source(entry.name) and entry.is_file():
                    st = entry.stat()
                    entries.add((entry.name, st.st_mtime_ns, st.st_size))
    except OSError:
        return frozenset()
    return frozenset(entries)


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What a reload attempt did.

    ``ok`` is false when the new files did not load; ``revision`` is then still the revision in
    force (the last good one) and ``error`` says why. ``changed`` is true when a new revision
    took effect.
    """

    ok: bool
    changed: bool
    revision: str
    policies: int
    error: ConfigurationError | None = None


class Reloadable(Protocol):
    def check_for_changes(self) -> ReloadResult | None: ...


class PolicyWatcher:
    """Calls ``engine.check_for_changes()`` every ``interval`` seconds on a daemon thread."""

    def __init__(self, engine: Reloadable, interval: float = 2.0) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self._engine = engine
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> PolicyWatcher:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="tether-policy-watcher", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> PolicyWatcher:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._engine.check_for_changes()
            except Exception:  # the watcher must outlive any one bad check
                _log.exception("policy.watch_failed")
