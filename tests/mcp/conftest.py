"""Fixtures for the MCP gateway tests: one gateway per module for the read-mostly cases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from mcp_harness import Gw, running_gateway

from tether.service.clock import ManualClock


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gw]:
    clock = ManualClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    with running_gateway(tmp_path_factory.mktemp("gateway"), clock) as env:
        yield env
