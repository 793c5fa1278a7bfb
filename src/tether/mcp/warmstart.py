"""A first ``tools/list`` answered before the upstreams are up, from their pinned descriptors.

Starting an upstream MCP server can take seconds (a Python server spends most of a second of CPU
importing the SDK), and a ``tools/list`` must name every upstream's tools. So the gateway keeps,
beside its pins file, each upstream's last live listing (``<pins>.listing.json``: each tool as
its upstream described it, rewritten whenever a live listing differs). When an agent lists tools
and its session with an upstream is not up yet, that upstream's part of the answer comes from
this listing while the session starts in the background:

- a descriptor carrying a secret given to an upstream is never written to the file (that tool
  waits for its upstream);
- only tools whose descriptor is the pinned one are listed (ASI04): the file is a hint, never a
  source of trust; a listing that names a tool with no pin at all (the pins file was replaced)
  is not used;
- once the session is up, its tools are read and checked against their pins as always; if what
  the agent may now see differs from what it was shown, every agent session that listed tools is
  sent ``notifications/tools/list_changed`` (:mod:`tether.mcp.listeners`);
- a call never relies on it: a call to a tool of an upstream not up yet waits for the upstream
  and is checked against the live descriptor's pin (:meth:`tether.mcp.gateway.Gateway._lookup`).

Sessions listed this way start in the background a few at a time (one fewer than the machine
has cores, at least one), so that a call, which starts its own upstream at once, is not left
to share the processors with every other upstream starting at the same moment.

With no listing for an upstream (the first start), the answer waits for it, bounded by its
``timeout_seconds``, as a cold start always did.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final

import anyio
import mcp_types as types
from anyio.abc import TaskGroup
from pydantic import ValidationError

from tether.datadir import write_private
from tether.logs import get_logger
from tether.mcp.catalog import Catalog, CatalogTool, entry_for
from tether.mcp.pins import PinStatus, PinStore
from tether.mcp.upstreams import UpstreamConnection, UpstreamFailure

log = get_logger("tether.mcp.warmstart")

LISTING_SUFFIX: Final = ".listing.json"

Failed = Callable[[UpstreamFailure], Awaitable[None]]
Changed = Callable[[], Awaitable[None]]


def listing_path(pins: Path) -> Path:
    """Where the listings kept beside the pins file ``pins`` are: ``mcp-pins.listing.json``."""
    return pins.with_name(pins.stem + LISTING_SUFFIX)


def _stored(entry: CatalogTool) -> dict[str, Any]:
    """The tool as its upstream described it (its own name), in its wire spelling."""
    own = entry.listing.model_copy(update={"name": entry.name})
    return own.model_dump(mode="json", by_alias=True, exclude_none=True)


class WarmStart:
    """The upstreams' last live listings, and the background starts of sessions listed from
    them."""

    def __init__(
        self, path: Path, pins: PinStore, holds_secret: Callable[[Any], bool] = lambda _: False
    ) -> None:
        self._path = path
        self._pins = pins
        self._holds_secret = holds_secret
        self._entries: dict[str, list[CatalogTool]] | None = None
        #: Sessions starting in the background after a listing answered for them.
        self._warming: dict[UpstreamConnection, anyio.Event] = {}
        self._starting = anyio.CapacityLimiter(max(1, (os.cpu_count() or 1) - 1))

    @property
    def path(self) -> Path:
        return self._path

    # -- the listings kept -----------------------------------------------------------------------

    def _loaded(self) -> dict[str, list[CatalogTool]]:
        if self._entries is None:
            self._entries = self._read()
        return self._entries

    def _read(self) -> dict[str, list[CatalogTool]]:
        try:
            raw = json.loads(self._path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            log.warning("tool_listing_unreadable", path=str(self._path))
            return {}
        upstreams = raw.get("upstreams") if isinstance(raw, dict) else None
        if not isinstance(raw, dict) or raw.get("version") != 1 or not isinstance(upstreams, dict):
            log.warning("tool_listing_unreadable", path=str(self._path))
            return {}
        out: dict[str, list[CatalogTool]] = {}
        for upstream, tools in upstreams.items():
            try:
                entries = [entry_for(upstream, types.Tool.model_validate(t)) for t in tools]
            except (ValidationError, TypeError):
                log.warning("tool_listing_unreadable", path=str(self._path), upstream=upstream)
                continue
            if all(entry is not None for entry in entries):
                out[upstream] = [e for e in entries if e is not None]
        return out

    def listed(self, upstream: str, entries: list[CatalogTool]) -> None:
        """A live listing of ``upstream`` found ``entries`` (the catalog tells each one):
        kept, and written to the file when it differs from the last."""
        kept = self._loaded()
        if kept.get(upstream) == entries:
            return
        kept[upstream] = list(entries)
        stored = {name: [_stored(e) for e in kept[name]] for name in sorted(kept)}
        # INVARIANT: no secret given to an upstream is written to disk. A descriptor carrying
        # one is left out: that tool waits for its upstream at the next start.
        body = {
            "version": 1,
            "upstreams": {
                name: [t for t in tools if not self._holds_secret(t)]
                for name, tools in stored.items()
            },
        }
        try:
            write_private(self._path, json.dumps(body, indent=1).encode("utf-8") + b"\n")
        except OSError as error:  # a hint only: the next start waits for the upstreams
            log.warning("tool_listing_not_written", path=str(self._path), error=error.strerror)

    def known(self, upstream: str) -> list[CatalogTool] | None:
        """What to list of ``upstream`` before it is up: the tools of its last live listing
        whose descriptor is the pinned one; ``None`` (wait for it) when there is no listing or
        one naming a tool that has no pin."""
        entries = self._loaded().get(upstream)
        if entries is None:
            return None
        statuses = [self._pins.status(e.exposed, e.sha256) for e in entries]
        if any(status is None for status in statuses):
            return None
        return [e for e, status in zip(entries, statuses, strict=True) if status is PinStatus.MATCH]

    def _listable(self, catalog: Catalog, upstream: str) -> dict[str, types.Tool]:
        return {
            e.exposed: e.listing
            for e in catalog.tools()
            if e.upstream == upstream and self._pins.status(e.exposed, e.sha256) is PinStatus.MATCH
        }

    # -- listing ---------------------------------------------------------------------------------

    async def list_all(
        self,
        sessions: Sequence[UpstreamConnection],
        catalog: Catalog,
        task_group: TaskGroup,
        failed: Failed,
        changed: Changed,
    ) -> list[CatalogTool]:
        """Every upstream's tools to list to an agent whose sessions are ``sessions`` (before
        its grant and the pins filter them): re-read now through each session that is up (or
        that has no listing kept, waiting for it to start); from the listing kept for each
        other one, which starts in the background (``task_group``). ``failed`` is told of an
        upstream that could not answer; ``changed`` is awaited when a session started in the
        background shows tools that differ from those listed for it."""
        provisional: dict[str, tuple[list[CatalogTool], anyio.Event]] = {}

        async def live(session: UpstreamConnection) -> None:
            try:
                await catalog.refresh(session)
            except UpstreamFailure as failure:
                await failed(failure)

        async with anyio.create_task_group() as tg:
            for session in sessions:
                known = None if session.capabilities is not None else self.known(session.name)
                if known is None:
                    tg.start_soon(live, session)
                    continue
                done = self._warm(session, known, catalog, task_group, failed, changed)
                provisional[session.name] = (known, done)
        # An upstream that came up meanwhile is listed as it is now.
        shown = [
            e
            for e in catalog.tools()
            if e.upstream not in provisional or provisional[e.upstream][1].is_set()
        ]
        for known, done in provisional.values():
            if not done.is_set():
                shown.extend(known)
        return sorted(shown, key=lambda e: e.exposed)

    def _warm(
        self,
        session: UpstreamConnection,
        known: list[CatalogTool],
        catalog: Catalog,
        task_group: TaskGroup,
        failed: Failed,
        changed: Changed,
    ) -> anyio.Event:
        done = self._warming.get(session)
        if done is None:
            done = self._warming[session] = anyio.Event()
            task_group.start_soon(self._warm_up, session, known, catalog, failed, changed, done)
        return done

    async def _warm_up(
        self,
        session: UpstreamConnection,
        known: list[CatalogTool],
        catalog: Catalog,
        failed: Failed,
        changed: Changed,
        done: anyio.Event,
    ) -> None:
        """Start ``session``, read its tools (checking every pin), and tell the agents if what
        they may see is not what they were shown."""
        try:
            async with self._starting:
                await catalog.refresh(session)
        except UpstreamFailure as failure:
            # Not announced: listing again would show the same and start it again.
            await failed(failure)
            return
        finally:
            self._warming.pop(session, None)
            done.set()
        if self._listable(catalog, session.name) != {e.exposed: e.listing for e in known}:
            log.info("tools_differ_from_listing", upstream=session.name)
            await changed()
