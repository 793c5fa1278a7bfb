"""Fixtures for the grant cache tests: replicas on one real PostgreSQL database and one real
Redis server, as ``tether serve --store-url ... --redis-url ...`` runs them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pg_server import PostgresServer, postgres_server
from redis_server import RedisServer, redis_server, running_redis
from replicas.harness import Agents, Replica, fresh_database, running_replicas
from tether.service.clock import ManualClock

__all__ = ["postgres_server", "redis_server"]


@pytest.fixture
def store_url(postgres_server: PostgresServer) -> Iterator[str]:
    with fresh_database(postgres_server) as url:
        yield url


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis server of the test's own, which it may stop and start."""
    with running_redis() as server:
        yield server


@pytest.fixture
def pair(
    tmp_path: Path, store_url: str, redis_server: RedisServer, clock: ManualClock
) -> Iterator[list[Replica]]:
    """Two replicas, ``a`` and ``b``, on one database, one data directory and one Redis."""
    with running_replicas(
        tmp_path / "data", store_url, clock, 2, redis_url=redis_server.url()
    ) as replicas:
        yield replicas


@pytest.fixture
def agents(pair: list[Replica], clock: ManualClock) -> Iterator[Callable[[str], Agents]]:
    made: list[Agents] = []

    def make(name: str) -> Agents:
        made.append(Agents(pair, name, clock))
        return made[-1]

    yield make
    for a in made:
        a.close()
