"""A running gateway keeps its long-lived heap out of full collections, as ``tether serve``
does (:mod:`tether.heap`), and lets it go when it stops."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from mcp_harness import UPSTREAM, run

from support import make_runtime
from tether.heap import HeapFreezer
from tether.mcp import Gateway, parse_config
from tether.mcp.pins import PinStore
from tether.mcp.server import deps_from_runtime
from tether.runtime import Runtime
from tether.service.clock import ManualClock

#: Only turns a hang into a failure; the freeze comes at the first tick after a collection.
HANG_GUARD_SECONDS = 30


def gateway(root: Path, heap: HeapFreezer | None) -> tuple[Runtime, Gateway]:
    """A gateway ticking its housekeeping every 10 ms (2 s by default)."""
    runtime = make_runtime(root / "data", ManualClock(datetime.now(UTC)))
    config = parse_config({"upstreams": {"crm": {"command": sys.executable, "args": [UPSTREAM]}}})
    pins = PinStore(root / "pins.json")
    return runtime, Gateway(
        config, deps_from_runtime(runtime), pins, heap=heap, housekeeping_seconds=0.01
    )


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test session collects as usual


def test_the_gateway_freezes_what_survived_a_full_collection_and_thaws_at_stop(
    tmp_path: Path,
) -> None:
    runtime, running = gateway(tmp_path, HeapFreezer())

    async def scenario() -> int:
        async with running.running():
            with anyio.fail_after(HANG_GUARD_SECONDS):
                while gc.get_freeze_count() == 0:
                    gc.collect()  # a full collection, as the collector makes them under load
                    await anyio.sleep(0.01)
            return gc.get_freeze_count()

    try:
        frozen = run(scenario)
    finally:
        runtime.close()
    assert frozen > 0  # what survived a full collection: out of the next ones
    assert gc.get_freeze_count() == 0  # stopped: everything is collected as usual again


def test_a_gateway_given_no_heap_leaves_the_collector_alone(tmp_path: Path) -> None:
    runtime, running = gateway(tmp_path, None)

    async def scenario() -> int:
        async with running.running():
            for _ in range(5):  # five of its ticks, each after a full collection
                gc.collect()
                await anyio.sleep(0.02)
            return gc.get_freeze_count()

    try:
        assert run(scenario) == 0
    finally:
        runtime.close()
