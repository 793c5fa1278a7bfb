"""The store contract through the Redis-backed cache: the same tests as ``test_contract``, on
PostgreSQL with a :class:`~tether.cache.CachedStore` in front, so what replicas see with
``TETHER_REDIS_URL`` set is held to the same contract as the store itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from redis_server import RedisServer, redis_server
from store import test_approvals as approvals
from store import test_contract as contract
from store.conftest import Backend, provisioned
from tether.cache import CachedStore
from tether.service.clock import SystemClock

__all__ = ["redis_server"]


@pytest.fixture
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with provisioned("postgresql", request, tmp_path) as db:
        yield db


@pytest.fixture
def store(backend: Backend, redis_server: RedisServer) -> Iterator[Any]:
    cached = CachedStore.over_redis(backend.open(), redis_server.url(), SystemClock())
    yield cached
    cached.close()


def test_the_cached_store_is_a_store(store: CachedStore) -> None:
    contract.test_sql_store_is_a_store(store)  # type: ignore[arg-type]


class TestCachedTasksAndGrants(contract.TestTasksAndGrants):
    pass


class TestCachedDecisionsAndEffects(contract.TestDecisionsAndEffects):
    pass


class TestCachedAudit(contract.TestAudit):
    pass


class TestCachedApprovalRequests(approvals.TestRequest):
    pass


class TestCachedApprovalLookups(approvals.TestLookups):
    pass


class TestCachedApprovalVotes(approvals.TestVotes):
    pass


class TestCachedApprovalUse(approvals.TestUse):
    pass


class TestCachedActivityAndCascade(approvals.TestActivityAndCascade):
    pass
