"""Break-glass requests in SQL, kept whole as JSON with lookup columns, like approvals.

Every change is a read-modify-write inside the store's write transaction (the chain-head lock
serializes writers), audited in the same commit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, bindparam, insert, select, update

from tether.core.approval import Vote
from tether.core.breakglass import BreakGlass, BreakGlassId, BreakGlassState
from tether.core.errors import ErrorCode, NotFound
from tether.core.scope import JSONValue, Scope
from tether.service.ports import AuditEntry
from tether.store.schema import breakglass
from tether.store.sql import SqlStore

_STORE = ErrorCode.STORE_UNAVAILABLE

_INSERT = insert(breakglass)
_SELECT = select(breakglass.c.doc).where(breakglass.c.breakglass_id == bindparam("b_id"))
_FOR_TASK = select(breakglass.c.doc).where(breakglass.c.task_id == bindparam("b_task"))
_LIST = (
    select(breakglass.c.doc)
    .order_by(breakglass.c.requested_at.desc())
    .limit(bindparam("b_limit", type_=Integer()))
)
_REPLACE = (
    update(breakglass)
    .where(breakglass.c.breakglass_id == bindparam("b_id"))
    .values(state=bindparam("b_state"), doc=bindparam("b_doc"))
)


def _dt(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def to_doc(bg: BreakGlass) -> str:
    doc: dict[str, JSONValue] = {
        "breakglass_id": bg.breakglass_id,
        "task_id": bg.task_id,
        "agent": bg.agent,
        "scopes": [s.to_json() for s in bg.scopes],
        "reason": bg.reason,
        "requested_by": bg.requested_by,
        "requested_at": bg.requested_at.isoformat(),
        "decide_by": bg.decide_by.isoformat(),
        "window_seconds": bg.window_seconds,
        "required": bg.required,
        "state": bg.state.value,
        "votes": [v.to_json() for v in bg.votes],
        "active_from": _dt(bg.active_from),
        "active_until": _dt(bg.active_until),
        "review": bg.review,
        "reviewed_by": bg.reviewed_by,
        "reviewed_at": _dt(bg.reviewed_at),
    }
    return json.dumps(doc, sort_keys=True)


def from_doc(text: Any) -> BreakGlass:
    doc = json.loads(text)

    def when(key: str) -> datetime | None:
        return None if doc[key] is None else datetime.fromisoformat(doc[key])

    return BreakGlass(
        breakglass_id=BreakGlassId(str(doc["breakglass_id"])),
        task_id=str(doc["task_id"]),
        agent=str(doc["agent"]),
        scopes=tuple(Scope.from_json(s) for s in doc["scopes"]),
        reason=str(doc["reason"]),
        requested_by=str(doc["requested_by"]),
        requested_at=datetime.fromisoformat(doc["requested_at"]),
        decide_by=datetime.fromisoformat(doc["decide_by"]),
        window_seconds=int(doc["window_seconds"]),
        required=int(doc["required"]),
        state=BreakGlassState(doc["state"]),
        votes=tuple(
            Vote(
                str(v["approver"]),
                bool(v["approve"]),
                str(v["reason"]),
                datetime.fromisoformat(v["at"]),
            )
            for v in doc["votes"]
        ),
        active_from=when("active_from"),
        active_until=when("active_until"),
        review=doc["review"],
        reviewed_by=doc["reviewed_by"],
        reviewed_at=when("reviewed_at"),
    )


class SqlBreakGlassStore:
    """Break-glass state in the same database and audit chain as ``store``."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def create(self, bg: BreakGlass, audit: AuditEntry) -> None:
        with self._store._write(_STORE, "record the break-glass request") as tx:
            tx.conn.execute(
                _INSERT,
                {
                    "breakglass_id": bg.breakglass_id,
                    "task_id": bg.task_id,
                    "state": bg.state.value,
                    "requested_at": bg.requested_at,
                    "doc": to_doc(bg),
                },
            )
            tx.append(audit)

    def get(self, breakglass_id: str) -> BreakGlass | None:
        with self._store._read(_STORE, "read the break-glass request") as conn:
            row = conn.execute(_SELECT, {"b_id": breakglass_id}).first()
        return None if row is None else from_doc(row.doc)

    def for_task(self, task_id: str) -> Sequence[BreakGlass]:
        with self._store._read(_STORE, "read break-glass requests") as conn:
            rows = conn.execute(_FOR_TASK, {"b_task": task_id}).all()
        return [from_doc(r.doc) for r in rows]

    def list(self, limit: int = 100) -> Sequence[BreakGlass]:
        with self._store._read(_STORE, "list break-glass requests") as conn:
            rows = conn.execute(_LIST, {"b_limit": max(1, limit)}).all()
        return [from_doc(r.doc) for r in rows]

    def update(
        self,
        breakglass_id: str,
        apply: Callable[[BreakGlass], BreakGlass],
        audit: Callable[[BreakGlass], AuditEntry],
    ) -> BreakGlass:
        with self._store._write(_STORE, "update the break-glass request") as tx:
            row = tx.conn.execute(_SELECT, {"b_id": breakglass_id}).first()
            if row is None:
                raise NotFound(
                    f"no break-glass request {breakglass_id}",
                    code=ErrorCode.BREAKGLASS_NOT_FOUND,
                )
            after = apply(from_doc(row.doc))
            tx.conn.execute(
                _REPLACE,
                {"b_id": breakglass_id, "b_state": after.state.value, "b_doc": to_doc(after)},
            )
            tx.append(audit(after))
            return after
