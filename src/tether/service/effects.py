"""Effects: after a call runs, the enforcement point reports what it did against its decision."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from tether.core.audit import AuditKind
from tether.core.effect import Effect, EffectStatus
from tether.core.errors import ErrorCode, InvalidRequest, NotFound
from tether.core.identity import Workload
from tether.core.ids import DecisionId, IdFactory
from tether.core.verdict import Decision
from tether.service.ports import Clock, DecisionLog
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
    ) -> None:
        self._store = store
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
    ) -> Effect:
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
        self._store.record_effect(
            effect,
            self._rec.entry(
                AuditKind.EFFECT, now, agent=agent.id, task_id=decision.task_id, body=body
            ),
        )
        return effect
