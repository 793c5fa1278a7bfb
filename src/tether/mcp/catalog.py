"""The gateway's view of its upstreams' tools: namespaced, and checked against their pins (ASI04).

Each upstream's ``tools/list`` is re-read whenever an agent lists tools, when a call names a tool
not seen yet, and, so that no call reaches a tool whose descriptor changed, as its ``pin_check``
says (:mod:`tether.mcp.config`): before every call to it, or at once when it sends
``notifications/tools/list_changed`` (:meth:`Catalog.changed`; calls to it wait for the re-read,
see :meth:`Catalog.current`). An upstream that cannot be re-read after announcing a change loses
its tools until it can (fail closed). A tool is
exposed as ``<upstream>.<tool>`` carrying only its pinned descriptor (name, description, input
schema) and its output schema; titles, annotations, icons and ``_meta`` from the upstream are not
passed on, since they are not pinned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import anyio
import mcp_types as types
from anyio.abc import TaskGroup

from tether.core.audit import AuditKind
from tether.core.scope import MAX_TOOL_NAME, JSONValue, is_valid_name
from tether.logs import get_logger
from tether.mcp.pdp import AuditSink
from tether.mcp.pins import PinCheck, PinStatus, PinStore, descriptor, digest
from tether.mcp.recording import pinned_body, withheld_body
from tether.mcp.upstreams import UpstreamConnection, UpstreamFailure
from tether.service.ports import Clock

log = get_logger("tether.mcp.catalog")


@dataclass(frozen=True, slots=True)
class CatalogTool:
    exposed: str  # <upstream>.<tool>, the name agents, grants and policies use
    upstream: str
    name: str  # the upstream's own name for it
    described: JSONValue  # the pinned part of its definition
    sha256: str  # its digest
    listing: types.Tool  # what tools/list shows


def entry_for(upstream: str, tool: types.Tool) -> CatalogTool | None:
    """``upstream``'s ``tool`` as the gateway exposes it; ``None`` for a name it cannot expose."""
    exposed = f"{upstream}.{tool.name}"
    if not is_valid_name(exposed, MAX_TOOL_NAME):
        return None
    described = descriptor(tool.name, tool.description, tool.input_schema)
    return CatalogTool(
        exposed=exposed,
        upstream=upstream,
        name=tool.name,
        described=described,
        sha256=digest(described),
        listing=types.Tool(
            name=exposed,
            description=tool.description,
            input_schema=tool.input_schema,
            output_schema=tool.output_schema,
        ),
    )


class Catalog:
    def __init__(
        self,
        pins: PinStore,
        audit: AuditSink,
        clock: Clock,
        on_listed: Callable[[str, list[CatalogTool]], None] | None = None,
    ) -> None:
        self._pins = pins
        #: Told each upstream's tools as each live listing found them (:mod:`.warmstart`).
        self._on_listed = on_listed
        self._audit = audit
        self._clock = clock
        self._tools: dict[str, CatalogTool] = {}
        #: Upstreams whose tools are being re-read after they announced a change.
        self._rereading: dict[str, anyio.Event] = {}

    def get(self, exposed: str) -> CatalogTool | None:
        return self._tools.get(exposed)

    def tools(self) -> list[CatalogTool]:
        return [self._tools[name] for name in sorted(self._tools)]

    async def refresh(self, session: UpstreamConnection) -> None:
        """Re-read one upstream's tools (through ``session``) and check each against its pin.

        Raises :class:`~tether.mcp.upstreams.UpstreamFailure` when the upstream cannot answer;
        its tools stay as last seen (and still pinned-checked on every call).
        """
        upstream = session.name
        listed = await session.list_tools()
        fresh: dict[str, CatalogTool] = {}
        for tool in listed:
            entry = entry_for(upstream, tool)
            if entry is None or entry.exposed in fresh:
                log.warning("tool_name_refused", upstream=upstream, reason="not a valid tool name")
                continue
            await self.verify(entry, stage="list")
            fresh[entry.exposed] = entry
        for name in [n for n, t in self._tools.items() if t.upstream == upstream]:
            del self._tools[name]
        self._tools.update(fresh)
        if self._on_listed is not None:
            self._on_listed(upstream, list(fresh.values()))

    def changed(self, session: UpstreamConnection, task_group: TaskGroup) -> anyio.Event:
        """``session``'s upstream announced that its tools changed: re-read them at once; calls
        to it (in any session) wait until that is done (:meth:`current`). The event is set when
        the re-read is done."""
        done = anyio.Event()
        self._rereading[session.name] = done
        task_group.start_soon(self._reread, session, done)
        return done

    async def _reread(self, session: UpstreamConnection, done: anyio.Event) -> None:
        upstream = session.name
        try:
            await self.refresh(session)
        except UpstreamFailure as failure:
            # INVARIANT: a tool announced changed is never called on its old descriptor.
            log.warning("tools_unreadable", upstream=upstream, failure=failure.kind.value)
            for name in [n for n, t in self._tools.items() if t.upstream == upstream]:
                del self._tools[name]
        finally:
            if self._rereading.get(upstream) is done:
                del self._rereading[upstream]
            done.set()

    @staticmethod
    def each_call(session: UpstreamConnection) -> bool:
        """Are the tools of ``session``'s upstream re-read before every call to it?"""
        return rereads_each_call(session, "tools")

    async def current(self, session: UpstreamConnection) -> None:
        """Make the tools of ``session``'s upstream current for a call: re-read them now
        (``each_call``) or wait for a re-read it announced. Raises :class:`UpstreamFailure` if
        it cannot answer."""
        if self.each_call(session):
            await self.refresh(session)
            return
        while (rereading := self._rereading.get(session.name)) is not None:
            await rereading.wait()

    async def verify(self, entry: CatalogTool, *, stage: str) -> PinCheck:
        """Check ``entry`` against its pin, auditing a first pin and each new change once."""
        return await checked_pin(
            self._pins,
            self._audit,
            self._clock,
            PinSubject("tool", entry.exposed, entry.exposed, entry.upstream, entry.described),
            stage,
        )


@dataclass(frozen=True, slots=True)
class PinSubject:
    """What a pin is checked for: a tool or a prompt, by its key in the pins file."""

    noun: str  # "tool" or "prompt": names the log events
    key: str  # its key in the pins file (and in the audit records)
    exposed: str  # its name as the gateway exposes it
    upstream: str
    described: JSONValue


def rereads_each_call(session: UpstreamConnection, kind: Literal["tools", "prompts"]) -> bool:
    """Are ``kind``'s descriptors of ``session``'s upstream re-read before each use? Under the
    ``auto`` pin check, unless the upstream declares it announces their changes
    (``listChanged``); ``each_call`` always; ``on_list`` never."""
    mode = session.config.pin_check
    if mode == "auto":
        declared = session.capabilities
        listed = None if declared is None else getattr(declared, kind)
        return listed is None or not listed.list_changed
    return mode == "each_call"


async def checked_pin(
    pins: PinStore, audit: AuditSink, clock: Clock, subject: PinSubject, stage: str
) -> PinCheck:
    """Check ``subject`` against its pin, auditing a first pin and each new change once."""
    check = pins.check(subject.key, subject.described, clock.now())
    if check.status is PinStatus.PINNED:
        log.info(f"{subject.noun}_pinned", **{subject.noun: subject.exposed}, sha256=check.seen)
        await audit.append_async(
            AuditKind.TOOL_PINNED, pinned_body(subject.key, check.seen, "first_sight")
        )
    elif check.new_change:
        log.warning(
            f"{subject.noun}_descriptor_changed",
            **{subject.noun: subject.exposed},
            sha256=check.seen,
        )
        await audit.append_async(
            AuditKind.TOOL_WITHHELD,
            withheld_body(subject.key, check.pinned, check.seen, stage, subject.upstream),
        )
    return check
