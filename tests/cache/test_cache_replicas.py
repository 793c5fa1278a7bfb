"""Invariant 1 with the grant cache on: two replicas on one PostgreSQL database and one Redis.

Each test first makes the *other* replica answer the grant from its cache (a hit counter proves
it), then revokes on one replica and asserts the very next call on the other is refused: no
wait, no clock moved. Without the fan-out the other replica would have answered from memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from cache_helpers import cache_of, in_step, warm

from redis_server import RedisServer
from replicas.harness import (
    CRM,
    READ,
    Agents,
    Replica,
    codes,
    open_task,
    replica_config,
    running_replicas,
)
from support import Agent
from tether.core.errors import ConfigurationError
from tether.runtime import open_runtime
from tether.service.clock import ManualClock

REFUSED = {"grant_revoked", "task_not_open"}
TD = "spiffe://tether.local/agent/"
DOCS: dict[str, object] = {"tool": "docs.search", "actions": ["read"], "datasets": ["docs"]}
SEARCH: dict[str, object] = {"tool": "docs.search", "action": "read", "dataset": "docs"}
MAIL_SCOPE: dict[str, object] = {"tool": "email.send", "actions": ["send"]}
MAIL: dict[str, object] = {
    "tool": "email.send",
    "action": "send",
    "args": {"to": "bob@example.com"},
}


def test_a_task_closed_on_one_replica_is_refused_by_the_other_that_had_it_cached(
    pair: list[Replica], agents: Callable[[str], Agents]
) -> None:
    analyst = agents("analyst")
    for n in range(4):
        here, there = n % 2, (n + 1) % 2
        task = open_task(analyst.on[here], [CRM])
        warm(pair[there], analyst.on[there], task["grant"], READ)
        closed = analyst.on[here].close(task["task_id"])
        assert closed.status_code == 200 and closed.json()["state"] == "closed"
        refused = analyst.on[there].authorize(task["grant"], **READ).json()
        assert refused["decision"] == "deny", refused
        assert codes(refused)[0] in REFUSED


def test_closing_a_parent_revokes_a_delegate_cached_on_the_other_replica(
    pair: list[Replica], agents: Callable[[str], Agents]
) -> None:
    a, b = pair
    analyst, helper = agents("analyst"), agents("helper")
    in_step(a, b)
    parent = open_task(analyst.on[0], [DOCS])
    delegated = analyst.on[0].client.post(
        f"/v1/tasks/{parent['task_id']}/delegate",
        json={"grant": parent["grant"], "agent": TD + "helper", "scopes": [DOCS]},
        headers=analyst.on[0].headers,
    )
    assert delegated.status_code == 201, delegated.text
    child = delegated.json()["grant"]
    warm(b, helper.on[1], child, SEARCH)
    # The parent's task is closed on a; the child's grant and task are in b's cache.
    assert analyst.on[0].close(parent["task_id"]).status_code == 200
    refused = helper.on[1].authorize(child, **SEARCH).json()
    assert refused["decision"] == "deny" and codes(refused)[0] in REFUSED, refused


def test_an_agent_revoked_on_one_replica_is_refused_by_the_other_that_had_it_cached(
    pair: list[Replica], agents: Callable[[str], Agents]
) -> None:
    a, b = pair
    analyst = agents("analyst")
    human = {"Authorization": f"Bearer {a.runtime.approvers.add('oncall')}"}
    first, second = open_task(analyst.on[0], [CRM]), open_task(analyst.on[1], [DOCS])
    warm(a, analyst.on[0], first["grant"], READ)
    warm(a, analyst.on[0], second["grant"], SEARCH)
    with b.client() as client:
        revoked = client.post(
            "/v1/agents/revoke",
            json={"agent": TD + "analyst", "reason": "exfiltrating"},
            headers=human,
        )
    assert revoked.status_code == 200, revoked.text
    for grant, call in ((first["grant"], READ), (second["grant"], SEARCH)):
        refused = analyst.on[0].authorize(grant, **call).json()
        assert refused["decision"] == "deny" and codes(refused)[0] in REFUSED, refused


def test_a_label_raised_on_one_replica_is_seen_by_the_other_that_had_the_task_cached(
    pair: list[Replica], agents: Callable[[str], Agents]
) -> None:
    """Data-flow (DESIGN 10): the task's label is task state too; a cached task must not let
    confidential data out through the other replica."""
    analyst = agents("analyst")
    task = open_task(analyst.on[0], [CRM, MAIL_SCOPE])
    warm(pair[1], analyst.on[1], task["grant"], MAIL)  # nothing sensitive read yet: allowed
    assert analyst.on[0].authorize(task["grant"], **READ).json()["decision"] == "allow"
    after = analyst.on[1].authorize(task["grant"], **MAIL).json()
    assert after["decision"] == "approval_required", after
    assert codes(after)[0] == "egress_needs_approval"


def test_without_redis_there_is_no_cache_and_the_next_call_is_refused(
    tmp_path: Path, store_url: str, clock: ManualClock
) -> None:
    """PostgreSQL-only mode: no Redis URL, no grant cache; every read goes to the database."""
    with running_replicas(tmp_path / "data", store_url, clock, 2) as pair:
        assert all(r.runtime.cache is None for r in pair)
        analyst = Agents(pair, "analyst", clock)
        try:
            task = open_task(analyst.on[0], [CRM])
            assert analyst.on[1].authorize(task["grant"], **READ).json()["decision"] == "allow"
            assert analyst.on[0].close(task["task_id"]).status_code == 200
            refused = analyst.on[1].authorize(task["grant"], **READ).json()
            assert refused["decision"] == "deny" and codes(refused)[0] in REFUSED
        finally:
            analyst.close()


def test_the_redis_url_comes_from_the_config_or_the_environment(
    tmp_path: Path, store_url: str, redis_server: RedisServer, clock: ManualClock
) -> None:
    config = replica_config(tmp_path / "data", store_url)
    from_env = open_runtime(
        replace(config, environ={"TETHER_REDIS_URL": redis_server.url()}), clock=clock
    )
    try:
        assert from_env.cache is not None
    finally:
        from_env.close()
    explicit = replica_config(tmp_path / "data", store_url, redis_server.url())
    assert redis_server.url() not in repr(explicit)  # it may carry a password
    none = open_runtime(config, clock=clock)
    try:
        assert none.cache is None
    finally:
        none.close()


def test_a_bad_redis_url_is_refused_without_showing_it(
    tmp_path: Path, store_url: str, clock: ManualClock
) -> None:
    config = replica_config(tmp_path / "data", store_url, "http://user:s3cret@cache:6379/0")
    with pytest.raises(ConfigurationError) as refused:
        open_runtime(config, clock=clock)
    assert "s3cret" not in str(refused.value) and "cache:6379" not in str(refused.value)
    assert "TETHER_REDIS_URL" in str(refused.value)


def test_each_replica_counts_its_own_hits(
    pair: list[Replica], agents: Callable[[str], Agents]
) -> None:
    a, b = pair
    analyst = agents("analyst")
    task = open_task(analyst.on[0], [DOCS])
    before = cache_of(b).stats.hits
    warm(a, analyst.on[0], task["grant"], SEARCH)
    assert cache_of(b).stats.hits == before


def test_no_call_that_starts_after_the_close_returned_is_allowed_while_the_cache_is_busy(
    pair: list[Replica], agents: Callable[[str], Agents]
) -> None:
    """Calls race the revocation on the other replica, filling and reading its cache; a row read
    before the close must never be stored after its invalidation."""
    b = pair[1]
    analyst = agents("analyst")
    task = open_task(analyst.on[0], [DOCS])
    warm(b, analyst.on[1], task["grant"], SEARCH)
    seen: list[tuple[float, str]] = []
    lock = threading.Lock()

    def hammer() -> None:
        with b.client() as client:
            agent = Agent(client, analyst.svid)
            for _ in range(40):
                started = time.monotonic()
                decision = agent.authorize(task["grant"], **SEARCH).json()["decision"]
                with lock:
                    seen.append((started, decision))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    assert analyst.on[0].close(task["task_id"]).status_code == 200
    closed_at = time.monotonic()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive()
    after = [decision for started, decision in seen if started > closed_at]
    assert after and set(after) == {"deny"}, after
