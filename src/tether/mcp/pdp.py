"""Where the gateway's decisions are made: the port, and its in-process implementation.

The gateway asks a policy decision point (PDP) for six things, and nothing else:

    verify     who the bearer SVID names (every HTTP request, before MCP sees it)
    grant      what the caller's grant covers (to filter tools/list, resources, prompts)
    enforce    the verdict on one call (the one enforcement entry, ``Authorizer.enforce_async``)
    report     the effect of an allowed call (after the answer, :mod:`tether.mcp.effectqueue`)
    observe    what a result put in the agent's context (argument provenance)
    events     the gateway's own audit records (pins, withheld tools, upstream failures)

:class:`LocalDecisionPoint` does them in this process with the runtime's services (the gateway
then holds the store and the keys). Its ``report`` and ``observe`` check the effect or the
observation on the event loop, as every one is checked (``EffectService``,
``ProvenanceService``), and queue its write into the decisions' group commit: no thread hop and
no transaction of its own; the decisions on the task wait for it.
:class:`~tether.mcp.pdp_remote.RemoteDecisionPoint` does them over HTTP against ``tether serve``
(``tether mcp-gateway --pdp-url``): the gateway holds neither. The gateway chooses one at start
and never asks which it has.

Errors: ``enforce`` raises :class:`~tether.core.errors.InvalidRequest` for input the entry
refuses; ``report`` and ``observe`` raise :class:`~tether.core.errors.Unavailable` when the
record cannot be written now (it stays queued) and another ``TetherError`` when it never can.
A remote point raises ``Unavailable(pdp_unavailable)`` whenever ``tether serve`` gives no
usable answer, from every method.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import anyio.to_thread

from tether.core.audit import AuditKind
from tether.core.effect import EffectStatus
from tether.core.errors import TetherError, Unavailable
from tether.core.identity import Workload
from tether.core.ids import DecisionId
from tether.core.scope import JSONValue, Scope
from tether.core.verdict import Verdict
from tether.mcp.callers import Caller
from tether.mcp.recording import GatewayAudit
from tether.service.authorize import Authorizer
from tether.service.effects import EffectService
from tether.service.enforce import CallRequest
from tether.service.grant_reads import GrantReader
from tether.service.ports import Clock, ObservedRows, WorkloadVerifier
from tether.service.provenance import ProvenanceService


class GrantView(Protocol):
    """What a listing needs of a grant: the scope it gives a tool, if any."""

    def scope_for(self, tool: str) -> Scope | None: ...


class AuditSink(Protocol):
    """Where the gateway's own audit records go (sealed into the one hash chain)."""

    async def append_async(
        self, kind: AuditKind, body: dict[str, JSONValue], agent: str | None = None
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Effect:
    """An allowed call's effect as the gateway measured it."""

    decision_id: DecisionId
    status: EffectStatus
    records: int | None
    bytes: int
    recipients: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Observation:
    """What one result put in the agent's context: the tool (or resource, prompt) and dataset it
    came from, the result as handed back, and the allow it answered."""

    tool: str
    dataset: str | None
    result: JSONValue
    decision_id: DecisionId


class DecisionPoint(Protocol):
    @property
    def events(self) -> AuditSink: ...

    async def verify(self, token: str) -> Workload:
        """The workload ``token`` (an SVID or OIDC token) names; ``Unauthenticated`` if none."""
        ...

    async def grant(self, caller: Caller) -> GrantView | None:
        """``caller``'s grant if it is valid, bound to the caller and usable now; else ``None``."""
        ...

    async def enforce(self, caller: Caller, request: CallRequest) -> Verdict:
        """The verdict on ``request`` for ``caller`` and its grant (recorded by the PDP)."""
        ...

    async def report(self, caller: Caller, effect: Effect) -> None: ...

    async def observe(self, caller: Caller, observation: Observation) -> None: ...

    async def aclose(self) -> None: ...


class LocalDecisionPoint:
    """The runtime's own services, in this process: the store and keys are here."""

    def __init__(
        self,
        verifier: WorkloadVerifier,
        authorizer: Authorizer,
        effects: EffectService,
        grants: GrantReader,
        clock: Clock,
        audit: GatewayAudit,
        provenance: ProvenanceService | None = None,
    ) -> None:
        self._verifier = verifier
        self._authorizer = authorizer
        self._effects = effects
        self._grants = grants
        self._clock = clock
        self._audit = audit
        self._provenance = provenance

    @property
    def events(self) -> AuditSink:
        return self._audit

    async def verify(self, token: str) -> Workload:
        return self._verifier.verify(token, self._clock.now())

    async def grant(self, caller: Caller) -> GrantView | None:
        return await anyio.to_thread.run_sync(
            self._grants.usable_grant, caller.workload.id, caller.grant_token
        )

    async def enforce(self, caller: Caller, request: CallRequest) -> Verdict:
        assert caller.grant_token is not None  # the gateway checks before deciding
        # As serve's hot path decides: on the event loop where the store allows (SQLite), its
        # write awaited in the loop's group commit, shared by the calls decided in the same
        # turns; otherwise off the loop (a PostgreSQL or Redis round trip never blocks it).
        return await self._authorizer.enforce_async(caller.workload, caller.grant_token, request)

    async def report(self, caller: Caller, effect: Effect) -> None:
        effects = self._effects
        if not effects.queues:
            # A plain write (its transaction may wait on the database's lock): a worker thread.
            await anyio.to_thread.run_sync(
                _report, effects, caller.workload, effect, effect.recipients
            )
            return
        await self._queued(caller, effect)

    async def _queued(
        self, caller: Caller, effect: Effect, observed: ObservedRows | None = None
    ) -> None:
        # Checked here, on the loop, as every report is; written with the next group commit,
        # with no transaction of its own, and awaited (the gateway's effect queue holds the
        # task's next call until it is written).
        await self._effects.queue(
            caller.workload,
            effect.decision_id,
            effect.status,
            effect.records,
            effect.bytes,
            effect.recipients,
            observed,
        )

    async def record_call(
        self, caller: Caller, effect: Effect, observation: Observation | None
    ) -> None:
        """:meth:`report` and :meth:`observe` of one call, as one write where the store queues
        both (checked here as each is, written with the next group commit in one savepoint,
        the effect first): one wait, one hand-back, and no effect committed without the
        observation of what its call showed the agent."""
        provenance, grant = self._provenance, caller.grant_token
        effects = self._effects
        if (
            observation is None
            or provenance is None
            or grant is None
            or not effects.queues
            or not provenance.queues
        ):
            await self.report(caller, effect)
            if observation is not None:
                await self.observe(caller, observation)
            return
        try:
            observed, _recorded = provenance.checked_result(
                *_observed(caller.workload, grant, observation)
            )
        except Unavailable:
            raise  # nothing written: the whole call's record is kept and retried
        except TetherError:
            # The observation can never be recorded (its task ended): the effect still is.
            await self._queued(caller, effect)
            raise
        await self._queued(caller, effect, observed)

    async def observe(self, caller: Caller, observation: Observation) -> None:
        provenance, grant = self._provenance, caller.grant_token
        if provenance is None or grant is None:
            return
        args = _observed(caller.workload, grant, observation)
        if provenance.queues:
            # As an effect: checked and fingerprinted here, written with the next group commit.
            await provenance.queue_result(*args)
            return
        await anyio.to_thread.run_sync(provenance.observe_result, *args)

    async def aclose(self) -> None:
        return None


def _observed(
    workload: Workload, grant: str, observation: Observation
) -> tuple[Workload, str, str, str | None, JSONValue, DecisionId]:
    """The arguments of ProvenanceService's ``observe_result`` and ``checked_result``."""
    return (
        workload,
        grant,
        observation.tool,
        observation.dataset,
        observation.result,
        observation.decision_id,
    )


def _report(
    effects: EffectService, workload: Workload, effect: Effect, recipients: Sequence[str]
) -> None:
    effects.report(
        workload, effect.decision_id, effect.status, effect.records, effect.bytes, recipients
    )
