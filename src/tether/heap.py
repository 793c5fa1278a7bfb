"""Keeping the garbage collector's full collections off a server's request path (``tether serve``
and ``tether mcp-gateway`` tick a :class:`HeapFreezer` in their housekeeping).

CPython's full (generation 2) collection scans every container object that survived earlier
ones. A running server holds ~170,000 of them (its modules, the app, pydantic's validators,
Cedar's policy set, caches) that never become garbage, and measured under load a full collection
ran every 2-3 s, took ~100 ms with the interpreter lock held, freed nothing and stalled every
request in flight: it made the p99. ``gc.freeze()`` moves the objects alive now to a generation
no collection scans. :class:`HeapFreezer` freezes what survived each full collection (so a
heap that grows while it warms up is caught too), and unfreezes everything every
:data:`THAW_SECONDS` so that a full collection still reclaims any reference cycle that became
garbage after it was frozen (objects without cycles are freed by reference counting anyway).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Final

THAW_SECONDS: Final = 600.0


class HeapFreezer:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._now = clock
        self._seen = _full_collections()
        self._thawed_at = clock()

    def tick(self) -> bool:
        """Freeze what survived a full collection since the last tick; thaw every
        :data:`THAW_SECONDS`. True when it froze."""
        now = self._now()
        if now - self._thawed_at >= THAW_SECONDS:
            gc.unfreeze()
            self._thawed_at = now
            self._seen = _full_collections()
            return False
        full = _full_collections()
        if full == self._seen:
            return False
        self._seen = full
        gc.freeze()
        return True

    def thaw(self) -> None:
        """Unfreeze everything (a server stopping: what it froze is collected as usual)."""
        gc.unfreeze()
        self._thawed_at = self._now()
        self._seen = _full_collections()


def _full_collections() -> int:
    return int(gc.get_stats()[2]["collections"])


__all__ = ["THAW_SECONDS", "HeapFreezer"]
