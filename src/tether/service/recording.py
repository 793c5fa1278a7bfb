"""Audit entries for each use case: what gets written, and what never does.

Argument values are HMAC'd unless the operator lists them as plain; recipients are HMAC'd; grant
tokens and SVIDs are never written.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from tether.core.audit import AuditKind, canonical_json, redact_args
from tether.core.call import Call
from tether.core.ids import IdFactory
from tether.core.scope import JSONValue
from tether.service.ports import AuditEntry

Mac = Callable[[bytes], str]


class Recorder:
    """Builds :class:`AuditEntry` values; the store seals them into the chain."""

    def __init__(self, ids: IdFactory, mac: Mac, plain_args: frozenset[str]) -> None:
        self._ids = ids
        self._mac = mac
        self._plain = plain_args

    def entry(
        self,
        kind: AuditKind,
        at: datetime,
        *,
        agent: str | None,
        task_id: str | None,
        body: dict[str, JSONValue],
    ) -> AuditEntry:
        return AuditEntry(
            record_id=self._ids.audit(),
            at=at,
            kind=kind,
            agent=agent,
            task_id=task_id,
            body=body,
        )

    def call(self, call: Call) -> dict[str, JSONValue]:
        return {
            "tool": call.tool,
            "action": call.action.value,
            "dataset": call.dataset,
            "args": redact_args(call.args, self._mac, self._plain),
        }

    def secret_value(self, value: JSONValue) -> str:
        return "hmac-sha256:" + self._mac(canonical_json(value))
