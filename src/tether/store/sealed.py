"""What this process sealed and committed to the audit log, kept until a checkpoint covers it.

A checkpoint extends each partition's Merkle tree with the records written since the last one
(:mod:`tether.service.checkpoints`). Reading them back, re-hashing their chain and
canonicalizing each again took tens of milliseconds of the interpreter every 1,000 records, in
a burst that held up the requests served meanwhile. The records this process wrote need none of
it: their leaf hashes were known when they were sealed (:func:`tether.core.audit.seal_with_leaf`),
and their chain was made by the same head lock that committed them. So each committed write
leaves its records' ``(seq, prev_hash, hash, leaf hash)`` here, and the checkpointer takes them
from here when they cover, unbroken, everything after the last checkpoint up to the head it
signs; otherwise (another process wrote to the partition, a commit's entries have not arrived
yet, the process began after the last checkpoint) it reads and verifies as before, and then a
record read back that differs from the one this process sealed under that number is refused.

Entries arrive only after their transaction committed (:meth:`tether.store.db.Db.write`), so
nothing rolled back is ever signed; only once a checkpointer asked for them
(:meth:`SealedTail.keep`); and bounded: at most :data:`MAX_ENTRIES` per partition, the
oldest dropped first (the checkpointer then reads instead).
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Iterable

from tether.core.audit import GENESIS_HASH, ChainHead, Sealed

MAX_ENTRIES = 65_536
"""Entries kept per partition: more than the default checkpoint interval (1,000 records) by far."""


class SealedTail:
    """Thread-safe: committed by any writer thread, read by the housekeeping thread."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._max = max_entries
        self._lock = threading.Lock()
        self._keeping = False
        # partition -> seq -> (prev_hash, hash, leaf hash)
        self._entries: dict[str, dict[int, tuple[str, str, bytes]]] = {}

    def keep(self) -> None:
        """Keep what commits from now on (a process that makes no checkpoints keeps nothing)."""
        self._keeping = True

    def add(self, sealed: Iterable[Sealed]) -> None:
        """Records of one committed transaction."""
        if not self._keeping:
            return
        with self._lock:
            for item in sealed:
                record = item.record
                kept = self._entries.setdefault(record.partition, {})
                kept[record.seq] = (record.prev_hash, record.hash, item.leaf_hash)
                if len(kept) > self._max:
                    del kept[min(kept)]

    def hash_of(self, partition: str, seq: int) -> str | None:
        """The hash this process sealed as ``partition``'s record ``seq``, if it did and still
        keeps it."""
        with self._lock:
            entry = self._entries.get(partition, {}).get(seq)
        return None if entry is None else entry[1]

    def leaves(
        self, partition: str, after: ChainHead | None, upto: ChainHead
    ) -> list[bytes] | None:
        """The leaf hashes of ``partition``'s records after ``after`` (``None``: from the first)
        through ``upto``, when every one of them was sealed here and they link from ``after``'s
        hash to ``upto``'s; else ``None``. Forgets what ``after`` already covers."""
        first = 1 if after is None else after.seq + 1
        prev = GENESIS_HASH if after is None else after.hash
        with self._lock:
            kept = self._entries.get(partition)
            if kept is None:
                return None
            for seq in [s for s in kept if s < first]:
                del kept[seq]
            out: list[bytes] = []
            for seq in range(first, upto.seq + 1):
                entry = kept.get(seq)
                if entry is None or not hmac.compare_digest(entry[0], prev):
                    return None
                prev = entry[1]
                out.append(entry[2])
        if not hmac.compare_digest(prev, upto.hash):
            return None
        return out


__all__ = ["MAX_ENTRIES", "SealedTail"]
