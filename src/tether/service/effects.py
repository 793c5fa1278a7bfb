"""Effects: after a call runs, the enforcement point reports what it did against its decision.

One set of checks for every way an effect arrives (bounds, recipients, the decision and its
agent), then one of two writes: :meth:`EffectService.report` writes it in a transaction of its
own before answering (the HTTP API, the egress proxy), with the observation of the call's result
when one came with it; :meth:`EffectService.queue`, for an
enforcement point that answered its call already (the MCP gateway), hands it to the decisions'
group commit and returns what the caller awaits, while the decisions on its task wait for it
(:class:`~tether.service.ports.QueuedEffects`).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Sequence

from tether.core.audit import AuditKind, AuditRecord
from tether.core.effect import Effect, EffectStatus
from tether.core.errors import ErrorCode, InvalidRequest, NotFound, TetherError, Unavailable
from tether.core.identity import Workload
from tether.core.ids import DecisionId, IdFactory
from tether.core.verdict import Decision
from tether.service.ports import (
    AuditEntry,
    Clock,
    DecisionLog,
    ObservationStore,
    ObservedRows,
    QueuedEffects,
)
from tether.service.recording import Recorder
from tether.service.settings import ServiceSettings

_MAX_COUNT = 2**53


class EffectService:
    def __init__(
        self,
        *,
        store: DecisionLog,
        clock: Clock,
        ids: IdFactory,
        recorder: Recorder,
        settings: ServiceSettings,
        queue: QueuedEffects | None = None,
        observations: ObservationStore | None = None,
    ) -> None:
        """``queue``: the group commit :meth:`queue` writes through (the same database as
        ``store``); without it :meth:`queue` is not offered. ``observations``: where
        :meth:`report` keeps a call's observation whose effect it refused before writing
        (without it, :meth:`report` takes no observation)."""
        self._store = store
        self._observations = observations
        self._queue = queue
        self._clock = clock
        self._ids = ids
        self._rec = recorder
        self._settings = settings

    def report(
        self,
        agent: Workload,
        decision_id: DecisionId,
        status: EffectStatus,
        records: int | None = None,
        bytes_: int | None = None,
        recipients: Sequence[str] = (),
        observed: ObservedRows | None = None,
    ) -> Effect:
        """Check and write the effect of ``decision_id`` in a transaction of its own.

        ``observed``: the call's result as provenance checked it
        (:meth:`~tether.service.provenance.ProvenanceService.checked_result`), written in the
        same transaction, after the effect. What the agent was shown is kept whatever becomes
        of the effect: an effect refused (its input, its decision, a second report) raises
        its refusal once the observation is written. A store failure writes neither."""
        if observed is None:
            effect, entry = self._checked(agent, decision_id, status, records, bytes_, recipients)
            self._store.record_effect(effect, entry)
            return effect
        observations = self._observations
        assert observations is not None, "report(observed=...) needs the observation store"
        try:
            effect, entry = self._checked(agent, decision_id, status, records, bytes_, recipients)
        except Unavailable:
            raise
        except TetherError:
            # Refused before any write: no effect to write it with.
            observations.add_observations(observed.entries, observed.at, observed.limit)
            raise
        self._store.record_effect(effect, entry, observed)
        return effect

    @property
    def queues(self) -> bool:
        """Whether :meth:`queue` is offered (a store with a group commit to join)."""
        return self._queue is not None

    def queue(
        self,
        agent: Workload,
        decision_id: DecisionId,
        status: EffectStatus,
        records: int | None = None,
        bytes_: int | None = None,
        recipients: Sequence[str] = (),
        observed: ObservedRows | None = None,
    ) -> Awaitable[AuditRecord]:
        """Check the effect now, exactly as :meth:`report` does (raising what it raises), then
        queue its write into the next group commit and return what the running event loop
        awaits: its audit record, or ``Unavailable`` if its batch did not commit.
        ``observed``: the call's result as provenance checked it
        (:meth:`~tether.service.provenance.ProvenanceService.checked_result`), written in
        the same queued write (:meth:`~tether.service.ports.QueuedEffects.queue_effect`)."""
        assert self._queue is not None, "queue() needs the store's group commit"
        effect, entry = self._checked(agent, decision_id, status, records, bytes_, recipients)
        return self._queue.queue_effect(effect, entry, observed)

    def _checked(
        self,
        agent: Workload,
        decision_id: DecisionId,
        status: EffectStatus,
        records: int | None,
        bytes_: int | None,
        recipients: Sequence[str],
    ) -> tuple[Effect, AuditEntry]:
        """The effect and its audit record, once its input and decision are checked."""
        for name, value in (("records", records), ("bytes", bytes_)):
            if value is not None and not (0 <= value < _MAX_COUNT):
                raise InvalidRequest(
                    f"{name} must be a non-negative integer", code=ErrorCode.INVALID_FIELD
                )
        if len(recipients) > self._settings.max_recipients or any(
            not r or len(r) > 320 for r in recipients
        ):
            raise InvalidRequest(
                f"recipients must be at most {self._settings.max_recipients} non-empty "
                "addresses of at most 320 characters",
                code=ErrorCode.INVALID_FIELD,
            )
        decision = self._store.get_decision(decision_id)
        if decision is None or not hmac.compare_digest(decision.agent, agent.id):
            raise NotFound(
                f"no decision {decision_id!r} for this agent", code=ErrorCode.DECISION_NOT_FOUND
            )
        now = self._clock.now()
        effect = Effect(
            effect_id=self._ids.effect(),
            decision_id=decision_id,
            status=status,
            records=records,
            bytes=bytes_,
            # Recipients are personal data: keyed MACs let auditors correlate without reading
            # them, and the store never holds the addresses.
            recipients=tuple(self._rec.secret_value(r) for r in recipients),
            reported_at=now,
        )
        body = effect.to_json()
        body["recipient_count"] = len(recipients)
        body["decision"] = decision.decision.value
        body["call"] = {
            "tool": decision.tool,
            "action": decision.action.value,
            "dataset": decision.dataset,
        }
        if decision.decision is not Decision.ALLOW:
            # The tool ran although tether did not allow it: keep the evidence, loudly.
            body["ran_without_allow"] = True
        entry = self._rec.entry(
            AuditKind.EFFECT, now, agent=agent.id, task_id=decision.task_id, body=body
        )
        return effect, entry
