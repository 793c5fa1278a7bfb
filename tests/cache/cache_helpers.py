"""Helpers for the grant cache tests: reach a replica's cache, wait for its subscription, and
prove that it answers a grant's calls from memory."""

from __future__ import annotations

import time
from collections.abc import Callable

from replicas.harness import Replica
from support import Agent
from tether.cache import CachedStore

#: Bound on waiting for a real socket: Redis's subscription to come up or to notice it is gone.
SOCKET_WAIT = 15.0


def cache_of(replica: Replica) -> CachedStore:
    cache = replica.runtime.cache
    assert cache is not None, f"replica {replica.name} has no grant cache"
    return cache


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds: a subscription is a real socket, and it comes up, gets
    its messages and notices a dead server on its own thread, in real time."""
    deadline = time.monotonic() + SOCKET_WAIT
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def in_step(*replicas: Replica) -> None:
    """Wait until each replica's cache may answer: subscribed, and every invalidation published
    so far applied."""
    for replica in replicas:
        wait_for(cache_of(replica).usable, f"replica {replica.name}'s cache to be in step")


def warm(replica: Replica, agent: Agent, grant: str, call: dict[str, object]) -> None:
    """Call ``replica`` with ``grant`` until a call is answered from its cache (grant and task
    both hits), and assert each call is allowed.

    The first calls may change the task (its data-flow label, its workflow step), which
    invalidates it on every replica; it takes at most a few calls to settle."""
    for _ in range(4):
        in_step(replica)
        before = cache_of(replica).stats.hits
        verdict = agent.authorize(grant, **call).json()
        assert verdict["decision"] == "allow", verdict
        if cache_of(replica).stats.hits >= before + 2:
            return
    raise AssertionError(f"replica {replica.name} never answered the grant from its cache")
