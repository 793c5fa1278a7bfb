"""Signed audit checkpoints in SQL (:mod:`tether.core.checkpoint`), beside the log they sign.

A checkpoint is stored only if it is newer than every stored one (its total size larger, and
every partition the newest stored one covers still covered, at the same size or more) and every
record it names is still there with the hash it signed. Replicas checkpoint concurrently, each
from the heads it read, so the check and the insert run under a transaction-scoped advisory lock
on PostgreSQL (SQLite's write transaction holds the whole database): of two checkpoints made at
once one is stored, and the stored ones only ever grow. Storing one takes no partition's chain
head, so it never waits on a replica's decisions. Rows are never updated or deleted (the runtime
role has ``SELECT, INSERT`` only).

Each row also keeps the Merkle frontier of each partition at its size, so the next checkpoint
extends the trees from there instead of reading the log from the start; a frontier is used only
after it hashes to the signed root (:meth:`SqlCheckpointStore.latest`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from sqlalchemy import Integer, bindparam, insert, select, text

from tether.core.audit import LEGACY_PARTITION, ChainFormat
from tether.core.checkpoint import Checkpoint
from tether.core.errors import ErrorCode, Unavailable
from tether.core.merkle import Frontier
from tether.store.schema import audit, audit_checkpoints

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.engine import RowMapping

    from tether.store.sql import SqlStore

_AUDIT = ErrorCode.AUDIT_UNAVAILABLE

CHECKPOINT_LOCK_KEY: Final = int.from_bytes(
    hashlib.sha256(b"tether.store.checkpoints").digest()[:8], "big", signed=True
)
"""The ``pg_advisory_xact_lock`` key held while a checkpoint is checked and stored."""

_ALL = select(audit_checkpoints).order_by(audit_checkpoints.c.size)
_LATEST = select(audit_checkpoints).order_by(audit_checkpoints.c.size.desc()).limit(1)
_AT_LEAST = (
    select(audit_checkpoints)
    .where(audit_checkpoints.c.size >= bindparam("b_size", type_=Integer()))
    .order_by(audit_checkpoints.c.size)
    .limit(1)
)
_HASH_AT = select(audit.c.hash).where(
    audit.c.partition_id == bindparam("b_part"),
    audit.c.seq == bindparam("b_seq", type_=Integer()),
)
_INSERT = insert(audit_checkpoints)


class SqlCheckpointStore:
    """The ``audit_checkpoints`` table of one :class:`~tether.store.SqlStore`."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    @property
    def chain_format(self) -> ChainFormat:
        return self._store.chain_format

    def all(self) -> list[Checkpoint]:
        """Every stored checkpoint, oldest (smallest) first."""
        with self._store.db.read(_AUDIT, "read the audit checkpoints") as conn:
            return [_checkpoint(r._mapping) for r in conn.execute(_ALL)]

    def covering(self, size: int) -> Checkpoint | None:
        """The oldest checkpoint covering the first ``size`` records, if any."""
        with self._store.db.read(_AUDIT, "read the audit checkpoints") as conn:
            row = conn.execute(_AT_LEAST, {"b_size": size}).first()
        return None if row is None else _checkpoint(row._mapping)

    def latest(self) -> tuple[Checkpoint, dict[str, Frontier]] | None:
        """The newest checkpoint and the Merkle frontier of each partition it covers.
        ``Unavailable`` when a frontier does not hash to the root the checkpoint signed for its
        partition: the row was changed outside tether."""
        with self._store.db.read(_AUDIT, "read the latest audit checkpoint") as conn:
            row = conn.execute(_LATEST).first()
        if row is None:
            return None
        checkpoint = _checkpoint(row._mapping)
        views = checkpoint.views()
        frontiers: dict[str, Frontier] | None
        try:
            raw = json.loads(row.frontier)
            listed = raw if isinstance(raw, dict) else {LEGACY_PARTITION: raw}
            frontiers = {
                name: Frontier(views[name].size, tuple(bytes.fromhex(h) for h in hashes))
                for name, hashes in listed.items()
            }
        except (ValueError, TypeError, KeyError, AttributeError):
            frontiers = None
        if (
            frontiers is None
            or set(frontiers) != set(views)
            or any(f.root().hex() != views[name].root for name, f in frontiers.items())
        ):
            raise Unavailable(
                f"the stored checkpoint of size {checkpoint.size} does not hold together (its "
                "Merkle frontiers are not its roots): it was changed outside tether; run "
                "`tether audit verify`",
                code=_AUDIT,
            )
        return checkpoint, frontiers

    def add(self, checkpoint: Checkpoint, frontiers: Mapping[str, Frontier]) -> bool:
        """Store ``checkpoint`` if it is newer than every stored one and every record it names
        still has the hash it signed; ``False`` (nothing written) otherwise."""
        views = checkpoint.views()
        if set(frontiers) != set(views) or any(
            f.size != views[name].size for name, f in frontiers.items()
        ):
            raise ValueError("the frontiers must be the checkpoint's")
        db = self._store.db
        with db.write_conn(_AUDIT, "store the audit checkpoint") as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHECKPOINT_LOCK_KEY}
                )
            if not _newer(conn, checkpoint) or not _still_there(conn, checkpoint):
                return False
            stored = (
                {n: [h.hex() for h in f.hashes] for n, f in sorted(frontiers.items())}
                if checkpoint.partitions
                else [h.hex() for h in frontiers[LEGACY_PARTITION].hashes]
            )
            row = {k: v for k, v in checkpoint.to_json().items() if k != "partitions"}
            partitions = [p.to_json() for p in checkpoint.partitions]
            conn.execute(
                _INSERT,
                {
                    **row,
                    "frontier": json.dumps(stored),
                    "partitions": json.dumps(partitions) if partitions else "",
                },
            )
        return True


def _newer(conn: Connection, checkpoint: Checkpoint) -> bool:
    """INVARIANT: stored checkpoints only grow: a larger total, and every partition of the
    newest stored one still covered, at the same size or more."""
    row = conn.execute(_LATEST).first()
    if row is None:
        return True
    newest = _checkpoint(row._mapping)
    if newest.size >= checkpoint.size:
        return False
    views = checkpoint.views()
    return all(
        name in views and views[name].size >= seen.size for name, seen in newest.views().items()
    )


def _still_there(conn: Connection, checkpoint: Checkpoint) -> bool:
    for name, view in checkpoint.views().items():
        if view.size > 0:
            found = conn.execute(_HASH_AT, {"b_part": name, "b_seq": view.size}).scalar()
            if found != view.head:
                return False
    return True


def _checkpoint(row: RowMapping) -> Checkpoint:
    try:
        raw: dict[str, object] = {
            k: row[k] for k in ("format", "size", "root", "head", "at", "key_id", "signature")
        }
        if row["partitions"]:
            raw["partitions"] = json.loads(row["partitions"])
        return Checkpoint.from_json(raw)
    except ValueError as error:
        raise Unavailable(
            f"a stored audit checkpoint cannot be read ({error}): it was changed outside "
            "tether; run `tether audit verify`",
            code=_AUDIT,
        ) from None
