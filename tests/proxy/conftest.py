"""Fixtures for the egress proxy tests: one legacy service and one proxy per module."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import structlog

from proxy.harness import Env, running_proxy
from tether.logs import configure_logging
from tether.service.clock import ManualClock


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    clock = ManualClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    with running_proxy(tmp_path_factory.mktemp("proxy"), clock) as running:
        yield running


@pytest.fixture
def debug_logs() -> Iterator[None]:
    """Every log line the proxy writes, at debug, as it would in production."""
    configure_logging("debug")
    try:
        yield
    finally:
        structlog.reset_defaults()
