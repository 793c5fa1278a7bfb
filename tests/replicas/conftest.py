"""Fixtures for the replica tests: a fresh database on the session's PostgreSQL server per
test, and two replicas on it sharing one data directory (see :mod:`replicas.harness`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pg_server import PostgresServer, postgres_server
from replicas.harness import Agents, Replica, fresh_database, running_replicas
from tether.service.clock import ManualClock

__all__ = ["postgres_server"]


@pytest.fixture
def store_url(postgres_server: PostgresServer) -> Iterator[str]:
    with fresh_database(postgres_server) as url:
        yield url


@pytest.fixture
def pair(tmp_path: Path, store_url: str, clock: ManualClock) -> Iterator[list[Replica]]:
    """Two replicas, ``a`` and ``b``, on one database and one data directory."""
    with running_replicas(tmp_path / "data", store_url, clock, 2) as replicas:
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
