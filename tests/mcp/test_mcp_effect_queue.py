"""Effects written after the answer are never lost: a write the store refuses stays queued, the
next decision on its task retries it first and is refused while it still fails, and stopping the
gateway waits for every write."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from tether.core.errors import Conflict, ErrorCode, Unavailable
from tether.core.ids import DecisionId
from tether.mcp.effectqueue import EffectQueue


class Store:
    """Where the writes land; ``down`` makes a write fail the way a stalled database does."""

    def __init__(self) -> None:
        self.written: list[str] = []
        self.down = False

    async def write(self, what: str) -> None:
        if self.down:
            raise Unavailable("the database is locked", code=ErrorCode.STORE_UNAVAILABLE)
        self.written.append(what)


def dec(n: int) -> DecisionId:
    return DecisionId(f"dec_{n:026d}")


def test_a_failed_write_is_kept_retried_by_the_next_decision_and_refuses_it_meanwhile() -> None:
    store, queue = Store(), EffectQueue()

    async def scenario() -> None:
        async with queue.running():
            store.down = True
            queue.submit("grant-a", dec(1), lambda: store.write("effect 1"))
            queue.submit("grant-b", dec(2), lambda: store.write("effect 2"))
            refused = await queue.settled("grant-a")
            assert isinstance(refused, Unavailable)
            assert queue.pending == 2 and store.written == []
            store.down = False
            assert await queue.settled("grant-a") is None
            assert store.written == ["effect 1"] and queue.pending == 1
            assert await queue.settled("grant-b") is None
            assert store.written == ["effect 1", "effect 2"] and queue.pending == 0
            assert await queue.settled("grant-never-used") is None

    anyio.run(scenario)


def test_stopping_waits_for_every_write_and_retries_the_failed_ones() -> None:
    store, queue = Store(), EffectQueue()

    async def scenario() -> None:
        async with queue.running():
            store.down = True
            queue.submit("grant-a", dec(1), lambda: store.write("effect 1"))
            assert isinstance(await queue.settled("grant-a"), Unavailable)
            store.down = False
            queue.submit("grant-b", dec(2), lambda: store.write("effect 2"))
            # leaving at once: the write of effect 2 may still be running, effect 1 failed

    anyio.run(scenario)
    assert sorted(store.written) == ["effect 1", "effect 2"]
    assert queue.pending == 0


def test_a_write_refused_for_good_is_not_retried() -> None:
    queue, attempts = EffectQueue(), []

    async def twice() -> None:
        attempts.append(1)
        raise Conflict("already reported", code=ErrorCode.EFFECT_ALREADY_REPORTED)

    async def scenario() -> None:
        async with queue.running():
            queue.submit("grant-a", dec(1), twice)
            assert await queue.settled("grant-a") is None

    anyio.run(scenario)
    assert attempts == [1] and queue.pending == 0


def test_a_queue_that_is_not_running_takes_no_writes() -> None:
    with pytest.raises(RuntimeError):
        EffectQueue().submit("grant-a", dec(1), anyio.lowlevel.checkpoint)
