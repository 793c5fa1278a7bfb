"""Resources and prompts through the gateway, authorized like tools (MCP ``resources/*``,
``prompts/*``).

    resources/list, resources/templates/list
        → each upstream's, through the caller's own session → only URIs (templates) the config
          maps to a dataset the grant lets ``<upstream>.resources`` read
    resources/read, resources/subscribe
        → the URI's upstream and dataset from the config (unmapped: ``resource_not_mapped``)
        → decided as a ``read`` of that dataset by ``<upstream>.resources`` through the one
          enforcement entry (budgets, data flow, Cedar), recorded, its effect queued (bytes,
          records = contents) → forwarded as a JSON-RPC message
    resources/unsubscribe
        → forwarded to the caller's own session for a mapped URI (nothing is read)
    prompts/list → each upstream's prompts as ``<upstream>.<prompt>``, only those the grant
          covers with the prompt's mapped action and dataset (``prompts:`` in the config)
    prompts/get  → decided like a tool call (unmapped prompts are ``write``s) → forwarded

A refusal is a JSON-RPC error (these results have no ``isError``) with code :data:`REFUSED` and,
in ``data``, the same stable ``code``, ``message``, reasons and decision id a refused tool call
carries in ``_meta["tether/error"]``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from mcp.shared.exceptions import MCPError
from mcp_types import methods
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from tether.core.audit import AuditKind
from tether.core.effect import EffectStatus
from tether.core.redact import Unredactable
from tether.core.scope import MAX_TOOL_NAME, ActionKind, is_valid_name
from tether.core.verdict import Decision, Verdict
from tether.mcp.callers import Caller
from tether.mcp.config import RESOURCES_TOOL, ToolMapping
from tether.mcp.pdp import GrantView
from tether.mcp.pins import PinStatus
from tether.mcp.recording import withheld_body
from tether.mcp.redaction import RESULT
from tether.mcp.results import (
    META_APPROVAL,
    META_ERROR,
    GatewayCode,
    Handed,
    Measured,
    encoded,
    refusal,
    tool_error,
)
from tether.mcp.upstreams import FailureKind, UpstreamConnection, UpstreamFailure
from tether.service.enforce import CallRequest

if TYPE_CHECKING:
    from tether.mcp.gateway import Gateway

#: The JSON-RPC error code of a resource or prompt request tether refused (an implementation-
#: defined server error, JSON-RPC 2.0 §5.1); ``data.code`` is the stable tether code.
REFUSED: Final = -32001
SURFACE_METHODS: Final = frozenset(
    {
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "prompts/list",
        "prompts/get",
    }
)
READ_MAPPING: Final = ToolMapping(ActionKind.READ)


def _refused(result: Any) -> MCPError:
    """A refusal built for a tool call (text, ``_meta`` error) as a JSON-RPC error."""
    error = dict((result.meta or {}).get(META_ERROR) or {})
    message = result.content[0].text if result.content else "refused by tether"
    return MCPError(code=REFUSED, message=message, data=error)


def _covers(grant: GrantView | None, tool: str, action: ActionKind, dataset: str | None) -> bool:
    scope = grant.scope_for(tool) if grant is not None else None
    return scope is not None and action in scope.actions and dataset in scope.allowed_datasets


class Surface:
    def __init__(self, gateway: Gateway) -> None:
        self._gw = gateway

    async def handle(
        self, method: str, caller: Caller | None, params: Mapping[str, Any], version: str
    ) -> dict[str, Any]:
        """Answer one resources/prompts request; raises :class:`MCPError` for a refusal."""
        if caller is None:
            raise _refused(tool_error(GatewayCode.UNAUTHENTICATED, "not authenticated"))
        meta = params.get("_meta")
        caller = caller.with_meta(meta if isinstance(meta, dict) else None)
        match method:
            case "resources/list":
                return await self._list(caller, method, version, "resources", "uri")
            case "resources/templates/list":
                return await self._list(caller, method, version, "resourceTemplates", "uriTemplate")
            case "prompts/list":
                return await self._list_prompts(caller, version)
            case "resources/unsubscribe":
                session, _ = self._resource(caller, params)
                try:
                    return await self._forward(session, method, {"uri": params["uri"]}, version)
                except UpstreamFailure as failure:
                    await self._gw.record_failure(failure, None, caller, None)
                    raise _refused(
                        tool_error(GatewayCode.UPSTREAM_FAILED, failure.message)
                    ) from None
            case "prompts/get":
                return await self._get_prompt(caller, params, version)
            case _:  # resources/read, resources/subscribe
                return await self._read(caller, method, params, version)

    # -- listing -------------------------------------------------------------------------------

    async def _list(
        self, caller: Caller, method: str, version: str, key: str, field: str
    ) -> dict[str, Any]:
        gw = self._gw
        grant = await gw.grant_of(caller)
        if grant is None:
            return _shaped("", method, version, {key: []})
        shown: list[Any] = []
        for upstream in gw.config.upstreams:
            session = gw.session_for(upstream.name, caller)
            try:
                declared = await session.ready()
                if declared.resources is None:
                    continue
                listed = await session.request(method, {})
            except UpstreamFailure as failure:
                await gw.record_failure(failure, None, caller, None)
                continue
            items = listed.get(key)
            for item in items if isinstance(items, list) else []:
                value = item.get(field) if isinstance(item, dict) else None
                if not isinstance(value, str):
                    continue
                dataset = gw.config.dataset_of(upstream.name, value)
                tool = f"{upstream.name}.{RESOURCES_TOOL}"
                if dataset is not None and _covers(grant, tool, ActionKind.READ, dataset):
                    shown.append(item)
        return _shaped("", method, version, await self._redacted(caller, method, {key: shown}))

    async def _list_prompts(self, caller: Caller, version: str) -> dict[str, Any]:
        """Each upstream's prompts, pin-checked (:mod:`tether.mcp.prompts`): only those whose
        descriptor is the pinned one and that the grant covers."""
        gw = self._gw
        grant = await gw.grant_of(caller)
        shown: list[Any] = []
        for upstream in gw.config.upstreams if grant is not None else ():
            session = gw.session_for(upstream.name, caller)
            try:
                if (await session.ready()).prompts is None:
                    continue
                prompts = await gw.prompts.refresh(session)
            except UpstreamFailure as failure:
                await gw.record_failure(failure, None, caller, None)
                continue
            for prompt in prompts:
                mapping = gw.config.prompt(prompt.exposed)
                if _covers(grant, prompt.exposed, mapping.action, mapping.dataset) and (
                    gw.prompts.status(prompt) is PinStatus.MATCH
                ):
                    shown.append(prompt.listing)
        listing = await self._redacted(caller, "prompts/list", {"prompts": shown})
        return _shaped("", "prompts/list", version, listing)

    async def _redacted(self, caller: Caller, method: str, listing: dict[str, Any]) -> Any:
        """A listing with the secrets given to upstreams redacted (and audited)."""
        return (await self._gw.secrets.listing(method, listing, caller.workload.id)).value

    # -- reads ---------------------------------------------------------------------------------

    def _resource(
        self, caller: Caller, params: Mapping[str, Any]
    ) -> tuple[UpstreamConnection, str]:
        """The caller's session with the upstream a URI belongs to, and its dataset."""
        uri = params.get("uri")
        if isinstance(uri, str):
            for mapping in self._gw.config.resources:
                if mapping.matches(mapping.upstream, uri):
                    return self._gw.session_for(mapping.upstream, caller), mapping.dataset
        raise _refused(
            tool_error(
                GatewayCode.RESOURCE_NOT_MAPPED,
                "no resource of any upstream is mapped to this URI in the gateway's config",
            )
        )

    async def _read(
        self, caller: Caller, method: str, params: Mapping[str, Any], version: str
    ) -> dict[str, Any]:
        session, dataset = self._resource(caller, params)
        uri = str(params.get("uri"))
        tool = f"{session.name}.{RESOURCES_TOOL}"
        request = CallRequest(tool, ActionKind.READ, dataset, {"uri": uri}, None)
        return await self._decided(caller, session, tool, request, method, {"uri": uri}, version)

    async def _get_prompt(
        self, caller: Caller, params: Mapping[str, Any], version: str
    ) -> dict[str, Any]:
        name = params.get("name")
        upstream, _, prompt = name.partition(".") if isinstance(name, str) else ("", "", "")
        if not prompt or not is_valid_name(str(name), MAX_TOOL_NAME):
            raise _refused(tool_error(GatewayCode.INVALID_ARGUMENTS, "the prompt name is invalid"))
        gw = self._gw
        if gw.config.upstream(upstream) is None:
            raise _refused(tool_error(GatewayCode.TOOL_NOT_FOUND, f"no upstream serves {name!r}"))
        raw_args = params.get("arguments")
        args = dict(raw_args) if isinstance(raw_args, dict) else {}
        meta = params.get("_meta")
        approval = meta.get(META_APPROVAL) if isinstance(meta, dict) else None
        session = gw.session_for(upstream, caller)
        refused = await self._prompt_changed(caller, session, str(name))
        if refused is not None:
            raise refused
        listed = gw.prompts.get(str(name)) is not None
        mapping = gw.config.prompt(str(name))
        request = CallRequest(
            str(name),
            mapping.action,
            mapping.dataset,
            args,
            approval if isinstance(approval, str) and len(approval) <= 64 else None,
        )
        forwarded = {"name": prompt, "arguments": args}
        return await self._decided(
            caller, session, str(name), request, "prompts/get", forwarded, version, listed
        )

    async def _prompt_changed(
        self, caller: Caller, session: UpstreamConnection, name: str
    ) -> MCPError | None:
        """The refusal of a ``prompts/get`` whose prompt's descriptor differs from its pin
        (after the prompts are made current as ``pin_check`` says), or ``None``."""
        gw = self._gw
        try:
            await gw.prompts.current(session)
        except UpstreamFailure as failure:
            await gw.record_failure(failure, name, caller, None)
            return _refused(tool_error(GatewayCode.UPSTREAM_FAILED, failure.message))
        entry = gw.prompts.get(name)
        if entry is None:
            return None
        check = await gw.prompts.verify(entry, stage="get")
        if check.status is PinStatus.CHANGED and not gw.prompts.each_call(session):
            # Perhaps reverted upstream without a word: look once more before refusing.
            with contextlib.suppress(UpstreamFailure):
                await gw.prompts.refresh(session)
            fresh = gw.prompts.get(name)
            if fresh is not None:
                entry, check = fresh, await gw.prompts.verify(fresh, stage="get")
        if check.status is not PinStatus.CHANGED:
            return None
        grant = await gw.grant_of(caller)
        mapping = gw.config.prompt(name)
        if not _covers(grant, name, mapping.action, mapping.dataset):
            return None  # not this caller's prompt: the authorizer denies it without a hint
        await gw.audit.append_async(
            AuditKind.TOOL_WITHHELD,
            withheld_body(entry.key, check.pinned, check.seen, "get", entry.upstream),
            agent=caller.workload.id,
        )
        return _refused(
            tool_error(
                GatewayCode.TOOL_DESCRIPTOR_CHANGED,
                f"the descriptor of prompt {name!r} changed since it was pinned; an operator "
                f"must review and approve it (tether mcp pins approve {entry.key}) before it "
                "is used",
            )
        )

    async def _decided(
        self,
        caller: Caller,
        session: UpstreamConnection,
        name: str,
        request: CallRequest,
        method: str,
        forwarded: dict[str, Any],
        version: str,
        listed: bool = True,
    ) -> dict[str, Any]:
        """Decide, forward on allow, record the effect; raise the refusal otherwise. An
        allowed request for what its upstream does not list (``listed`` false) is refused
        (``tool_not_found``): it was never pinned."""
        gw = self._gw
        if caller.grant_token is None:
            raise _refused(
                tool_error(GatewayCode.GRANT_MISSING, "name your grant in X-Tether-Grant")
            )
        verdict = await gw.decide(caller, request)
        if not isinstance(verdict, Verdict):
            raise _refused(verdict)
        if verdict.decision is not Decision.ALLOW:
            raise _refused(refusal(verdict))
        decision_id = verdict.decision_id
        if not listed:
            gw.report(caller, decision_id, None)
            raise _refused(
                tool_error(GatewayCode.TOOL_NOT_FOUND, f"{session.name} lists no {name!r}")
            )
        try:
            answer = await self._forward(session, method, forwarded, version)
        except UpstreamFailure as failure:
            gw.report(caller, decision_id, None)
            await gw.record_failure(failure, name, caller, decision_id)
            raise _refused(
                tool_error(GatewayCode.UPSTREAM_FAILED, failure.message, decision_id=decision_id)
            ) from None
        data = encoded(answer)
        items = answer.get("contents", answer.get("messages"))
        records = len(items) if isinstance(items, list) else None
        withheld: tuple[GatewayCode, str] | None = None
        if len(data) > gw.config.max_result_bytes:
            withheld = (GatewayCode.UPSTREAM_RESULT_TOO_LARGE, "the answer is over the limit")
        else:
            try:
                redacted = gw.secrets.redact(answer, data)
            except Unredactable:
                withheld = (GatewayCode.UPSTREAM_LEAKED_SECRET, "the answer held a credential")
            else:
                if redacted.found:
                    answer = redacted.value  # type: ignore[assignment]  # an object stays one
                    data = encoded(answer)
                    agent = caller.workload.id
                    await gw.secrets.record(
                        session.name, name, RESULT, redacted.found, decision_id, agent
                    )
        if withheld is not None:
            gw.report(caller, decision_id, Measured(EffectStatus.ERROR, 0, None, ()))
            kind = (
                FailureKind.TOO_LARGE
                if withheld[0] is GatewayCode.UPSTREAM_RESULT_TOO_LARGE
                else FailureKind.LEAKED_SECRET
            )
            why = UpstreamFailure(session.name, kind, f"{withheld[1]}; it was withheld")
            await gw.record_failure(why, name, caller, decision_id)
            raise _refused(tool_error(withheld[0], why.message, decision_id=decision_id))
        # INVARIANT: the one place a resource or prompt is handed back to the agent.
        handed = Handed(name, request.dataset, answer)
        gw.report(caller, decision_id, Measured(EffectStatus.OK, len(data), records, ()), handed)
        return answer

    async def _forward(
        self, session: UpstreamConnection, method: str, params: dict[str, Any], version: str
    ) -> dict[str, Any]:
        return _shaped(session.name, method, version, await session.request(method, params))


def _shaped(upstream: str, method: str, version: str, raw: dict[str, Any]) -> dict[str, Any]:
    """A result for the agent's protocol revision, checked and sieved by the SDK; never cached
    (``ttlMs: 0``, ``cacheScope: private``: what one agent sees is never another's)."""
    if version in MODERN_PROTOCOL_VERSIONS:
        raw = {**raw, "resultType": "complete", "ttlMs": 0, "cacheScope": "private"}
    try:
        return methods.serialize_server_result(method, version, raw)
    except (ValidationError, KeyError):
        raise UpstreamFailure(
            upstream, FailureKind.MALFORMED, f"the answer to {method} is not valid MCP"
        ) from None
