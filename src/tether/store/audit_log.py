"""Reading the partitioned audit log in SQL: a partition's records, every partition's head.

Records are fetched a page at a time and no connection is held between pages, so a slow reader
never holds up writers. The whole log is read as one partition-by-partition merge
(:func:`tether.core.partitions.log_order`).
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Integer, bindparam, func, select

from tether.core.audit import AuditRecord, ChainHead
from tether.core.errors import Unavailable
from tether.core.partitions import log_order
from tether.store.db import AUDIT, READ_HEADS, Database, audit_record
from tether.store.schema import audit, audit_head

_PAGE = (
    select(audit)
    .where(
        audit.c.partition_id == bindparam("b_part"),
        audit.c.seq > bindparam("b_after", type_=Integer()),
    )
    .order_by(audit.c.seq)
    .limit(bindparam("b_limit", type_=Integer()))
)
_HEAD = select(audit_head.c.seq, audit_head.c.hash).where(
    audit_head.c.partition_id == bindparam("b_part")
)
_WRITTEN = select(audit.c.partition_id).distinct()
_RECORDS_OF = select(func.count()).where(audit.c.partition_id == bindparam("b_part"))


class AuditReader:
    """The audit log of one :class:`Database`, as its readers see it."""

    def __init__(self, db: Database, page_size: int) -> None:
        self._db = db
        self._page_size = page_size

    def records(self, after_seq: int = 0, partition: str | None = None) -> Iterator[AuditRecord]:
        """``partition``'s records after ``after_seq`` in chain order; with no partition, every
        partition's records after ``after_seq`` in the log's stable order."""
        if partition is not None:
            return self._partition(partition, after_seq)
        return log_order(self._partition(p, after_seq) for p in sorted(self.partitions()))

    def _partition(self, partition: str, after_seq: int) -> Iterator[AuditRecord]:
        after = after_seq
        while True:
            with self._db.read(AUDIT, "read the audit log") as conn:
                rows = conn.execute(
                    _PAGE, {"b_part": partition, "b_after": after, "b_limit": self._page_size}
                ).all()
            page = [audit_record(r._mapping, self._db.format) for r in rows]
            yield from page
            if len(page) < self._page_size:
                return
            after = page[-1].seq

    def partitions(self) -> set[str]:
        """Every partition with a head row or a record (a record without a head is tampering,
        which verification reports)."""
        with self._db.read(AUDIT, "read the audit partitions") as conn:
            heads = {str(r.partition_id) for r in conn.execute(READ_HEADS)}
            written = {str(r[0]) for r in conn.execute(_WRITTEN)}
        return heads | written

    def heads(self) -> dict[str, ChainHead | None]:
        """Every partition's stored head (``None``: empty)."""
        with self._db.read(AUDIT, "read the audit chain heads") as conn:
            rows = conn.execute(READ_HEADS).all()
        return {
            str(r.partition_id): None if r.seq == 0 else ChainHead(int(r.seq), str(r.hash))
            for r in rows
        }

    def head(self, partition: str) -> ChainHead | None:
        """``partition``'s head; ``None`` when it is empty or not yet written. ``Unavailable``
        when it holds records but its head is gone."""
        with self._db.read(AUDIT, "read the audit chain head") as conn:
            row = conn.execute(_HEAD, {"b_part": partition}).first()
            if row is None and conn.execute(_RECORDS_OF, {"b_part": partition}).scalar():
                # Never report "empty": that would hide every record from a head check.
                raise Unavailable(
                    f"the head of audit partition {partition!r} is missing: the database was "
                    "changed outside tether; export the audit log and investigate before "
                    "writing to it again",
                    code=AUDIT,
                )
        return None if row is None or row.seq == 0 else ChainHead(int(row.seq), str(row.hash))
