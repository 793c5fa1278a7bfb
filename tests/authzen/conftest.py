"""Fixtures for the AuthZEN tests: one real tether server on loopback per module.

Each test opens its own task, so tests share the server; audit assertions count the records a
test adds rather than the whole log.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from authzen_shapes import Pdp

from support import Agent, live_server, make_runtime, mint
from tether.service.clock import ManualClock


@pytest.fixture(scope="module")
def pdp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pdp]:
    clock = ManualClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    runtime = make_runtime(Path(tmp_path_factory.mktemp("authzen")) / "data", clock)
    try:
        with live_server(runtime) as url, httpx.Client(base_url=url, timeout=10) as client:
            yield Pdp(
                runtime,
                client,
                Agent(client, mint(runtime, "analyst", clock)),
                Agent(client, mint(runtime, "intruder", clock)),
            )
    finally:
        runtime.close()
