"""Effects: what a call actually did, reported by the enforcement point after it ran."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from tether.core.ids import DecisionId, EffectId
from tether.core.scope import JSONValue


class EffectStatus(StrEnum):
    OK = "ok"
    ERROR = "error"
    PARTIAL = "partial"


@dataclass(frozen=True, slots=True)
class Effect:
    effect_id: EffectId
    decision_id: DecisionId
    status: EffectStatus
    records: int | None
    bytes: int | None
    recipients: tuple[str, ...]
    reported_at: datetime

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "effect_id": self.effect_id,
            "decision_id": self.decision_id,
            "status": self.status.value,
            "records": self.records,
            "bytes": self.bytes,
            "recipients": list(self.recipients),
            "reported_at": self.reported_at.isoformat(),
        }
