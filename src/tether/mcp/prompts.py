"""The gateway's view of its upstreams' prompts: namespaced, and checked against their pins (ASI04).

A prompt's descriptor (name, description, arguments) is what a model reads before it asks for the
prompt, so it is pinned as a tool's is (:mod:`tether.mcp.pins`, key ``prompt:<upstream>.<name>``)
and with the same ``pin_check`` semantics (:mod:`tether.mcp.config`):

    each_call   the upstream's prompts are re-read before every ``prompts/get`` to it
    on_change   re-read when the upstream sends ``notifications/prompts/list_changed`` (and on
                the first ``prompts/get`` after it); otherwise the last reading stands
    auto        ``on_change`` for an upstream that declares ``prompts.listChanged`` at its
                handshake, ``each_call`` for one that does not

A prompt whose descriptor differs from its pin is left out of ``prompts/list`` and refused on
``prompts/get`` (``tool_descriptor_changed``) until an operator approves it (``tether mcp pins
approve prompt:<upstream>.<name>``); a prompt its upstream does not list is never forwarded.
Listings carry only the pinned fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tether.core.scope import MAX_TOOL_NAME, JSONValue, is_valid_name
from tether.logs import get_logger
from tether.mcp.catalog import PinSubject, checked_pin, rereads_each_call
from tether.mcp.pdp import AuditSink
from tether.mcp.pins import PinCheck, PinStatus, PinStore, digest, prompt_descriptor, prompt_key
from tether.mcp.upstreams import MAX_LIST_PAGES, FailureKind, UpstreamConnection, UpstreamFailure
from tether.service.ports import Clock

log = get_logger("tether.mcp.prompts")


@dataclass(frozen=True, slots=True)
class CatalogPrompt:
    exposed: str  # <upstream>.<prompt>, the name agents, grants and policies use
    upstream: str
    name: str  # the upstream's own name for it
    described: JSONValue  # the pinned part of its definition
    sha256: str
    listing: dict[str, Any]  # what prompts/list shows

    @property
    def key(self) -> str:
        """Its key in the pins file."""
        return prompt_key(self.exposed)


def _entry(upstream: str, item: object) -> CatalogPrompt | None:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        return None
    name: str = item["name"]
    exposed = f"{upstream}.{name}"
    description = item.get("description")
    arguments = item.get("arguments")
    if not is_valid_name(exposed, MAX_TOOL_NAME) or not (
        description is None or isinstance(description, str)
    ):
        return None
    if arguments is not None and not (
        isinstance(arguments, list) and all(isinstance(a, dict) for a in arguments)
    ):
        return None
    described = prompt_descriptor(name, description, arguments)
    assert isinstance(described, dict)
    listing: dict[str, Any] = {**described, "name": exposed}
    listing["arguments"] = [
        {k: v for k, v in a.items() if v is not None} for a in listing["arguments"]
    ]
    listing = {k: v for k, v in listing.items() if v is not None}
    return CatalogPrompt(exposed, upstream, name, described, digest(described), listing)


class PromptCatalog:
    def __init__(self, pins: PinStore, audit: AuditSink, clock: Clock) -> None:
        self._pins = pins
        self._audit = audit
        self._clock = clock
        self._prompts: dict[str, CatalogPrompt] = {}
        #: Upstreams whose prompts were read at least once, and those announced changed since.
        self._read: set[str] = set()
        self._stale: set[str] = set()

    def get(self, exposed: str) -> CatalogPrompt | None:
        return self._prompts.get(exposed)

    async def refresh(self, session: UpstreamConnection) -> list[CatalogPrompt]:
        """Re-read one upstream's prompts (through ``session``), check each against its pin,
        and return them. Raises :class:`UpstreamFailure` when the upstream cannot answer."""
        upstream = session.name
        self._stale.discard(upstream)
        fresh: dict[str, CatalogPrompt] = {}
        cursor: str | None = None
        for _ in range(MAX_LIST_PAGES):
            page = await session.request("prompts/list", {"cursor": cursor} if cursor else {})
            items = page.get("prompts")
            for item in items if isinstance(items, list) else []:
                entry = _entry(upstream, item)
                if entry is None or entry.exposed in fresh:
                    log.warning("prompt_refused", upstream=upstream, reason="not a valid prompt")
                    continue
                await self.verify(entry, stage="list")
                fresh[entry.exposed] = entry
            cursor = page.get("nextCursor") if isinstance(page.get("nextCursor"), str) else None
            if cursor is None:
                break
        else:
            raise UpstreamFailure(
                upstream, FailureKind.MALFORMED, f"prompts/list did not end in {MAX_LIST_PAGES}"
            )
        for name in [n for n, p in self._prompts.items() if p.upstream == upstream]:
            del self._prompts[name]
        self._prompts.update(fresh)
        self._read.add(upstream)
        return list(fresh.values())

    def changed(self, session: UpstreamConnection) -> None:
        """``session``'s upstream announced that its prompts changed: the next ``prompts/get``
        to it re-reads them first."""
        self._stale.add(session.name)

    @staticmethod
    def each_call(session: UpstreamConnection) -> bool:
        """Are the prompts of ``session``'s upstream re-read before every ``prompts/get``?"""
        return rereads_each_call(session, "prompts")

    async def current(self, session: UpstreamConnection) -> None:
        """Make the prompts of ``session``'s upstream current for a ``prompts/get``."""
        await session.ready()  # its capabilities decide ``auto``
        upstream = session.name
        if self.each_call(session) or upstream in self._stale or upstream not in self._read:
            await self.refresh(session)

    def status(self, entry: CatalogPrompt) -> PinStatus | None:
        return self._pins.status(entry.key, entry.sha256)

    async def verify(self, entry: CatalogPrompt, *, stage: str) -> PinCheck:
        """Check ``entry`` against its pin, auditing a first pin and each new change once."""
        return await checked_pin(
            self._pins,
            self._audit,
            self._clock,
            PinSubject("prompt", entry.key, entry.exposed, entry.upstream, entry.described),
            stage,
        )
