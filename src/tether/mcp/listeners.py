"""Agent sessions the gateway tells about changes (MCP ``notifications/tools/list_changed``).

An agent session that listed tools is remembered by its MCP session id (streamable HTTP) or as
the one session of a stdio gateway, up to :data:`MAX_LISTENERS` (the oldest forgotten first).
When an upstream announces that its tools changed, the gateway re-reads them and then tells every
remembered session, on its own standalone channel; what each agent then lists is still only what
its grant covers. A session whose channel is gone is forgotten. 2026-era sessions (no session id)
are not remembered: they learn of changes by listing again.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final, Protocol

from tether.logs import get_logger

log = get_logger("tether.mcp.listeners")

MAX_LISTENERS: Final = 1024


class Listener(Protocol):
    """What the gateway needs of an agent session (the SDK's ``ServerSession`` is one)."""

    async def send_tool_list_changed(self) -> None: ...


class Listeners:
    def __init__(self) -> None:
        self._sessions: OrderedDict[str, Listener] = OrderedDict()

    def remember(self, key: str, session: Listener) -> None:
        self._sessions[key] = session
        self._sessions.move_to_end(key)
        while len(self._sessions) > MAX_LISTENERS:
            self._sessions.popitem(last=False)

    async def tools_changed(self) -> None:
        for key, session in list(self._sessions.items()):
            try:
                await session.send_tool_list_changed()
            except Exception as error:  # the agent went away: forget it, tell the others
                log.info("listener_gone", error_type=type(error).__name__)
                self._sessions.pop(key, None)
