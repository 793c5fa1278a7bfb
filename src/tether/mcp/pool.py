"""Per-agent upstream sessions: what one agent's session holds upstream is never another's.

Each agent (its workload id) gets its own session with each upstream it uses: its own stdio
process, its own streamable-HTTP session id, its own reconnects. Nothing an upstream keeps per
session (state, subscriptions, a cache, a login) is shared between agents, unless the upstream's
config says ``share_sessions: true``: then one session serves every agent, as for a server known
to keep nothing per session. The gateway's own catalog of tool descriptors is shared (it holds
pins, which are per tool, not per agent). At most :data:`MAX_SESSIONS` sessions per upstream
are kept; the least recently used is closed to make room.

A session that has had no request for its upstream's ``idle_timeout_seconds`` (15 minutes
unless configured), with none under way and no resource subscribed to on it, is closed: its
stdio process stops, its HTTP session is ended. Idle sessions are looked for when a session of
the upstream is asked for, at most once every :data:`SWEEP_SECONDS` by the gateway's clock (so
tests move the clock), and every :data:`SWEEP_SECONDS` of real time by the gateway
(:func:`sweep_idle`) for when no request comes at all. A closed session stays in the pool: the
agent's next request through it opens a new one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

import anyio

from tether.logs import get_logger
from tether.mcp.config import Upstream
from tether.mcp.upstreams import UpstreamConnection
from tether.service.ports import Clock

log = get_logger("tether.mcp.pool")

MAX_SESSIONS: Final = 128
#: How often (seconds of real time) idle sessions are looked for.
SWEEP_SECONDS: Final = 15.0
_SHARED: Final = ""


class UpstreamPool:
    """The sessions of one upstream, by agent."""

    def __init__(
        self, config: Upstream, connect: Callable[[str | None], UpstreamConnection], clock: Clock
    ) -> None:
        self.config = config
        self._connect = connect
        self._next_sweep = clock.now() + timedelta(seconds=SWEEP_SECONDS)
        self._sessions: OrderedDict[str, UpstreamConnection] = OrderedDict()

    @property
    def name(self) -> str:
        return self.config.name

    def session(self, agent: str) -> UpstreamConnection:
        """``agent``'s session with this upstream (opened on first use)."""
        shared = self.config.share_sessions
        key = _SHARED if shared else agent
        connection = self._sessions.get(key)
        if connection is None:
            connection = self._sessions[key] = self._connect(None if shared else agent)
            while len(self._sessions) > MAX_SESSIONS:
                _, oldest = self._sessions.popitem(last=False)
                oldest.close()
        else:
            self._sessions.move_to_end(key)
        now = connection.touch()
        if now >= self._next_sweep:
            self._next_sweep = now + timedelta(seconds=SWEEP_SECONDS)
            self.close_idle(now)
        return connection

    def close_idle(self, now: datetime) -> int:
        """Close every session idle at ``now`` (:meth:`UpstreamConnection.idle`); how many."""
        closed = 0
        for connection in self._sessions.values():
            if connection.idle(now):
                connection.close()
                closed += 1
                log.info("upstream_session_idle_closed", upstream=self.name, agent=connection.agent)
        return closed

    def close(self) -> None:
        for connection in self._sessions.values():
            connection.close()
        self._sessions.clear()


async def sweep_idle(close_idle: Callable[[], int], every: float = SWEEP_SECONDS) -> None:
    """Call ``close_idle`` every ``every`` seconds, until cancelled (the gateway stops)."""
    while True:
        await anyio.sleep(every)
        close_idle()
