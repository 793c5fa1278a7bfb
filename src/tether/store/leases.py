"""Leases in SQL, run inside the store's write transactions.

A lease row never holds the credential itself, only what it covers and its state. Two columns
drive revocation: ``state`` (active, revoked, expired) says whether tether still honours the
lease; ``released`` says whether the downstream credential is gone (a PostgreSQL role dropped).
A lease ends in the same transaction as whatever ended it (its task closing, the kill switch, its
expiry); releasing it downstream happens after, and the reaper retries every ended lease that is
not yet released until it is, across restarts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, insert, select, update

from tether.core.errors import ErrorCode
from tether.core.ids import GrantId, TaskId
from tether.core.lease import IssuerKind, Lease, LeaseId, LeaseState
from tether.core.scope import Scope
from tether.service.ports import AuditEntry
from tether.store.schema import leases

if TYPE_CHECKING:
    from tether.store.sql import SqlStore

_STORE = ErrorCode.STORE_UNAVAILABLE

#: Issuers whose credential needs no downstream clean-up: a scoped token dies on its own.
_NOTHING_TO_RELEASE = frozenset({IssuerKind.SCOPED_JWT})


def params(lease: Lease) -> dict[str, Any]:
    return {
        "lease_id": lease.lease_id,
        "task_id": lease.task_id,
        "grant_id": lease.grant_id,
        "decision_id": lease.decision_id,
        "agent": lease.agent,
        "issuer_name": lease.issuer_name,
        "issuer": lease.issuer.value,
        "scope": lease.scope.to_json(),
        "issued_at": lease.issued_at,
        "expires_at": lease.expires_at,
        "max_expires_at": lease.max_expires_at,
        "renewable": lease.renewable,
        "state": lease.state.value,
        "ended_at": lease.ended_at,
        "released": lease.state is not LeaseState.ACTIVE and lease.issuer in _NOTHING_TO_RELEASE,
    }


def from_row(row: Any) -> Lease:
    scope = row.scope if not isinstance(row.scope, str) else json.loads(row.scope)
    return Lease(
        lease_id=LeaseId(row.lease_id),
        task_id=TaskId(row.task_id),
        grant_id=GrantId(row.grant_id),
        agent=row.agent,
        issuer=IssuerKind(row.issuer),
        scope=Scope.from_json(scope),
        issued_at=row.issued_at,
        expires_at=row.expires_at,
        max_expires_at=row.max_expires_at,
        renewable=bool(row.renewable),
        state=LeaseState(row.state),
        ended_at=row.ended_at,
        issuer_name=row.issuer_name,
        decision_id=row.decision_id,
    )


def insert_lease(conn: Connection, lease: Lease) -> None:
    conn.execute(insert(leases).values(**params(lease)))


def get(conn: Connection, lease_id: str) -> Lease | None:
    row = conn.execute(select(leases).where(leases.c.lease_id == lease_id)).first()
    return None if row is None else from_row(row)


def of_task(conn: Connection, task_id: str) -> list[Lease]:
    rows = conn.execute(
        select(leases).where(leases.c.task_id == task_id).order_by(leases.c.issued_at)
    ).all()
    return [from_row(r) for r in rows]


def recent(conn: Connection, limit: int, state: LeaseState | None = None) -> list[Lease]:
    query = select(leases).order_by(leases.c.issued_at.desc()).limit(limit)
    if state is not None:
        query = query.where(leases.c.state == state.value)
    return [from_row(r) for r in conn.execute(query).all()]


def end_active(
    conn: Connection, task_ids: Iterable[str], state: LeaseState, at: datetime
) -> list[Lease]:
    """End every active lease of ``task_ids`` (revoked, or expired), returning them as ended.

    INVARIANT: a lease is active only while its task is open: this runs in the transaction that
    ends the tasks."""
    ids = list(dict.fromkeys(task_ids))
    if not ids:
        return []
    rows = conn.execute(
        select(leases).where(leases.c.task_id.in_(ids), leases.c.state == LeaseState.ACTIVE.value)
    ).all()
    ended = [_end(conn, from_row(r), state, at) for r in rows]
    return [lease for lease in ended if lease is not None]


def end_one(conn: Connection, lease_id: str, state: LeaseState, at: datetime) -> Lease | None:
    """End one active lease; ``None`` when it was not active (already ended, or unknown)."""
    row = conn.execute(
        select(leases).where(
            leases.c.lease_id == lease_id, leases.c.state == LeaseState.ACTIVE.value
        )
    ).first()
    return None if row is None else _end(conn, from_row(row), state, at)


def _end(conn: Connection, lease: Lease, state: LeaseState, at: datetime) -> Lease | None:
    # An expired lease ended at its expiry, whenever the reaper noticed.
    ended_at = min(at, lease.expires_at) if state is LeaseState.EXPIRED else at
    done = conn.execute(
        update(leases)
        .where(leases.c.lease_id == lease.lease_id, leases.c.state == LeaseState.ACTIVE.value)
        .values(
            state=state.value,
            ended_at=ended_at,
            released=lease.issuer in _NOTHING_TO_RELEASE,
        )
    )
    if done.rowcount != 1:
        return None  # ended concurrently (another replica): that one audits it
    return replace(lease, state=state, ended_at=ended_at)


def past_expiry(conn: Connection, now: datetime, limit: int) -> list[str]:
    rows = conn.execute(
        select(leases.c.lease_id)
        .where(leases.c.state == LeaseState.ACTIVE.value, leases.c.expires_at <= now)
        .order_by(leases.c.expires_at)
        .limit(limit)
    ).all()
    return [str(r[0]) for r in rows]


def unreleased(conn: Connection, limit: int) -> list[Lease]:
    rows = conn.execute(
        select(leases)
        .where(
            leases.c.released.is_(False),
            leases.c.state != LeaseState.ACTIVE.value,
        )
        .order_by(leases.c.ended_at)
        .limit(limit)
    ).all()
    return [from_row(r) for r in rows]


def mark_released(conn: Connection, lease_id: str) -> bool:
    done = conn.execute(
        update(leases)
        .where(
            leases.c.lease_id == lease_id,
            leases.c.released.is_(False),
            leases.c.state != LeaseState.ACTIVE.value,
        )
        .values(released=True)
    )
    return bool(done.rowcount)


def count_live(conn: Connection, now: datetime) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(leases)
            .where(leases.c.state == LeaseState.ACTIVE.value, leases.c.expires_at > now)
        ).scalar_one()
    )


class SqlLeaseStore:
    """Leases in the same database and audit chain as ``store``."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def get(self, lease_id: str) -> Lease | None:
        with self._store.db.read(_STORE, "read the lease") as conn:
            return get(conn, lease_id)

    def for_task(self, task_id: str) -> list[Lease]:
        with self._store.db.read(_STORE, "read the task's leases") as conn:
            return of_task(conn, task_id)

    def recent(self, limit: int = 100, state: LeaseState | None = None) -> list[Lease]:
        with self._store.db.read(_STORE, "list leases") as conn:
            return recent(conn, max(1, limit), state)

    def count_live(self, now: datetime) -> int:
        with self._store.db.read(_STORE, "count live leases") as conn:
            return count_live(conn, now)

    def end(
        self, lease_id: str, at: datetime, audit: Callable[[Lease], AuditEntry]
    ) -> Lease | None:
        """Revoke one active lease, audited; ``None`` when it was not active."""
        with self._store.db.write(_STORE, "revoke the lease") as tx:
            ended = end_one(tx.conn, lease_id, LeaseState.REVOKED, at)
            if ended is not None:
                tx.append(audit(ended))
            return ended

    def expire_due(
        self, now: datetime, limit: int, audit: Callable[[Lease], AuditEntry]
    ) -> list[Lease]:
        """Mark active leases past their expiry as expired, each audited."""
        with self._store.db.write(_STORE, "expire leases") as tx:
            done = []
            for lease_id in past_expiry(tx.conn, now, limit):
                ended = end_one(tx.conn, lease_id, LeaseState.EXPIRED, now)
                if ended is not None:
                    tx.append(audit(ended))
                    done.append(ended)
            return done

    def unreleased(self, limit: int = 100) -> list[Lease]:
        """Ended leases whose downstream credential may still exist, oldest first."""
        with self._store.db.read(_STORE, "list leases to release") as conn:
            return unreleased(conn, max(1, limit))

    def mark_released(self, lease: Lease, audit: AuditEntry) -> bool:
        with self._store.db.write(_STORE, "record the lease released") as tx:
            if not mark_released(tx.conn, lease.lease_id):
                return False  # another replica's reaper got there first
            tx.append(audit)
            return True
