"""``CachedStore``: the service's ``Store`` port with grant and task reads cached per replica.

Every authorize reads the grant and its task (``get_grant``, ``get_task``); on PostgreSQL those two
reads are a large share of the call. This wrapper answers them from an in-process cache
(:mod:`tether.cache.entries`) kept coherent across replicas by Redis (:mod:`tether.cache.fanout`),
and passes every other call to the store it wraps.

A read uses the cache only when (1) the Redis subscription is healthy and (2) the shared
invalidation counter, read from Redis for this very read, equals the last event applied here.
So a revocation whose call returned on any replica before a read began is seen by that read:
its invalidation was counted before the call returned, and until this replica has applied it
every read goes to the database. Otherwise the read goes to the database: Redis down, slow or
behind costs latency, never a wrong answer (fail closed to the source of truth).

Only active grants and open tasks are cached; a revoked grant or ended task is always read from
the database. Decisions are never cached: the policy, scope, budget and data-flow checks run on
every call, against the task's current label and workflow step.

Writes that change grant or task rows invalidate after their commit, here and (through Redis) on
every replica:

- ``end_task``: the task, its grants, and every task delegated from it (their ids are collected
  from the ``cascade`` callback the store calls for each; without one, everything is dropped);
- ``revoke_agent``: every task it ended (the ``end_audit`` and ``cascade`` callbacks) and theirs;
- ``record_decision`` with ``progress``: the task whose data-flow label or workflow step moved.

Opening a task writes new rows only, and nothing else writes grants or tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta

from redis.exceptions import RedisError

from tether.cache.entries import DEFAULT_CAPACITY, DEFAULT_MAX_AGE, CacheStats, GrantCache
from tether.cache.fanout import RedisFanout
from tether.core.approval import Approval
from tether.core.audit import AuditRecord, ChainHead
from tether.core.budget import Hold
from tether.core.effect import Effect
from tether.core.ids import ApprovalId, DecisionId, GrantId, TaskId
from tether.core.scope import ActionKind
from tether.core.task import Grant, Task, TaskState
from tether.service.ports import (
    AuditEntry,
    Clock,
    DecisionRecord,
    DecisionWrite,
    ObservedRows,
    Store,
    TaskActivity,
)


class CachedStore:
    """A :class:`~tether.service.ports.Store` that caches active grants and open tasks.

    Build it with :meth:`over_redis`. ``close`` stops the subscriber and closes the wrapped store.
    """

    def __init__(self, inner: Store, cache: GrantCache, fanout: RedisFanout, clock: Clock) -> None:
        self._inner = inner
        self._cache = cache
        self._fanout = fanout
        self._clock = clock

    @classmethod
    def over_redis(
        cls,
        inner: Store,
        redis_url: str,
        clock: Clock,
        *,
        capacity: int = DEFAULT_CAPACITY,
        max_age: timedelta = DEFAULT_MAX_AGE,
    ) -> CachedStore:
        """Wrap ``inner``, with Redis at ``redis_url`` for the fan-out, and start subscribing.

        Returns at once: until the subscription is up, every read goes to the database.
        ``max_age`` (on ``clock``) bounds how long an entry may be served without a fresh read.
        """
        cache = GrantCache(capacity=capacity, max_age=max_age)
        fanout = RedisFanout(redis_url, cache)
        fanout.start()
        return cls(inner, cache, fanout, clock)

    def __repr__(self) -> str:
        return f"CachedStore({self._inner!r}, {self._fanout!r})"

    @property
    def stats(self) -> CacheStats:
        return self._cache.stats()

    def usable(self) -> bool:
        """Whether a read now could be answered from the cache (subscription healthy, in step)."""
        return self._ticket() is not None

    # -- the cached reads ------------------------------------------------------------------

    def get_grant(self, grant_id: GrantId) -> Grant | None:
        ticket, read_at = self._ticket(), self._clock.now()
        if ticket is not None:
            cached = self._cache.grant(grant_id, read_at)
            if cached is not None:
                return cached
        grant = self._inner.get_grant(grant_id)
        if ticket is not None and grant is not None:
            self._cache.put_grant(grant, read_at, ticket)
        return grant

    def get_task(self, task_id: TaskId) -> Task | None:
        ticket, read_at = self._ticket(), self._clock.now()
        if ticket is not None:
            cached = self._cache.task(task_id, read_at)
            if cached is not None:
                return cached
        task = self._inner.get_task(task_id)
        if ticket is not None and task is not None:
            self._cache.put_task(task, read_at, ticket)
        return task

    def get_grant_with_task(self, grant_id: GrantId) -> tuple[Grant | None, Task | None]:
        ticket, read_at = self._ticket(), self._clock.now()
        if ticket is not None:
            grant = self._cache.grant(grant_id, read_at)
            task = None if grant is None else self._cache.task(TaskId(grant.task_id), read_at)
            if grant is not None and task is not None:
                return grant, task
        grant, task = self._inner.get_grant_with_task(grant_id)
        if ticket is not None:
            if grant is not None:
                self._cache.put_grant(grant, read_at, ticket)
            if task is not None:
                self._cache.put_task(task, read_at, ticket)
        return grant, task

    def _ticket(self) -> int | None:
        """The cache generation a read may use and fill, or ``None`` to go to the database."""
        if not self._fanout.healthy():
            self._cache.bypassed()
            return None
        try:
            epoch = self._fanout.epoch()
        except (RedisError, OSError, ValueError):
            self._cache.bypassed()
            return None
        return self._cache.ticket(epoch)

    # -- writes that end or change grants and tasks ----------------------------------------

    def end_task(
        self,
        task_id: TaskId,
        state: TaskState,
        at: datetime,
        audit: AuditEntry,
        cascade: Callable[[Task], AuditEntry] | None = None,
    ) -> Task | None:
        ended: list[str] = [task_id]
        spy = None if cascade is None else _collecting(cascade, ended)
        try:
            result = self._inner.end_task(task_id, state, at, audit, spy)
        except BaseException:
            # Committed or not is unknown here: invalidate what it may have touched.
            self._invalidate(ended if cascade is not None else None)
            raise
        if result is None:
            self._cache.drop_tasks([task_id])  # it was not open: nothing changed anywhere
        else:
            self._invalidate(ended if cascade is not None else None)
        return result

    def revoke_agent(
        self,
        agent: str,
        at: datetime,
        reason: str,
        by: str,
        audit: AuditEntry,
        end_audit: Callable[[Task], AuditEntry],
        cascade: Callable[[Task], AuditEntry],
    ) -> int:
        ended: list[str] = []
        try:
            return self._inner.revoke_agent(
                agent,
                at,
                reason,
                by,
                audit,
                _collecting(end_audit, ended),
                _collecting(cascade, ended),
            )
        finally:
            if ended:
                self._invalidate(ended)

    def record_decision(self, write: DecisionWrite) -> AuditRecord:
        try:
            return self._inner.record_decision(write)
        finally:
            # The task's data-flow label or workflow step moved: no replica may act on the old.
            if write.progress:
                self._invalidate([moved.task_id for moved in write.progress])

    def _invalidate(self, task_ids: Sequence[str] | None) -> None:
        """Here first, then on every replica; called after the commit (or its failure)."""
        if task_ids is None:
            self._cache.flush()
        else:
            self._cache.drop_tasks(task_ids)
        self._fanout.publish(task_ids)

    # -- everything else passes through ----------------------------------------------------

    def open_task(self, task: Task, grant: Grant, audit: AuditEntry) -> AuditRecord:
        return self._inner.open_task(task, grant, audit)

    def decision_holds(self, decision_id: DecisionId) -> Sequence[tuple[Hold, float | None]]:
        return self._inner.decision_holds(decision_id)

    def get_approval(self, approval_id: ApprovalId) -> Approval | None:
        return self._inner.get_approval(approval_id)

    def list_approvals(self, limit: int = 100) -> Sequence[Approval]:
        return self._inner.list_approvals(limit)

    def find_pending_approval(
        self,
        *,
        agent: str,
        task_id: TaskId,
        tool: str,
        action: ActionKind,
        dataset: str | None,
        args_mac: str,
        now: datetime,
    ) -> Approval | None:
        return self._inner.find_pending_approval(
            agent=agent,
            task_id=task_id,
            tool=tool,
            action=action,
            dataset=dataset,
            args_mac=args_mac,
            now=now,
        )

    def vote_approval(
        self,
        approval_id: ApprovalId,
        apply: Callable[[Approval], Approval],
        audit: Callable[[Approval], AuditEntry],
    ) -> Approval:
        return self._inner.vote_approval(approval_id, apply, audit)

    def task_activity(self, task_id: TaskId) -> TaskActivity:
        return self._inner.task_activity(task_id)

    def restore_agent(self, agent: str, audit: AuditEntry) -> bool:
        return self._inner.restore_agent(agent, audit)

    def is_agent_revoked(self, agent: str) -> bool:
        return self._inner.is_agent_revoked(agent)

    def revoked_agents(self) -> list[tuple[str, datetime, str, str]]:
        return self._inner.revoked_agents()

    def get_decision(self, decision_id: DecisionId) -> DecisionRecord | None:
        return self._inner.get_decision(decision_id)

    def record_effect(
        self, effect: Effect, audit: AuditEntry, observed: ObservedRows | None = None
    ) -> AuditRecord:
        return self._inner.record_effect(effect, audit, observed)

    def get_effect(self, decision_id: DecisionId) -> Effect | None:
        return self._inner.get_effect(decision_id)

    def append_audit(self, audit: AuditEntry) -> AuditRecord:
        return self._inner.append_audit(audit)

    def record_gateway_event(self, gateway: str, event_id: str, audit: AuditEntry) -> AuditRecord:
        return self._inner.record_gateway_event(gateway, event_id, audit)

    def expired_open_tasks(self, now: datetime, limit: int) -> Sequence[Task]:
        return self._inner.expired_open_tasks(now, limit)

    def audit_records(
        self, after_seq: int = 0, partition: str | None = None
    ) -> Iterator[AuditRecord]:
        return self._inner.audit_records(after_seq, partition)

    def chain_head(self) -> ChainHead | None:
        return self._inner.chain_head()

    def chain_heads(self) -> dict[str, ChainHead | None]:
        return self._inner.chain_heads()

    def ping(self) -> None:
        self._inner.ping()

    def close(self) -> None:
        """Stop the subscriber, close Redis connections, then close the wrapped store."""
        try:
            self._fanout.close()
        finally:
            self._inner.close()


def _collecting(
    callback: Callable[[Task], AuditEntry], into: list[str]
) -> Callable[[Task], AuditEntry]:
    """``callback``, noting the id of every task the store ends with it."""

    def noted(task: Task) -> AuditEntry:
        into.append(task.task_id)
        return callback(task)

    return noted
