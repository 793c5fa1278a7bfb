"""Signed audit checkpoints in SQL (:mod:`tether.core.checkpoint`), beside the chain they sign.

A checkpoint is added in a write transaction that holds the chain head, like every record: it is
stored only if it is newer than every stored one and the record it names is still there with the
hash it signed, so two replicas checkpointing at once store one of them and neither stores a
checkpoint of a log that moved under it. Rows are never updated or deleted (the runtime role has
``SELECT, INSERT`` only).

Each row also keeps the Merkle frontier at its size, so the next checkpoint extends the tree from
there instead of reading the log from the start; it is used only after it hashes to the signed
root (:meth:`SqlCheckpointStore.latest`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from sqlalchemy import Integer, bindparam, func, insert, select

from tether.core.audit import ChainFormat
from tether.core.checkpoint import Checkpoint
from tether.core.errors import ErrorCode, Unavailable
from tether.core.merkle import Frontier
from tether.store.schema import audit, audit_checkpoints

if TYPE_CHECKING:
    from sqlalchemy.engine import RowMapping

    from tether.store.sql import SqlStore

_AUDIT = ErrorCode.AUDIT_UNAVAILABLE

_ALL = select(audit_checkpoints).order_by(audit_checkpoints.c.size)
_LATEST = select(audit_checkpoints).order_by(audit_checkpoints.c.size.desc()).limit(1)
_AT_LEAST = (
    select(audit_checkpoints)
    .where(audit_checkpoints.c.size >= bindparam("b_size", type_=Integer()))
    .order_by(audit_checkpoints.c.size)
    .limit(1)
)
_LARGEST = select(func.max(audit_checkpoints.c.size))
_HASH_AT = select(audit.c.hash).where(audit.c.seq == bindparam("b_seq", type_=Integer()))
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

    def latest(self) -> tuple[Checkpoint, Frontier] | None:
        """The newest checkpoint and its Merkle frontier. ``Unavailable`` when the frontier does
        not hash to the checkpoint's root: the row was changed outside tether."""
        with self._store.db.read(_AUDIT, "read the latest audit checkpoint") as conn:
            row = conn.execute(_LATEST).first()
        if row is None:
            return None
        checkpoint = _checkpoint(row._mapping)
        try:
            hashes = tuple(bytes.fromhex(h) for h in json.loads(row.frontier))
            frontier = Frontier(checkpoint.size, hashes)
        except (ValueError, TypeError):
            frontier = None
        if frontier is None or frontier.root().hex() != checkpoint.root:
            raise Unavailable(
                f"the stored checkpoint of size {checkpoint.size} does not hold together (its "
                "Merkle frontier is not its root): it was changed outside tether; run `tether "
                "audit verify`",
                code=_AUDIT,
            )
        return checkpoint, frontier

    def add(self, checkpoint: Checkpoint, frontier: Frontier) -> bool:
        """Store ``checkpoint`` if it is newer than every stored one and record ``size`` still
        has the hash it signed; ``False`` (nothing written) otherwise."""
        if frontier.size != checkpoint.size:
            raise ValueError("the frontier must be the checkpoint's")
        with self._store.db.write(_AUDIT, "store the audit checkpoint") as tx:
            largest = tx.conn.execute(_LARGEST).scalar()
            if largest is not None and int(largest) >= checkpoint.size:
                return False
            if checkpoint.size > 0:
                found = tx.conn.execute(_HASH_AT, {"b_seq": checkpoint.size}).scalar()
                if found != checkpoint.head:
                    return False
            tx.conn.execute(
                _INSERT,
                {
                    **{k: v for k, v in checkpoint.to_json().items()},
                    "frontier": json.dumps([h.hex() for h in frontier.hashes]),
                },
            )
        return True


def _checkpoint(row: RowMapping) -> Checkpoint:
    try:
        return Checkpoint.from_json(
            {k: row[k] for k in ("format", "size", "root", "head", "at", "key_id", "signature")}
        )
    except ValueError as error:
        raise Unavailable(
            f"a stored audit checkpoint cannot be read ({error}): it was changed outside "
            "tether; run `tether audit verify`",
            code=_AUDIT,
        ) from None
