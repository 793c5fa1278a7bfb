"""Break-glass requests in SQL, kept whole as JSON with lookup columns, like approvals.

Every change is a read-modify-write inside the store's write transaction (the chain-head lock
serializes writers), audited in the same commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tether.core.breakglass import BreakGlass
from tether.core.errors import ErrorCode, NotFound
from tether.service.ports import AuditEntry
from tether.store import breakglass_rows as stored
from tether.store.sql import SqlStore

_STORE = ErrorCode.STORE_UNAVAILABLE


class SqlBreakGlassStore:
    """Break-glass state in the same database and audit chain as ``store``."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def create(self, bg: BreakGlass, audit: AuditEntry) -> None:
        with self._store.db.write(_STORE, "record the break-glass request") as tx:
            tx.conn.execute(
                stored.INSERT,
                {
                    "breakglass_id": bg.breakglass_id,
                    "task_id": bg.task_id,
                    "state": bg.state.value,
                    "requested_at": bg.requested_at,
                    "doc": stored.to_doc(bg),
                },
            )
            tx.append(audit)

    def get(self, breakglass_id: str) -> BreakGlass | None:
        with self._store.db.read(_STORE, "read the break-glass request") as conn:
            row = conn.execute(stored.SELECT, {"b_id": breakglass_id}).first()
        return None if row is None else stored.from_doc(row.doc)

    def for_task(self, task_id: str) -> Sequence[BreakGlass]:
        with self._store.db.read(_STORE, "read break-glass requests") as conn:
            rows = conn.execute(stored.FOR_TASK, {"b_task": task_id}).all()
        return [stored.from_doc(r.doc) for r in rows]

    def list(self, limit: int = 100) -> Sequence[BreakGlass]:
        with self._store.db.read(_STORE, "list break-glass requests") as conn:
            rows = conn.execute(stored.LIST, {"b_limit": max(1, limit)}).all()
        return [stored.from_doc(r.doc) for r in rows]

    def update(
        self,
        breakglass_id: str,
        apply: Callable[[BreakGlass], BreakGlass],
        audit: Callable[[BreakGlass], AuditEntry],
    ) -> BreakGlass:
        with self._store.db.write(_STORE, "update the break-glass request") as tx:
            # INVARIANT: no vote is lost: the row is locked from this read to the commit.
            row = tx.conn.execute(stored.LOCK, {"b_id": breakglass_id}).first()
            if row is None:
                raise NotFound(
                    f"no break-glass request {breakglass_id}",
                    code=ErrorCode.BREAKGLASS_NOT_FOUND,
                )
            after = apply(stored.from_doc(row.doc))
            tx.conn.execute(
                stored.REPLACE,
                {
                    "b_id": breakglass_id,
                    "b_state": after.state.value,
                    "b_doc": stored.to_doc(after),
                },
            )
            tx.append(audit(after))
            return after
