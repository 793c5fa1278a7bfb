"""Record a remote MCP gateway's own audit records (``tool_pinned``, ``tool_withheld``,
``upstream_failed``, ``secret_redacted``), each exactly once.

A gateway deciding through ``tether serve`` posts them from an outbox that retries when it got
no answer (:mod:`tether.mcp.pdp_remote`). Each event carries an id the gateway chose
(``gev_`` and 26 base32 digits, :class:`~tether.core.ids.IdFactory`) and keeps with the outbox
entry, so the retry of a post serve took carries the same id. The store keeps the id with the
audit record it became, under a unique key (:mod:`tether.store.gateway_events`): a second post
of the same id from the same gateway is refused (``Conflict(event_replayed)``) and writes
nothing, on every replica; the gateway reads that answer as "delivered". Ids are kept as long as
the audit record (tether deletes neither), so no replay window needs bounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tether.core.audit import AuditKind
from tether.core.errors import ErrorCode, Forbidden, InvalidRequest
from tether.core.identity import Workload
from tether.core.ids import IdFactory, IdKind, is_well_formed
from tether.core.scope import JSONValue
from tether.service.ports import AuditEntry, AuditLog, Clock

#: The audit kinds a gateway may report; every other kind is written by this server alone.
GATEWAY_EVENT_KINDS: Final = frozenset(
    {
        AuditKind.TOOL_PINNED,
        AuditKind.TOOL_WITHHELD,
        AuditKind.UPSTREAM_FAILED,
        AuditKind.SECRET_REDACTED,
    }
)
#: An event id's length (``gev_`` and 26 digits); anything longer is refused before parsing.
EVENT_ID_LENGTH: Final = 30


@dataclass(frozen=True, slots=True)
class GatewayEvent:
    """One record as a gateway posted it."""

    event_id: str
    kind: AuditKind
    agent: str | None
    body: dict[str, JSONValue]


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    record_id: str
    kind: AuditKind


def check_event_id(event_id: str) -> str:
    """``event_id`` if it is a gateway event id; ``InvalidRequest`` saying what is wrong."""
    if len(event_id) > EVENT_ID_LENGTH:
        raise InvalidRequest(
            f"event_id is {len(event_id)} characters; a gateway event id is {EVENT_ID_LENGTH} "
            "(gev_ and 26 base32 digits)",
            code=ErrorCode.PAYLOAD_TOO_LARGE,
        )
    if not is_well_formed(event_id, IdKind.GATEWAY_EVENT):
        raise InvalidRequest(
            "event_id must be an id the gateway chose for this event (gev_ and 26 base32 "
            "digits), kept across retries of the same event",
            code=ErrorCode.INVALID_FIELD,
        )
    return event_id


class GatewayEvents:
    """The use case behind ``POST /v1/gateway/events``."""

    def __init__(
        self, store: AuditLog, clock: Clock, ids: IdFactory, gateways: frozenset[str]
    ) -> None:
        self._store = store
        self._clock = clock
        self._ids = ids
        self._gateways = gateways

    def record(self, gateway: Workload, event: GatewayEvent) -> RecordedEvent:
        """Seal ``event`` into the chain, naming the gateway that reported it; refuse a
        workload that is not a listed gateway, a kind only serve writes, a malformed id, and an
        id this gateway has already had recorded (``event_replayed``)."""
        if gateway.id not in self._gateways:
            raise Forbidden(
                "this workload is not an MCP gateway this server accepts records from (tether "
                "serve --gateway-ids)",
                code=ErrorCode.NOT_A_GATEWAY,
            )
        if event.kind not in GATEWAY_EVENT_KINDS:
            raise InvalidRequest(
                f"a gateway may not report {event.kind.value!r} records",
                code=ErrorCode.INVALID_FIELD,
            )
        event_id = check_event_id(event.event_id)
        body: dict[str, JSONValue] = {
            **event.body,
            "reported_by": gateway.id,
            "event_id": event_id,
        }
        entry = AuditEntry(
            record_id=self._ids.audit(),
            at=self._clock.now(),
            kind=event.kind,
            agent=event.agent,
            task_id=None,
            body=body,
        )
        written = self._store.record_gateway_event(gateway.id, event_id, entry)
        return RecordedEvent(written.record_id, written.kind)
