"""The in-process part of the grant cache: a bounded LRU of active grants and open tasks, and
the bookkeeping that says when it may be trusted.

It knows nothing of Redis. :mod:`tether.cache.fanout` tells it what other replicas changed
(:meth:`GrantCache.apply`), when it lost them (:meth:`GrantCache.desync`) and when it is back in
step (:meth:`GrantCache.resync`); :class:`tether.cache.store.CachedStore` reads and fills it.

Two numbers keep it honest:

- ``applied``: the last invalidation *epoch* this replica has applied. Every invalidation a replica
  publishes increments one shared counter in Redis; a reader compares the counter with
  ``applied`` (:meth:`GrantCache.ticket`) and uses the cache only when they are equal, i.e. when
  every invalidation published before the read began has been applied here.
- ``generation``: bumped by every drop, flush, resync and applied event. A reader that missed
  takes the generation *before* it reads the database and stores what it read only if the
  generation has not moved since (:meth:`GrantCache.put_grant`). A revocation that committed
  while the read was in flight was either seen by the read, or its invalidation moved the
  generation and the stale row is thrown away, or its invalidation arrives later and drops it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from tether.core.ids import GrantId, TaskId
from tether.core.task import Grant, GrantState, Task, TaskState

DEFAULT_CAPACITY: Final = 10_000
#: Half the one-second revocation bound: a write no replica heard of (a process that died between
#: its commit and its publish, SQL run by hand) is still refused everywhere within a second.
DEFAULT_MAX_AGE: Final = timedelta(milliseconds=500)


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters since the cache was made; for tests, benchmarks and operators."""

    #: Reads answered from the cache.
    hits: int
    #: Reads that could use the cache but did not find a fresh entry (and read the database).
    misses: int
    #: Reads that went to the database because the cache could not be trusted (Redis down,
    #: unhealthy, or an invalidation published and not yet applied here).
    bypasses: int
    #: Times the whole cache was emptied.
    flushes: int
    #: Invalidations this replica published, and those it could not publish.
    published: int
    publish_failures: int
    #: Grants and tasks held now.
    size: int


@dataclass(frozen=True, slots=True)
class _Entry:
    value: Grant | Task
    #: When the database read it came from *started*, on the injected clock.
    read_at: datetime


_Key = tuple[str, str]  # ("g", grant_id) | ("t", task_id)


class GrantCache:
    """Active grants and open tasks, least recently used evicted first. Safe between threads."""

    def __init__(
        self, *, capacity: int = DEFAULT_CAPACITY, max_age: timedelta = DEFAULT_MAX_AGE
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if max_age <= timedelta(0):
            raise ValueError("max_age must be positive")
        self._capacity = capacity
        self._max_age = max_age
        self._lock = threading.Lock()
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()
        #: task id -> the cached grants of that task, to drop them with it.
        self._grants_of: dict[str, set[str]] = {}
        self._generation = 0
        self._synced = False
        self._applied: int | None = None
        self._hits = self._misses = self._bypasses = self._flushes = 0
        self._published = self._publish_failures = 0

    # -- readers ---------------------------------------------------------------------------

    def ticket(self, epoch: int | None) -> int | None:
        """The generation to fill the cache under, or ``None`` when it must not be used: not in
        step with Redis, or ``epoch`` (the shared counter, just read) is not the last one
        applied here."""
        with self._lock:
            if self._synced and epoch == self._applied:
                return self._generation
            self._bypasses += 1
            return None

    def bypassed(self) -> None:
        with self._lock:
            self._bypasses += 1

    def grant(self, grant_id: GrantId, now: datetime) -> Grant | None:
        found = self._fresh(("g", grant_id), now)
        return found if isinstance(found, Grant) else None

    def task(self, task_id: TaskId, now: datetime) -> Task | None:
        found = self._fresh(("t", task_id), now)
        return found if isinstance(found, Task) else None

    def put_grant(self, grant: Grant, read_at: datetime, generation: int) -> None:
        """Keep ``grant`` if it is active and nothing was invalidated since ``generation``."""
        if grant.state is GrantState.ACTIVE:
            self._put(("g", grant.grant_id), _Entry(grant, read_at), generation, grant.task_id)

    def put_task(self, task: Task, read_at: datetime, generation: int) -> None:
        """Keep ``task`` if it is open and nothing was invalidated since ``generation``."""
        if task.state is TaskState.OPEN:
            self._put(("t", task.task_id), _Entry(task, read_at), generation, None)

    # -- invalidation ----------------------------------------------------------------------

    def drop_tasks(self, task_ids: Iterable[str]) -> None:
        """Forget these tasks and every grant of theirs (a local write ended or changed them)."""
        with self._lock:
            self._drop_locked(task_ids)

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def apply(self, epoch: int, task_ids: tuple[str, ...] | None) -> None:
        """Apply invalidation ``epoch`` from the fan-out: drop ``task_ids`` (``None``: all).

        Only the event right after the last one applied is applied by its ids; anything else (a
        gap: events were lost; a counter that restarted) empties the cache, which is always safe.
        """
        with self._lock:
            if task_ids is not None and self._applied is not None and epoch == self._applied + 1:
                self._drop_locked(task_ids)
            else:
                self._flush_locked()
            self._applied = epoch

    def desync(self) -> None:
        """The fan-out is down: events may be missed from now on. Empty, and stop serving."""
        with self._lock:
            if self._synced or self._entries:
                self._flush_locked()
            self._synced = False
            self._applied = None

    def resync(self, epoch: int | None) -> None:
        """The fan-out is subscribed again and the shared counter reads ``epoch``: anything
        cached before may have missed events, so empty the cache, then serve from it again."""
        with self._lock:
            self._flush_locked()
            self._applied = epoch
            self._synced = True

    # -- counters --------------------------------------------------------------------------

    def count_publish(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self._published += 1
            else:
                self._publish_failures += 1

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                bypasses=self._bypasses,
                flushes=self._flushes,
                published=self._published,
                publish_failures=self._publish_failures,
                size=len(self._entries),
            )

    # -- plumbing --------------------------------------------------------------------------

    def _fresh(self, key: _Key, now: datetime) -> Grant | Task | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                age = now - entry.read_at
                # A clock that went backwards makes the age negative: treat it as stale.
                if timedelta(0) <= age < self._max_age:
                    self._entries.move_to_end(key)
                    self._hits += 1
                    return entry.value
                self._remove_locked(key)
            self._misses += 1
            return None

    def _put(self, key: _Key, entry: _Entry, generation: int, task_id: str | None) -> None:
        with self._lock:
            # INVARIANT: nothing read before an invalidation is stored after it.
            if generation != self._generation or not self._synced:
                return
            self._entries[key] = entry
            self._entries.move_to_end(key)
            if task_id is not None:
                self._grants_of.setdefault(task_id, set()).add(key[1])
            while len(self._entries) > self._capacity:
                oldest = next(iter(self._entries))
                self._remove_locked(oldest)

    def _remove_locked(self, key: _Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None and key[0] == "g" and isinstance(entry.value, Grant):
            grants = self._grants_of.get(entry.value.task_id)
            if grants is not None:
                grants.discard(key[1])
                if not grants:
                    del self._grants_of[entry.value.task_id]

    def _drop_locked(self, task_ids: Iterable[str]) -> None:
        self._generation += 1
        for task_id in task_ids:
            self._entries.pop(("t", task_id), None)
            for grant_id in self._grants_of.pop(task_id, set()):
                self._entries.pop(("g", grant_id), None)

    def _flush_locked(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._grants_of.clear()
        self._flushes += 1
