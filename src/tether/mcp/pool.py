"""Per-agent upstream sessions: what one agent's session holds upstream is never another's.

Each agent (its workload id) gets its own session with each upstream it uses: its own stdio
process, its own streamable-HTTP session id, its own reconnects. Nothing an upstream keeps per
session (state, subscriptions, a cache, a login) is shared between agents, unless the upstream's
config says ``share_sessions: true``: then one session serves every agent, as for a server known
to keep nothing per session. The gateway's own catalog of tool descriptors is shared (it holds
pins, which are per tool, not per agent). At most :data:`MAX_SESSIONS` sessions per upstream
are kept; the least recently used is closed to make room.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from tether.mcp.config import Upstream
from tether.mcp.upstreams import UpstreamConnection

MAX_SESSIONS: Final = 128
_SHARED: Final = ""


class UpstreamPool:
    """The sessions of one upstream, by agent."""

    def __init__(
        self, config: Upstream, connect: Callable[[str | None], UpstreamConnection]
    ) -> None:
        self.config = config
        self._connect = connect
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
        return connection

    def close(self) -> None:
        for connection in self._sessions.values():
            connection.close()
        self._sessions.clear()
