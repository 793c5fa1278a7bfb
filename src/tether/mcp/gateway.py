"""The MCP gateway: every ``tools/list`` filtered and every ``tools/call`` decided by tether.

    tools/list  → each upstream's tools, namespaced, pinned-checked (ASI04)
                → only those the caller's grant covers with the tool's mapped action and dataset
    tools/call  → descriptor still the pinned one? (else refused: tool_descriptor_changed)
                → the effects of the task's earlier calls written (:mod:`.effectqueue`)
                → Authorizer.enforce_async(workload, grant, CallRequest(tool, action, dataset,
                                     args, approval id from _meta["tether/approval"] if any)),
                  in process or in tether serve (:mod:`.pdp`)
                → deny / approval_required: an isError result naming the reasons (and the
                  approval id to retry with once a human approved)
                → allow: the call forwarded to its upstream as a JSON-RPC message, its progress
                  passed back → the result shaped for the agent's protocol revision →
                  :meth:`Gateway._answer`: size cap, secrets redacted (:mod:`.redaction`),
                  effect queued → answer

Calls travel as JSON-RPC params and result objects (dicts), not re-created through a second SDK
server and client: the SDK does the transports and handshakes on both sides and checks each
result against the agent's protocol revision. Decisions, effects and the gateway's own records
go through its decision point (:mod:`tether.mcp.pdp`): in process, the decision on the event loop
(no thread hop) and the effect write in a worker thread after the answer; or, with ``--pdp-url``,
over HTTP to ``tether serve``. When no decision point answers, the request is refused as a
JSON-RPC error with code ``pdp_unavailable`` and nothing goes upstream.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import anyio
import anyio.to_thread
import mcp_types as types
from anyio.abc import TaskGroup
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from tether.core.audit import AuditKind
from tether.core.effect import EffectStatus
from tether.core.errors import ErrorCode, InvalidRequest, TetherError
from tether.core.ids import DecisionId
from tether.core.redact import Unredactable
from tether.core.scope import MAX_TOOL_NAME, JSONValue, is_valid_name
from tether.core.secret import Secret
from tether.core.verdict import Decision, Verdict
from tether.heap import HeapFreezer
from tether.logs import get_logger
from tether.mcp.callers import Caller
from tether.mcp.catalog import Catalog, CatalogTool
from tether.mcp.config import GatewayConfig, ToolMapping, Upstream
from tether.mcp.effectqueue import EffectQueue
from tether.mcp.listeners import Listeners
from tether.mcp.pdp import DecisionPoint, Effect, GrantView, Observation
from tether.mcp.pins import PinStatus, PinStore
from tether.mcp.pool import UpstreamPool, sweep_idle
from tether.mcp.prompts import PromptCatalog
from tether.mcp.recording import failure_body, withheld_body
from tether.mcp.redaction import RESULT, SecretBook, configured_secrets
from tether.mcp.results import (
    META_APPROVAL,
    GatewayCode,
    Handed,
    Measured,
    encoded,
    for_agent,
    from_tether_error,
    measure,
    refusal,
    tool_error,
    wire,
)
from tether.mcp.surface import REFUSED, Surface
from tether.mcp.upstreams import FailureKind, UpstreamConnection, UpstreamFailure
from tether.mcp.warmstart import WarmStart, listing_path
from tether.observability import Metrics
from tether.service.enforce import CallRequest
from tether.service.ports import Clock

log = get_logger("tether.mcp.gateway")

#: The protocol revision results are shaped for when no agent session names one (typed calls).
LEGACY_VERSION: Final = "2025-11-25"

#: Results up to this size are redacted on the event loop; larger ones in a worker thread.
_SCAN_INLINE_BYTES = 64 * 1024
#: How often a running gateway ticks its :class:`~tether.heap.HeapFreezer` (as serve does).
HOUSEKEEPING_SECONDS: Final = 2.0


#: An allowed call's effect and, if its result reached the agent, what it showed (one write).
RecordCall = Callable[[Caller, Effect, Observation | None], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class GatewayDeps:
    """What the gateway uses: its decision point (in process, or ``tether serve`` over HTTP: see
    :mod:`tether.mcp.pdp`), its clock and the upstreams' secrets (see
    :func:`tether.mcp.server.deps_from_runtime`, :func:`tether.mcp.pdp_remote.remote_deps`)."""

    pdp: DecisionPoint
    clock: Clock
    secrets: Callable[[str], Secret]
    #: Scraped at ``GET /metrics`` over HTTP; ``None`` serves no metrics.
    metrics: Metrics | None = None
    #: Called at every idle sweep: forgets what memory keeps of ended tasks (in process:
    #: :meth:`tether.runtime.Runtime.forget_idle`).
    forget_idle: Callable[[], None] | None = None
    #: Records an allowed call's effect and the observation of its result as one write (in
    #: process: :meth:`tether.mcp.pdp.LocalDecisionPoint.record_call`); ``None``: the
    #: decision point's ``report`` and ``observe``, one write each.
    record_call: RecordCall | None = None


def unrecorded(error: TetherError) -> TetherError:
    """``error``, unless it says the decision point gave no answer (``pdp_unavailable``): that
    is raised as a JSON-RPC error (the agent's request was not decided, nothing went upstream),
    with the stable code in its ``data``."""
    if error.code is ErrorCode.PDP_UNAVAILABLE:
        data = {"code": error.code.value, "message": error.message}
        raise MCPError(code=REFUSED, message=f"{error.code.value}: {error.message}", data=data)
    return error


async def _keep_frozen(heap: HeapFreezer, every: float) -> None:
    """What survived each full collection stays out of the next ones (:mod:`tether.heap`):
    a full collection of the gateway's long-lived heap took the interpreter lock with nothing
    to free, stalling every call in flight."""
    while True:
        await anyio.sleep(every)
        heap.tick()


def _visible(grant: GrantView, tool: str, mapping: ToolMapping) -> bool:
    """Does ``grant`` cover ``tool`` with the action and dataset the gateway will ask for?"""
    scope = grant.scope_for(tool)
    return (
        scope is not None
        and mapping.action in scope.actions
        and mapping.dataset in scope.allowed_datasets
    )


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        deps: GatewayDeps,
        pins: PinStore,
        *,
        lean: bool = True,
        heap: HeapFreezer | None = None,
        housekeeping_seconds: float = HOUSEKEEPING_SECONDS,
    ) -> None:
        """``heap``: kept out of full collections while the gateway runs, ticked every
        ``housekeeping_seconds`` and thawed when it stops (a server process's, as
        ``tether mcp-gateway`` passes; ``None`` leaves the collector alone)."""
        self.config = config
        self.heap = heap
        self._housekeeping_seconds = housekeeping_seconds
        #: ``tools/call`` sent upstream on the lean channel (tether.mcp.lean_upstream).
        self.lean = lean
        self.deps = deps
        self.pins = pins
        self.audit = deps.pdp.events
        #: Every secret gateway.yaml names, read now: a missing or short one stops the start.
        self.secrets = SecretBook(deps.secrets, self.audit)
        self.secrets.load(configured_secrets(config))
        self._pools: dict[str, UpstreamPool] = {}
        self._catalog: Catalog | None = None
        self.prompts = PromptCatalog(pins, self.audit, deps.clock)
        self.effects = EffectQueue()
        self.listeners = Listeners()
        self.warm = WarmStart(listing_path(pins.path), pins, self.secrets.holds)
        self.surface = Surface(self)
        self._tg: TaskGroup | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Gateway]:
        """Open the upstream connections' task group, serve, and close every upstream on the way
        out. No upstream is started here: each starts on first use (a ``tools/list`` starts
        them all at once), so the gateway answers at once and a slow one delays only what
        needs it."""
        # The decision point closes last: the effects still queued are written through it.
        async with self._pdp_open(), self.effects.running(), anyio.create_task_group() as tg:
            self._tg = tg
            self._pools = {
                u.name: UpstreamPool(u, partial(self._open, u, tg), self.deps.clock)
                for u in self.config.upstreams
            }
            self._catalog = Catalog(self.pins, self.audit, self.deps.clock, self.warm.listed)
            self.prompts = PromptCatalog(self.pins, self.audit, self.deps.clock)
            tg.start_soon(sweep_idle, self.close_idle_sessions)
            if self.heap is not None:
                tg.start_soon(_keep_frozen, self.heap, self._housekeeping_seconds)
            try:
                yield self
            finally:
                for pool in self._pools.values():
                    pool.close()
                tg.cancel_scope.cancel()
                if self.heap is not None:
                    self.heap.thaw()

    @asynccontextmanager
    async def _pdp_open(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                await self.deps.pdp.aclose()

    def _open(self, config: Upstream, tg: TaskGroup, agent: str | None) -> UpstreamConnection:
        deps = self.deps
        return UpstreamConnection(
            config,
            self.secrets.reveal,
            tg,
            deps.clock,
            self._notified,
            self._tools_changed,
            agent=agent,
            lean=self.lean,
        )

    def session_for(self, upstream: str, caller: Caller) -> UpstreamConnection:
        """``caller``'s session with ``upstream`` (:mod:`tether.mcp.pool`)."""
        return self._pools[upstream].session(caller.workload.id)

    def close_idle_sessions(self) -> int:
        """Close each agent's upstream session unused for its upstream's
        ``idle_timeout_seconds`` (:mod:`tether.mcp.pool`); how many were closed."""
        now = self.deps.clock.now()
        if self.deps.forget_idle is not None:
            self.deps.forget_idle()
        return sum(pool.close_idle(now) for pool in self._pools.values())

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            raise RuntimeError("the gateway is not running; use `async with gateway.running()`")
        return self._catalog

    async def _notified(
        self, session: UpstreamConnection, notification: types.ServerNotification
    ) -> None:
        """A notification an upstream sent on a session, not about one call: a log message, a
        subscribed resource's update, or a change of its resources or prompts goes to the agent
        whose own session it came on (:mod:`tether.mcp.listeners`)."""
        agent = session.agent
        match notification:
            case types.LoggingMessageNotification(params=params) if agent:
                data, logger = await self.secrets.log_message(
                    session.name, agent, params.data, params.logger
                )
                await self.listeners.log(agent, params.level, data, logger)
                return
            case types.ResourceUpdatedNotification(params=params) if agent:
                await self.listeners.resource_updated(agent, str(params.uri))
                return
            case types.ResourceListChangedNotification():
                await self.listeners.list_changed(agent, "resources")
                return
            case types.PromptListChangedNotification():
                self.prompts.changed(session)  # the next prompts/get re-reads them first
                await self.listeners.list_changed(agent, "prompts")
                return
        log.debug("upstream_notification", upstream=session.name, method=notification.method)

    def _tools_changed(self, session: UpstreamConnection) -> None:
        """``session``'s upstream announced that its tools changed: pins are re-checked at once
        (calls to it wait for that), then the agents that listed tools are told."""
        if self._tg is not None:
            rereading = self.catalog.changed(session, self._tg)
            self._tg.start_soon(self._announce, rereading)

    async def _announce(self, rereading: anyio.Event) -> None:
        await rereading.wait()
        await self.listeners.tools_changed()

    async def _refresh_all(self, caller: Caller) -> list[CatalogTool]:
        """Every upstream's tools, listed concurrently through ``caller``'s own sessions; one
        not up yet from its pinned listing while it starts (:mod:`tether.mcp.warmstart`)."""
        assert self._tg is not None  # running
        sessions = [self.session_for(name, caller) for name in self._pools]
        return await self.warm.list_all(
            sessions, self.catalog, self._tg, self._listing_failed, self.listeners.tools_changed
        )

    async def _listing_failed(self, failure: UpstreamFailure) -> None:
        await self.record_failure(failure, None, None, None)

    async def record_failure(
        self,
        failure: UpstreamFailure,
        tool: str | None,
        caller: Caller | None,
        decision_id: str | None,
    ) -> None:
        log.warning(
            "upstream_failed", upstream=failure.upstream, failure=failure.kind.value, tool=tool
        )
        try:
            await self.audit.append_async(
                AuditKind.UPSTREAM_FAILED,
                failure_body(
                    failure.upstream, failure.kind.value, failure.message, tool, decision_id
                ),
                agent=caller.workload.id if caller is not None else None,
            )
        except TetherError as error:
            log.error("audit_failed", code=error.code.value)

    async def grant_of(self, caller: Caller) -> GrantView | None:
        """What ``caller``'s grant covers, to filter a listing (``None``: nothing)."""
        try:
            return await self.deps.pdp.grant(caller)
        except TetherError as error:
            unrecorded(error)
            return None  # any other failure shows nothing (fail closed)

    # -- tools/list ----------------------------------------------------------------------------

    async def list_tools(self, caller: Caller) -> list[types.Tool]:
        """The tools ``caller``'s grant covers, and only those (an agent never learns the rest)."""
        grant = await self.grant_of(caller)
        if grant is None:
            return []
        shown: list[types.Tool] = []
        # A descriptor that changed upstream is caught here.
        for entry in await self._refresh_all(caller):
            if not _visible(grant, entry.exposed, self.config.mapping(entry.exposed)):
                continue
            if self.pins.status(entry.exposed, entry.sha256) is not PinStatus.MATCH:
                continue  # withheld until an operator approves the changed descriptor
            shown.append(entry.listing)
        if self.secrets.redactor is None or not shown:
            return shown
        # A descriptor may carry a secret an upstream was given (a careless description):
        # the agent gets it redacted, like any other answer.
        wire = {
            "tools": [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in shown]
        }
        redacted = await self.secrets.listing("tools/list", wire, caller.workload.id)
        if not redacted.found:
            return shown
        tools = redacted.value["tools"] if isinstance(redacted.value, dict) else []
        return [types.Tool.model_validate(t) for t in tools] if isinstance(tools, list) else []

    # -- tools/call ----------------------------------------------------------------------------

    async def call_tool(
        self,
        caller: Caller | None,
        name: str,
        arguments: dict[str, Any] | None,
        approval_id: str | None = None,
    ) -> types.CallToolResult:
        """:meth:`forward_call` with typed values (the SDK's handler, tests)."""
        params: dict[str, Any] = {"name": name, "arguments": arguments}
        if approval_id is not None:
            params["_meta"] = {META_APPROVAL: approval_id}
        answer = await self.forward_call(caller, params, LEGACY_VERSION)
        return types.CallToolResult.model_validate(answer, by_name=False)

    async def forward_call(
        self,
        caller: Caller | None,
        params: Mapping[str, Any],
        protocol_version: str,
        progress: ProgressFnT | None = None,
    ) -> dict[str, Any]:
        """Decide one ``tools/call`` (its raw, spec-valid params) and, on allow, forward it to
        its upstream as a JSON-RPC message; the result object to answer with, shaped for the
        agent's ``protocol_version``. ``progress`` receives the upstream's progress on it."""
        if caller is None:
            return wire(tool_error(GatewayCode.UNAUTHENTICATED, "the caller is not authenticated"))
        meta = params.get("_meta")
        meta = meta if isinstance(meta, dict) else {}
        caller = caller.with_meta(meta)
        approval = meta.get(META_APPROVAL)
        approval_id = approval if isinstance(approval, str) and len(approval) <= 64 else None
        name = params.get("name")
        args = params.get("arguments")
        args = dict(args) if isinstance(args, dict) else {}
        if not isinstance(name, str) or not is_valid_name(name, MAX_TOOL_NAME):
            return wire(tool_error(GatewayCode.INVALID_ARGUMENTS, "the tool name is not valid"))
        if caller.grant_token is None:
            return wire(
                tool_error(
                    GatewayCode.GRANT_MISSING,
                    "name your grant in the X-Tether-Grant header or in _meta['tether/grant']",
                )
            )
        mapping = self.config.mapping(name)
        entry, unreachable = await self._lookup(name, caller)
        if entry is not None:
            changed = await self._descriptor_changed(caller, entry, mapping)
            if changed is not None:
                return wire(changed)
        request = CallRequest(name, mapping.action, mapping.dataset, args, approval_id)
        verdict = await self.decide(caller, request)
        if not isinstance(verdict, Verdict):
            return wire(verdict)
        match verdict.decision:
            case Decision.DENY | Decision.APPROVAL_REQUIRED:
                return wire(refusal(verdict))
            case Decision.ALLOW:
                pass
        if entry is None:
            return await self._failed(caller, name, verdict.decision_id, unreachable)
        upstream = self.session_for(entry.upstream, caller)
        if progress is not None:
            progress = self.secrets.progress(
                progress, entry.upstream, entry.exposed, verdict.decision_id, caller.workload.id
            )
        try:
            raw = await upstream.request(
                "tools/call", {"name": entry.name, "arguments": args}, on_progress=progress
            )
            answer = for_agent(raw, protocol_version)
        except UpstreamFailure as failure:
            return await self._failed(caller, name, verdict.decision_id, failure)
        except ValidationError:
            malformed = UpstreamFailure(
                entry.upstream, FailureKind.MALFORMED, "the answer to tools/call is not valid MCP"
            )
            return await self._failed(caller, name, verdict.decision_id, malformed)
        return await self._answer(caller, entry, mapping, args, verdict.decision_id, answer)

    async def decide(self, caller: Caller, request: CallRequest) -> Verdict | types.CallToolResult:
        """Decide ``request`` through the one enforcement entry, once the effects of the task's
        earlier calls are written; or the error to answer instead (a store that cannot take
        them, arguments the entry refuses)."""
        assert caller.grant_token is not None  # checked by every caller of decide
        # The next decision on a task waits for the effects of its earlier calls.
        unsettled = await self.effects.settled(caller.grant_token)
        if unsettled is not None:
            return from_tether_error(unrecorded(unsettled))
        try:
            # Through the one enforcement entry, of this process or of `tether serve`.
            return await self.deps.pdp.enforce(caller, request)
        except InvalidRequest as invalid:
            # The one check of the enforcement entry refused the arguments.
            return tool_error(GatewayCode.INVALID_ARGUMENTS, invalid.message)
        except TetherError as error:
            return from_tether_error(unrecorded(error))

    async def _answer(
        self,
        caller: Caller,
        entry: CatalogTool,
        mapping: ToolMapping,
        args: dict[str, Any],
        decision_id: DecisionId,
        answer: dict[str, Any],
    ) -> dict[str, Any]:
        """INVARIANT: the one place an allowed call's result is handed back to the agent. It is
        checked against the size cap, every secret given to an upstream is redacted from it
        (and the redaction audited), it is measured as the agent gets it, and its effect is
        queued (written before the next decision on the task, never lost)."""
        data = encoded(answer)
        measured = measure(answer, len(data), mapping, args)
        if measured.bytes > self.config.max_result_bytes:
            return await self._too_large(caller, entry, decision_id, measured)
        try:
            if len(data) <= _SCAN_INLINE_BYTES:
                redacted = self.secrets.redact(answer, data)
            else:
                redacted = await anyio.to_thread.run_sync(self.secrets.redact, answer, data)
        except Unredactable:
            return await self._withheld(caller, entry, decision_id, measured)
        if redacted.found:
            answer = redacted.value  # type: ignore[assignment]  # a JSON object stays one
            measured = measure(answer, len(encoded(answer)), mapping, args)
            await self.secrets.record(
                entry.upstream,
                entry.exposed,
                RESULT,
                redacted.found,
                decision_id,
                caller.workload.id,
            )
        self.report(caller, decision_id, measured, Handed(entry.exposed, mapping.dataset, answer))
        return answer

    async def _too_large(
        self, caller: Caller, entry: CatalogTool, decision_id: DecisionId, measured: Measured
    ) -> dict[str, Any]:
        """The call ran but its result is over the cap; the audit log says how large."""
        limit, size = self.config.max_result_bytes, measured.bytes
        failure = UpstreamFailure(
            entry.upstream,
            FailureKind.TOO_LARGE,
            f"the result of {entry.exposed!r} is {size} bytes, over the gateway's limit of "
            f"{limit} bytes (limits.max_result_bytes)",
        )
        return await self._withhold(
            caller,
            entry,
            decision_id,
            measured,
            failure,
            GatewayCode.UPSTREAM_RESULT_TOO_LARGE,
            f"{failure.message}; ask for less (a narrower query, a page) and call again",
            result_bytes=size,
            limit_bytes=limit,
        )

    async def _withheld(
        self,
        caller: Caller,
        entry: CatalogTool,
        decision_id: DecisionId,
        measured: Measured,
    ) -> dict[str, Any]:
        """The call ran but its result holds a secret given to an upstream where it cannot be
        redacted in place (split across two strings); the audit log says so (never the
        secret)."""
        failure = UpstreamFailure(
            entry.upstream,
            FailureKind.LEAKED_SECRET,
            f"the result of {entry.exposed!r} held a secret tether gives its upstreams, in a "
            "way it could not be redacted from; it was withheld",
        )
        return await self._withhold(
            caller,
            entry,
            decision_id,
            measured,
            failure,
            GatewayCode.UPSTREAM_LEAKED_SECRET,
            failure.message,
        )

    async def _withhold(
        self,
        caller: Caller,
        entry: CatalogTool,
        decision_id: DecisionId,
        measured: Measured,
        failure: UpstreamFailure,
        code: GatewayCode,
        message: str,
        **extra: JSONValue,
    ) -> dict[str, Any]:
        """An allowed call ran, but none of its result may reach the agent: its effect is an
        error with no bytes read, the audit log says why, and the agent gets ``code``."""
        self.report(caller, decision_id, Measured(EffectStatus.ERROR, 0, None, measured.recipients))
        await self.record_failure(failure, entry.exposed, caller, decision_id)
        return wire(
            tool_error(code, message, upstream=entry.upstream, **extra, decision_id=decision_id)
        )

    async def _failed(
        self, caller: Caller, name: str, decision_id: DecisionId, failure: UpstreamFailure | None
    ) -> dict[str, Any]:
        """An allowed call that could not run: audit why, record an error effect, tell the agent."""
        self.report(caller, decision_id, None)
        if failure is None:
            return wire(tool_error(GatewayCode.TOOL_NOT_FOUND, f"no upstream serves {name!r}"))
        await self.record_failure(failure, name, caller, decision_id)
        return wire(
            tool_error(
                GatewayCode.UPSTREAM_FAILED,
                f"{failure.message}; the call may be retried",
                upstream=failure.upstream,
                failure=failure.kind.value,
                decision_id=decision_id,
            )
        )

    async def _lookup(
        self, name: str, caller: Caller
    ) -> tuple[CatalogTool | None, UpstreamFailure | None]:
        """The catalog entry for ``name`` with its upstream's tools current (listed now if
        never seen, re-read as its ``pin_check`` says); or the failure that kept the upstream
        from answering."""
        upstream = name.split(".", 1)[0]
        if upstream not in self._pools:
            return None, None
        session = self.session_for(upstream, caller)
        try:
            if self.catalog.get(name) is None:
                await self.catalog.refresh(session)
            else:
                await self.catalog.current(session)
        except UpstreamFailure as failure:
            return None, failure
        return self.catalog.get(name), None

    async def _descriptor_changed(
        self, caller: Caller, entry: CatalogTool, mapping: ToolMapping
    ) -> types.CallToolResult | None:
        check = await self.catalog.verify(entry, stage="call")
        session = self.session_for(entry.upstream, caller)
        if check.status is PinStatus.CHANGED and not self.catalog.each_call(session):
            # Perhaps reverted upstream without a word: look once more before refusing, so a
            # reverted tool is callable again without anyone listing by hand.
            with contextlib.suppress(UpstreamFailure):
                await self.catalog.refresh(session)
            fresh = self.catalog.get(entry.exposed)
            if fresh is not None:
                check = await self.catalog.verify(fresh, stage="call")
        if check.status is not PinStatus.CHANGED:
            return None
        grant = await self.grant_of(caller)
        if grant is None or not _visible(grant, entry.exposed, mapping):
            return None  # not this caller's tool: the authorizer denies it without a hint
        await self.audit.append_async(
            AuditKind.TOOL_WITHHELD,
            withheld_body(entry.exposed, check.pinned, check.seen, "call", entry.upstream),
            agent=caller.workload.id,
        )
        return tool_error(
            GatewayCode.TOOL_DESCRIPTOR_CHANGED,
            f"the descriptor of {entry.exposed!r} changed since it was pinned; an operator must "
            f"review and approve it (tether mcp pins approve {entry.exposed}) before it is used",
        )

    def report(
        self,
        caller: Caller,
        decision_id: DecisionId,
        measured: Measured | None,
        handed: Handed | None = None,
    ) -> None:
        """Queue the call's effect, and the observation of what it ``handed`` back: written in
        the background, before the next decision on the same task
        (:mod:`tether.mcp.effectqueue`), so a value the agent was shown is known to provenance
        before it can steer a call."""
        assert caller.grant_token is not None  # no call is decided without one
        pdp = self.deps.pdp
        effect = Effect(
            decision_id,
            measured.status if measured is not None else EffectStatus.ERROR,
            measured.records if measured is not None else None,
            measured.bytes if measured is not None else 0,
            measured.recipients if measured is not None else (),
        )
        seen = (
            None
            if handed is None
            else Observation(handed.tool, handed.dataset, handed.result, decision_id)
        )
        grant, record = caller.grant_token, self.deps.record_call
        if record is not None:
            self.effects.submit(grant, decision_id, partial(record, caller, effect, seen))
            return
        self.effects.submit(grant, decision_id, partial(pdp.report, caller, effect))
        if seen is not None:
            self.effects.submit(grant, decision_id, partial(pdp.observe, caller, seen))
