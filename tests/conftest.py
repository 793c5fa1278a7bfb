from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from support import Agent, live_server, make_runtime, mint
from tether.runtime import Runtime
from tether.service.clock import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))


@pytest.fixture
def runtime(tmp_path: Path, clock: ManualClock) -> Iterator[Runtime]:
    rt = make_runtime(tmp_path / "data", clock)
    yield rt
    rt.close()


@pytest.fixture
def base_url(runtime: Runtime) -> Iterator[str]:
    with live_server(runtime) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as c:
        yield c


@pytest.fixture
def analyst(client: httpx.Client, runtime: Runtime, clock: ManualClock) -> Agent:
    return Agent(client, mint(runtime, "analyst", clock))


@pytest.fixture
def intruder(client: httpx.Client, runtime: Runtime, clock: ManualClock) -> Agent:
    return Agent(client, mint(runtime, "intruder", clock))
