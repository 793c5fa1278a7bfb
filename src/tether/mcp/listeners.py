"""Agent sessions the gateway passes session-level notifications to (MCP
``notifications/tools/list_changed``, ``resources/list_changed``, ``prompts/list_changed``,
``notifications/message``, ``resources/updated``).

An agent session that listed tools or called one is remembered by its MCP session id (streamable
HTTP) or as the one session of a stdio gateway, with the agent it belongs to, up to
:data:`MAX_LISTENERS` (the oldest forgotten first). When an upstream announces that its tools
changed, the gateway re-reads them and then tells every remembered session, on its own
standalone channel; what each agent then lists is still only what its grant covers. When an
upstream announces that its resources or prompts changed, the sessions of the agents that use
that upstream session are told: the agent whose own upstream session it came on, or every
remembered session when the upstream session is shared (``share_sessions``); what each then
lists is still filtered by its grant. A log message or a ``resources/updated`` an upstream sends
on an agent's own upstream session goes to that agent's sessions only (on a shared upstream
session it belongs to no one agent and goes nowhere). A session whose
channel is gone is forgotten. 2026-era sessions (no session id) are not remembered: they learn
of changes by listing again.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Any, Final, Literal, Protocol

from mcp.shared.exceptions import MCPDeprecationWarning

from tether.logs import get_logger

log = get_logger("tether.mcp.listeners")

MAX_LISTENERS: Final = 1024


class Listener(Protocol):
    """What the gateway needs of an agent session (the SDK's ``ServerSession`` is one)."""

    async def send_tool_list_changed(self) -> None: ...

    async def send_log_message(self, level: Any, data: Any, logger: str | None = None) -> None: ...

    async def send_resource_updated(self, uri: Any) -> None: ...

    async def send_resource_list_changed(self) -> None: ...

    async def send_prompt_list_changed(self) -> None: ...


class Listeners:
    def __init__(self) -> None:
        self._sessions: OrderedDict[str, tuple[str, Listener]] = OrderedDict()

    def remember(self, key: str, agent: str, session: Listener) -> None:
        self._sessions[key] = (agent, session)
        self._sessions.move_to_end(key)
        while len(self._sessions) > MAX_LISTENERS:
            self._sessions.popitem(last=False)

    async def tools_changed(self) -> None:
        for key, (_, session) in list(self._sessions.items()):
            await self._send(key, session.send_tool_list_changed())

    async def log(self, agent: str, level: Any, data: Any, logger: str | None) -> None:
        """An upstream's log message, to the sessions of the agent whose upstream session sent
        it."""
        for key, (owner, session) in list(self._sessions.items()):
            if owner == agent:
                with warnings.catch_warnings():
                    # Deprecated from 2026-07-28 on, still how earlier sessions get them.
                    warnings.simplefilter("ignore", MCPDeprecationWarning)
                    await self._send(key, session.send_log_message(level, data, logger))

    async def resource_updated(self, agent: str, uri: str) -> None:
        """A resource the agent subscribed to (on its own upstream session) changed."""
        for key, (owner, session) in list(self._sessions.items()):
            if owner == agent:
                await self._send(key, session.send_resource_updated(uri))

    async def list_changed(self, agent: str | None, what: Literal["resources", "prompts"]) -> None:
        """An upstream's resources or prompts changed: tell the sessions of ``agent`` (whose own
        upstream session announced it), or every session when the upstream session is shared
        (``agent`` is ``None``)."""
        for key, (owner, session) in list(self._sessions.items()):
            if agent is None or owner == agent:
                sending = (
                    session.send_resource_list_changed()
                    if what == "resources"
                    else session.send_prompt_list_changed()
                )
                await self._send(key, sending)

    async def _send(self, key: str, sending: Any) -> None:
        try:
            await sending
        except Exception as error:  # the agent went away: forget it, tell the others
            log.info("listener_gone", error_type=type(error).__name__)
            self._sessions.pop(key, None)
