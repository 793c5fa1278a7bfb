"""A remote MCP gateway's own audit records, each recorded once by the id the gateway chose.

A gateway deciding through ``tether serve`` posts its records (``POST /v1/gateway/events``)
from an outbox that retries when no answer came back, so serve can receive one event twice: a
retry after an answer that was lost, or a body replayed by anyone holding the gateway's SVID.
Each event carries an id the gateway chose (``gev_…``) and keeps across retries; the row of
``gateway_events`` keyed on ``(gateway, event_id)`` is inserted in the same transaction as the
audit record, so an id is recorded once on every replica at once (PostgreSQL: a second insert
waits for the first's commit, then adds nothing) and a refused post writes nothing.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from tether.core.audit import AuditRecord
from tether.core.errors import Conflict, ErrorCode
from tether.service.ports import AuditEntry
from tether.store.db import AUDIT, Database
from tether.store.schema import gateway_events

_INSERT: Final = {
    name: dialect.insert(gateway_events)
    .on_conflict_do_nothing(index_elements=["gateway", "event_id"])
    .returning(gateway_events.c.event_id)
    for name, dialect in (("postgresql", pg_dialect), ("sqlite", sqlite_dialect))
}


def record_gateway_event(
    db: Database, gateway: str, event_id: str, audit: AuditEntry
) -> AuditRecord:
    """Seal ``audit`` into the chain as ``gateway``'s event ``event_id``; raise
    ``Conflict(EVENT_REPLAYED)``, writing nothing, when that gateway's id is already recorded."""
    with db.write(AUDIT, "record the gateway's event") as tx:
        # INVARIANT: one audit record per (gateway, event id), across replicas: the primary key
        # decides, not a read before the write.
        params = {"gateway": gateway, "event_id": event_id, "record_id": audit.record_id}
        if tx.conn.execute(_INSERT[db.backend], params).first() is None:
            raise Conflict(
                f"event {event_id} from this gateway is already recorded; a retry of an event "
                "serve took is done (drop it from the outbox), a new event needs a new id",
                code=ErrorCode.EVENT_REPLAYED,
            )
        return tx.append(audit)
