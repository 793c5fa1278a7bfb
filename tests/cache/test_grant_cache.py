"""The grant cache's own rules, on its parts: the in-process LRU (no Redis), then
``CachedStore`` over a real SQLite store and the session's real Redis, one replica at a time."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from cache_helpers import wait_for

from redis_server import RedisServer
from tether.cache import CachedStore, GrantCache
from tether.cache.fanout import EPOCH_KEY, parse_event
from tether.core.audit import AuditKind
from tether.core.ids import IdFactory, TaskId
from tether.core.scope import ActionKind, Scope
from tether.core.task import Grant, GrantState, Intent, Task, TaskState
from tether.core.verdict import Decision
from tether.service.clock import ManualClock
from tether.service.ports import AuditEntry, DecisionRecord, DecisionWrite, TaskProgress
from tether.store import SqlStore

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
AGENT = "spiffe://tether.local/agent/analyst"
IDS = IdFactory(os.urandom)


def task_and_grant(parent: TaskId | None = None, agent: str = AGENT) -> tuple[Task, Grant]:
    scopes = (Scope.of("crm.query", [ActionKind.READ], ["crm"]),)
    task = Task(
        task_id=IDS.task(),
        agent=agent,
        intent=Intent("support-triage", "answer a question", "user:alice"),
        requested=scopes,
        granted=scopes,
        state=TaskState.OPEN,
        opened_at=T0,
        expires_at=T0 + timedelta(hours=1),
        parent_task_id=parent,
    )
    grant = Grant(
        grant_id=IDS.grant(),
        task_id=task.task_id,
        agent=agent,
        scopes=scopes,
        issued_at=T0,
        expires_at=T0 + timedelta(hours=1),
        state=GrantState.ACTIVE,
        policy_revision="rev-1",
    )
    return task, grant


def entry(kind: AuditKind = AuditKind.TASK_OPENED, task: Task | None = None) -> AuditEntry:
    return AuditEntry(
        record_id=IDS.audit(),
        at=T0,
        kind=kind,
        agent=AGENT,
        task_id=None if task is None else task.task_id,
        body={"note": "test"},
    )


# -- the in-process LRU ----------------------------------------------------------------------


def synced(cache: GrantCache | None = None, epoch: int = 7) -> GrantCache:
    """A cache in step with a fan-out whose counter reads ``epoch``."""
    cache = GrantCache(max_age=timedelta(seconds=1)) if cache is None else cache
    cache.resync(epoch)
    return cache


def ticket(cache: GrantCache, epoch: int = 7) -> int:
    found = cache.ticket(epoch)
    assert found is not None, "the cache should be usable at this epoch"
    return found


def test_nothing_read_before_an_invalidation_is_stored_after_it() -> None:
    cache = synced()
    task, grant = task_and_grant()
    before = ticket(cache)
    cache.drop_tasks(["tsk_unrelated"])  # any invalidation while the read was in flight
    cache.put_grant(grant, T0, before)
    cache.put_task(task, T0, before)
    assert cache.grant(grant.grant_id, T0) is None and cache.task(task.task_id, T0) is None
    cache.put_grant(grant, T0, ticket(cache))
    assert cache.grant(grant.grant_id, T0) == grant


def test_only_active_grants_and_open_tasks_are_kept() -> None:
    cache = synced()
    task, grant = task_and_grant()
    cache.put_grant(replace(grant, state=GrantState.REVOKED), T0, ticket(cache))
    cache.put_task(replace(task, state=TaskState.CLOSED), T0, ticket(cache))
    assert cache.stats().size == 0


def test_an_entry_lives_its_max_age_on_the_injected_clock_and_not_across_a_step_back() -> None:
    cache = synced()
    _, grant = task_and_grant()
    cache.put_grant(grant, T0, ticket(cache))
    assert cache.grant(grant.grant_id, T0 + timedelta(milliseconds=999)) == grant
    assert cache.grant(grant.grant_id, T0 + timedelta(seconds=1)) is None
    cache.put_grant(grant, T0, ticket(cache))
    assert cache.grant(grant.grant_id, T0 - timedelta(seconds=5)) is None


def test_dropping_a_task_drops_its_grants() -> None:
    cache = synced()
    task, grant = task_and_grant()
    other_task, other_grant = task_and_grant()
    for t, g in ((task, grant), (other_task, other_grant)):
        cache.put_task(t, T0, ticket(cache))
        cache.put_grant(g, T0, ticket(cache))
    cache.drop_tasks([task.task_id])
    assert cache.grant(grant.grant_id, T0) is None and cache.task(task.task_id, T0) is None
    assert cache.grant(other_grant.grant_id, T0) == other_grant


def test_events_apply_by_id_in_order_and_anything_else_empties_the_cache() -> None:
    cache = synced(epoch=7)
    (task, grant), (_, other_grant) = task_and_grant(), task_and_grant()

    def fill(epoch: int) -> None:
        for g in (grant, other_grant):
            cache.put_grant(g, T0, ticket(cache, epoch))

    fill(7)
    cache.apply(8, (task.task_id,))  # the next event: applied by its ids
    assert cache.grant(grant.grant_id, T0) is None
    assert cache.grant(other_grant.grant_id, T0) == other_grant
    assert cache.ticket(7) is None  # a reader that sees an older counter must not trust it
    fill(8)
    cache.apply(10, (task.task_id,))  # event 9 was lost: everything goes
    assert cache.stats().size == 0
    fill(10)
    cache.apply(11, None)  # "everything"
    assert cache.stats().size == 0
    assert cache.ticket(12) is None  # published, not applied here yet: go to the database


def test_out_of_step_the_cache_neither_serves_nor_fills() -> None:
    cache = GrantCache()
    assert cache.ticket(None) is None  # never subscribed
    cache.resync(None)  # nobody has published since Redis started
    before = ticket_none(cache)
    cache.desync()
    _, grant = task_and_grant()
    cache.put_grant(grant, T0, before)
    assert cache.stats().size == 0 and cache.ticket(None) is None


def ticket_none(cache: GrantCache) -> int:
    found = cache.ticket(None)
    assert found is not None
    return found


def test_the_least_recently_used_entry_goes_first() -> None:
    cache = synced(GrantCache(capacity=2, max_age=timedelta(seconds=1)))
    grants = [task_and_grant()[1] for _ in range(3)]
    for g in grants[:2]:
        cache.put_grant(g, T0, ticket(cache))
    assert cache.grant(grants[0].grant_id, T0) is not None  # now the most recent
    cache.put_grant(grants[2], T0, ticket(cache))
    assert cache.grant(grants[1].grant_id, T0) is None
    assert cache.grant(grants[0].grant_id, T0) is not None
    assert cache.stats().size == 2


@pytest.mark.parametrize("bad", [b"x {}", b"1 [1]", b"1 {", b'1 {"tasks": [1]}'])
def test_an_unreadable_event_is_refused(bad: bytes) -> None:
    with pytest.raises(ValueError):
        parse_event(bad)


def test_events_name_tasks_or_everything() -> None:
    assert parse_event(b'12 {"tasks": ["tsk_a", "tsk_b"]}') == (12, ("tsk_a", "tsk_b"))
    assert parse_event(b'13 {"all": true}') == (13, None)


# -- CachedStore over a real store and a real Redis --------------------------------------------


@pytest.fixture
def cached(tmp_path: Path, redis_server: RedisServer, clock: ManualClock) -> Iterator[CachedStore]:
    store = CachedStore.over_redis(
        SqlStore.sqlite(tmp_path / "tether.db"), redis_server.url(), clock
    )
    try:
        wait_for(store.usable, "the cache's subscription")
        yield store
    finally:
        store.close()


def read_twice(store: CachedStore, task: Task, grant: Grant) -> None:
    """Read the grant and task until both come from the cache."""
    wait_for(store.usable, "the cache to be in step")
    assert store.get_grant(grant.grant_id) is not None
    assert store.get_task(task.task_id) is not None
    hits = store.stats.hits
    assert store.get_grant(grant.grant_id) is not None
    assert store.get_task(task.task_id) is not None
    assert store.stats.hits == hits + 2


def test_ending_a_task_through_the_cache_ends_it_and_its_delegates_in_the_cache(
    cached: CachedStore,
) -> None:
    parent, parent_grant = task_and_grant()
    child, child_grant = task_and_grant(parent=parent.task_id, agent=AGENT + "-helper")
    for t, g in ((parent, parent_grant), (child, child_grant)):
        cached.open_task(t, g, entry(task=t))
        read_twice(cached, t, g)
    ended = cached.end_task(
        parent.task_id,
        TaskState.CLOSED,
        T0,
        entry(AuditKind.TASK_CLOSED, parent),
        lambda t: entry(AuditKind.TASK_REVOKED, t),
    )
    assert ended is not None
    # On this replica at once, before its own event comes back from Redis.
    assert cached.get_grant(child_grant.grant_id) == replace(child_grant, state=GrantState.REVOKED)
    got = cached.get_task(child.task_id)
    assert got is not None and got.state is TaskState.REVOKED
    assert cached.stats.published == 1


def test_ending_a_task_without_a_cascade_callback_empties_the_whole_cache(
    cached: CachedStore,
) -> None:
    task, grant = task_and_grant()
    other, other_grant = task_and_grant()
    for t, g in ((task, grant), (other, other_grant)):
        cached.open_task(t, g, entry(task=t))
        read_twice(cached, t, g)
    assert cached.end_task(task.task_id, TaskState.CLOSED, T0, entry(AuditKind.TASK_CLOSED, task))
    assert cached.stats.size == 0


def test_a_moved_label_is_read_fresh(cached: CachedStore) -> None:
    task, grant = task_and_grant()
    cached.open_task(task, grant, entry(task=task))
    read_twice(cached, task, grant)
    decision = DecisionRecord(
        decision_id=IDS.decision(),
        task_id=task.task_id,
        grant_id=grant.grant_id,
        agent=AGENT,
        tool="crm.query",
        action=ActionKind.READ,
        dataset="crm",
        decision=Decision.ALLOW,
        decided_at=T0,
    )
    cached.record_decision(
        DecisionWrite(
            decision,
            entry(AuditKind.DECISION, task),
            progress=(TaskProgress(task.task_id, "confidential", None),),
        ),
    )
    got = cached.get_task(task.task_id)
    assert got is not None and got.label == "confidential"


def test_a_revoked_agent_s_tasks_are_read_fresh(cached: CachedStore) -> None:
    task, grant = task_and_grant()
    cached.open_task(task, grant, entry(task=task))
    read_twice(cached, task, grant)
    ended = cached.revoke_agent(
        AGENT,
        T0,
        "test",
        "operator:test",
        entry(AuditKind.AGENT_REVOKED),
        lambda t: entry(AuditKind.TASK_REVOKED, t),
        lambda t: entry(AuditKind.TASK_REVOKED, t),
    )
    assert ended == 1
    got = cached.get_grant(grant.grant_id)
    assert got is not None and got.state is GrantState.REVOKED


def test_a_counter_that_starts_again_empties_the_cache(
    cached: CachedStore, redis_server: RedisServer
) -> None:
    """What a restarted or evicting Redis does to the counter: the next event does not follow
    the last one applied, so the subscriber cannot know what it missed and empties the cache."""
    task, grant = task_and_grant()
    cached.open_task(task, grant, entry(task=task))
    read_twice(cached, task, grant)
    flushes = cached.stats.flushes
    with redis.Redis.from_url(redis_server.url()) as admin:
        admin.delete(EPOCH_KEY)
    assert not cached.usable()  # the counter no longer matches: reads go to the database
    assert (
        cached.end_task(TaskId("tsk_unknown"), TaskState.CLOSED, T0, entry(AuditKind.TASK_CLOSED))
        is None
    )  # nothing ended: nothing published
    other, other_grant = task_and_grant()
    cached.open_task(other, other_grant, entry(task=other))
    cached.end_task(
        other.task_id, TaskState.CLOSED, T0, entry(AuditKind.TASK_CLOSED, other), lambda t: entry()
    )
    wait_for(cached.usable, "the cache to follow the new counter")
    assert cached.stats.flushes > flushes
    read_twice(cached, task, grant)
