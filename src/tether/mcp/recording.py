"""The gateway's own audit records: pins, withheld tools, upstream failures (DESIGN, principle 11).

Decisions and effects are recorded by the service (``Authorizer``, ``EffectService``); this module
adds what only the gateway sees. Entries go through ``Store.append_audit`` so they are sealed into
the same hash chain. Bodies name tools, upstreams, digests and failure kinds, never argument
values, credentials or result contents.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio.to_thread

from tether.core.audit import AuditKind
from tether.core.ids import IdFactory
from tether.core.risks import Risk
from tether.core.scope import JSONValue
from tether.service.ports import AuditEntry, Clock, Store


@dataclass(frozen=True, slots=True)
class GatewayAudit:
    store: Store
    clock: Clock
    ids: IdFactory

    def entry(
        self, kind: AuditKind, body: dict[str, JSONValue], agent: str | None = None
    ) -> AuditEntry:
        return AuditEntry(
            record_id=self.ids.audit(),
            at=self.clock.now(),
            kind=kind,
            agent=agent,
            task_id=None,
            body=body,
        )

    def append(self, kind: AuditKind, body: dict[str, JSONValue], agent: str | None = None) -> None:
        self.store.append_audit(self.entry(kind, body, agent))

    async def append_async(
        self, kind: AuditKind, body: dict[str, JSONValue], agent: str | None = None
    ) -> None:
        entry = self.entry(kind, body, agent)
        await anyio.to_thread.run_sync(self.store.append_audit, entry)


def pinned_body(
    tool: str, sha256: str, how: str, previous: str | None = None
) -> dict[str, JSONValue]:
    return {
        "tool": tool,
        "sha256": sha256,
        "previous_sha256": previous,
        "how": how,
        "risks": [Risk.ASI04.value],
    }


def withheld_body(
    tool: str, pinned: str, seen: str, stage: str, upstream: str
) -> dict[str, JSONValue]:
    return {
        "tool": tool,
        "upstream": upstream,
        "code": "tool_descriptor_changed",
        "pinned_sha256": pinned,
        "seen_sha256": seen,
        "stage": stage,
        "risks": [Risk.ASI04.value],
    }


def failure_body(
    upstream: str, kind: str, message: str, tool: str | None, decision_id: str | None
) -> dict[str, JSONValue]:
    return {
        "upstream": upstream,
        "failure": kind,
        "message": message,
        "tool": tool,
        "decision_id": decision_id,
        "risks": [Risk.ASI08.value],
    }
