"""Effects recorded after the answer: a call's effect never delays its result, and is never lost.

An allowed call's effect (status, bytes, records, recipients) settles its budget holds and goes
into the audit chain; the observation of what its result showed the agent (argument provenance)
goes the same way, on the same lane. Writing it costs a transaction (or, deciding remotely, an
HTTP request to ``tether serve``), so the gateway answers the agent first and writes the effect
in the background (:mod:`tether.mcp.pdp`: the decisions' group commit for the local store).
Two rules keep that as safe as writing it first:

- **The next decision on the same task waits for it.** Effects are queued per grant (one grant,
  one task); before deciding a call the gateway awaits :meth:`EffectQueue.settled` for its grant,
  so budgets and the audit chain are as they would be had the effect been written inline.
- **A write that fails is kept, not dropped.** A failed write (the store unavailable) stays
  queued; the next call on that task retries it first and, while it still fails, is refused with
  the store's error (fail closed). When the gateway stops it waits for every queued write and
  retries the failed ones once more; what still cannot be written is logged as
  ``effect_not_recorded`` with its decision id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup

from tether.core.errors import TetherError, Unavailable
from tether.core.ids import DecisionId
from tether.logs import get_logger

log = get_logger("tether.mcp.effects")

#: One effect write: raises ``Unavailable`` if it cannot be written now (kept, retried), another
#: ``TetherError`` if it never can.
Write = Callable[[], Awaitable[object]]


@dataclass(eq=False)
class _Lane:
    """The effects of one grant not yet known to be written."""

    outstanding: int = 0
    idle: anyio.Event = field(default_factory=anyio.Event)
    failed: list[tuple[DecisionId, Write]] = field(default_factory=list)
    #: One retry at a time: a write retried twice would be refused as already reported.
    retrying: anyio.Lock = field(default_factory=anyio.Lock)


class EffectQueue:
    def __init__(self) -> None:
        self._lanes: dict[str, _Lane] = {}
        self._tg: TaskGroup | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[EffectQueue]:
        """Accept writes; on the way out wait for every one of them (never cancelled)."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                yield self
            finally:
                self._tg = None
        with anyio.CancelScope(shield=True):
            await self._retry_all()

    @property
    def pending(self) -> int:
        """Effects queued or failed, not yet written (for tests and shutdown)."""
        return sum(lane.outstanding + len(lane.failed) for lane in self._lanes.values())

    def submit(self, grant: str, decision_id: DecisionId, write: Write) -> None:
        """Queue ``write`` (the effect of ``decision_id``) on ``grant``'s lane; returns at once."""
        if self._tg is None:
            raise RuntimeError("the effect queue is not running")
        lane = self._lanes.get(grant)
        if lane is None:
            lane = self._lanes[grant] = _Lane()
        if lane.outstanding == 0:
            lane.idle = anyio.Event()
        lane.outstanding += 1
        self._tg.start_soon(self._write, grant, lane, decision_id, write)

    async def _write(self, grant: str, lane: _Lane, decision_id: DecisionId, write: Write) -> None:
        try:
            await write()
        except Unavailable as error:
            # INVARIANT: an effect the store could not take is kept until it is written.
            log.warning("effect_deferred", decision_id=decision_id, code=error.code.value)
            lane.failed.append((decision_id, write))
        except TetherError as error:
            # Refused for good (already reported, unknown decision): retrying cannot help.
            log.error("effect_not_recorded", decision_id=decision_id, code=error.code.value)
        finally:
            lane.outstanding -= 1
            if lane.outstanding == 0:
                lane.idle.set()
                if not lane.failed and self._lanes.get(grant) is lane:
                    del self._lanes[grant]

    async def settled(self, grant: str) -> TetherError | None:
        """Wait until every effect queued on ``grant`` is written; retry those that failed.
        ``None`` when all are written, else the error that still keeps one from the store."""
        lane = self._lanes.get(grant)
        if lane is None:
            return None
        await lane.idle.wait()
        async with lane.retrying:
            while lane.failed:
                decision_id, write = lane.failed[0]
                try:
                    await write()
                except Unavailable as error:
                    return error
                except TetherError as error:
                    log.error("effect_not_recorded", decision_id=decision_id, code=error.code.value)
                lane.failed.pop(0)
        if lane.outstanding == 0 and self._lanes.get(grant) is lane:
            del self._lanes[grant]
        return None

    async def _retry_all(self) -> None:
        for grant in list(self._lanes):
            error = await self.settled(grant)
            if error is not None:
                lane = self._lanes.pop(grant)
                for decision_id, _ in lane.failed:
                    log.error("effect_not_recorded", decision_id=decision_id, code=error.code.value)
