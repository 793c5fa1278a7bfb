"""The grant cache when Redis fails: stopped, restarted, hung. A replica that cannot trust its
cache reads the database: it still refuses what was revoked and still allows what is valid, and
it uses the cache again only after emptying it once Redis is back (events may have been missed).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from cache_helpers import cache_of, in_step, wait_for, warm

from redis_server import RedisServer
from replicas.harness import CRM, READ, Agents, Replica, codes, open_task, running_replicas
from tether.service.clock import ManualClock

REFUSED = {"grant_revoked", "task_not_open"}


@pytest.fixture
def replicas(
    tmp_path: Path, store_url: str, own_redis: RedisServer, clock: ManualClock
) -> Iterator[tuple[list[Replica], Agents]]:
    with running_replicas(
        tmp_path / "data", store_url, clock, 2, redis_url=own_redis.url()
    ) as pair:
        analyst = Agents(pair, "analyst", clock)
        try:
            yield pair, analyst
        finally:
            analyst.close()


def test_redis_stopped_the_cache_is_bypassed_and_redis_back_it_is_flushed_before_use(
    replicas: tuple[list[Replica], Agents], own_redis: RedisServer
) -> None:
    (a, b), analyst = replicas
    doomed, valid = open_task(analyst.on[0], [CRM]), open_task(analyst.on[0], [CRM])
    warm(b, analyst.on[1], doomed["grant"], READ)
    warm(b, analyst.on[1], valid["grant"], READ)
    cached = cache_of(b).stats

    own_redis.stop()
    # a's close commits; its invalidation cannot be published.
    assert analyst.on[0].close(doomed["task_id"]).status_code == 200
    refused = analyst.on[1].authorize(doomed["grant"], **READ).json()
    assert refused["decision"] == "deny" and codes(refused)[0] in REFUSED, refused
    assert analyst.on[1].authorize(valid["grant"], **READ).json()["decision"] == "allow"
    down = cache_of(b).stats
    assert down.hits == cached.hits  # both answers came from the database
    assert down.bypasses >= cached.bypasses + 2  # one read (grant with task) per call
    assert cache_of(a).stats.publish_failures >= 1
    # The subscriber notices on its own thread and empties the cache.
    wait_for(lambda: cache_of(b).stats.size == 0, "replica b to empty its cache")
    assert not cache_of(b).usable()

    flushes = cache_of(b).stats.flushes
    own_redis.start()  # same port, empty: the counter starts again from a random value
    in_step(b)
    assert cache_of(b).stats.flushes > flushes  # emptied again before it is used
    refused = analyst.on[1].authorize(doomed["grant"], **READ).json()
    assert refused["decision"] == "deny" and codes(refused)[0] in REFUSED
    warm(b, analyst.on[1], valid["grant"], READ)  # and the cache answers again
    # Revocation through the cache works again too.
    assert analyst.on[0].close(valid["task_id"]).status_code == 200
    refused = analyst.on[1].authorize(valid["grant"], **READ).json()
    assert refused["decision"] == "deny" and codes(refused)[0] in REFUSED


def test_a_hung_redis_fails_the_health_check_and_the_cache_is_bypassed(
    replicas: tuple[list[Replica], Agents], own_redis: RedisServer
) -> None:
    """A server that accepts connections but answers nothing (stopped with SIGSTOP): only the
    subscription's PING, overdue, tells it apart from a quiet one."""
    (a, b), analyst = replicas
    task, other = open_task(analyst.on[0], [CRM]), open_task(analyst.on[0], [CRM])
    warm(b, analyst.on[1], task["grant"], READ)
    process = own_redis.process
    assert process is not None
    process.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: cache_of(b).stats.size == 0, "replica b to notice the silence")
        hits = cache_of(b).stats.hits
        assert analyst.on[1].authorize(other["grant"], **READ).json()["decision"] == "allow"
        assert analyst.on[0].close(task["task_id"]).status_code == 200  # cannot publish
        refused = analyst.on[1].authorize(task["grant"], **READ).json()
        assert refused["decision"] == "deny" and codes(refused)[0] in REFUSED
        assert cache_of(b).stats.hits == hits
    finally:
        process.send_signal(signal.SIGCONT)
    in_step(a, b)
    warm(b, analyst.on[1], other["grant"], READ)
