from __future__ import annotations

from collections.abc import Iterator

import pytest
from sdk_support import Approver

from support import mint
from tether.runtime import Runtime
from tether.service.clock import ManualClock
from tether_sdk import Retry, TetherClient

FAST = Retry(attempts=3, backoff=0.0)


@pytest.fixture
def svid(runtime: Runtime, clock: ManualClock) -> str:
    return mint(runtime, "analyst", clock)


@pytest.fixture
def sdk(base_url: str, svid: str) -> Iterator[TetherClient]:
    with TetherClient(base_url, svid=svid, retry=FAST) as client:
        yield client


@pytest.fixture
def approver(base_url: str, runtime: Runtime) -> Approver:
    return Approver(base_url, runtime)
