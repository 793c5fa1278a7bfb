"""A bounded cache of tokens already verified, so a hot path does not re-check a signature.

An entry holds what verifying the token returned and the window of times in which a fresh
verification would succeed on time grounds (``exp``, ``nbf``, ``iat`` and their leeway). Outside
that window the cache misses and the full verification runs again, so an expired token is refused
exactly as before, with the same error. Entries also age out after ``max_age`` seconds, bounding
how long a key removed from a trust bundle keeps vouching for a token it signed. (PyJWT has no
cache of verified tokens; its ``PyJWKClient`` caches keys only.)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Generic, TypeVar

from tether.identity._jose import numeric_date

T = TypeVar("T")


class VerifiedCache(Generic[T]):
    def __init__(self, *, max_entries: int = 4096, max_age: float = 300.0) -> None:
        self._entries: OrderedDict[str, tuple[T, float, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._max_entries = max_entries
        self._max_age = max_age

    def get(self, token: str, now: datetime) -> T | None:
        at = now.timestamp()
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                return None
            value, valid_from, valid_until = entry
            if not valid_from <= at < valid_until:
                del self._entries[token]
                return None
            self._entries.move_to_end(token)
            return value

    def put(
        self,
        token: str,
        value: T,
        claims: Mapping[str, Any],
        now: datetime,
        *,
        leeway: float,
        exp_leeway: float | None = None,
    ) -> None:
        exp = numeric_date(claims, "exp")
        if exp is None:
            return
        starts = [numeric_date(claims, "nbf"), numeric_date(claims, "iat")]
        valid_from = max((float(s) - leeway for s in starts if s is not None), default=0.0)
        until = float(exp) + (leeway if exp_leeway is None else exp_leeway)
        valid_until = min(until, now.timestamp() + self._max_age)
        with self._lock:
            self._entries[token] = (value, valid_from, valid_until)
            self._entries.move_to_end(token)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
