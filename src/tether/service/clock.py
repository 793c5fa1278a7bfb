"""Clocks: the system clock for production, a clock tests move by hand."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class ManualClock:
    """A clock that only moves when told to. Tests use it instead of sleeping."""

    current: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def now(self) -> datetime:
        with self._lock:
            return self.current

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self.current = self.current + timedelta(seconds=seconds)
            return self.current

    def set(self, when: datetime) -> None:
        with self._lock:
            self.current = when
