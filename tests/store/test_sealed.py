"""What a store keeps of the records it sealed, for checkpoints: only what committed, exactly as
stored (:mod:`tether.store.sealed`)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tether.core.audit import AuditKind, ChainHead, seal_with_leaf
from tether.core.errors import ErrorCode
from tether.core.merkle import leaf_hash
from tether.store import SqlStore
from tether.store.sealed import SealedTail

from .conftest import Make


def _head(store: SqlStore) -> ChainHead:
    head = store.chain_head()
    assert head is not None
    return head


def _stored_leaves(store: SqlStore) -> list[bytes]:
    return [leaf_hash(r.leaf()) for r in store.audit_records(partition=store.partition)]


def test_the_leaves_kept_are_the_stored_records_leaves(store: SqlStore, make: Make) -> None:
    store.append_audit(make.entry())  # before anyone asked: not kept
    store.keep_sealed()
    assert store.sealed_hash(store.partition, 1) is None
    for _ in range(5):
        store.append_audit(make.entry())
    after = ChainHead(1, next(iter(store.audit_records())).hash)
    assert store.sealed_leaves(store.partition, after, _head(store)) == _stored_leaves(store)[1:]
    assert store.sealed_leaves(store.partition, None, _head(store)) is None


def test_a_rolled_back_savepoint_and_a_failed_transaction_leave_nothing(
    store: SqlStore, make: Make
) -> None:
    store.keep_sealed()
    store.append_audit(make.entry())
    with store.db.write(ErrorCode.STORE_UNAVAILABLE, "test") as tx:
        tx.append(make.entry())
        head = tx.head
        with pytest.raises(RuntimeError), tx.savepoint():
            tx.append(make.entry())  # seq 3, taken back with the savepoint
            raise RuntimeError("refused")
        tx.head = head
    assert store.sealed_hash(store.partition, 3) is None
    with store.db.write(ErrorCode.STORE_UNAVAILABLE, "test") as tx:
        tx.append(make.entry())  # seq 3 again, the one that commits
    with pytest.raises(RuntimeError), store.db.write(ErrorCode.STORE_UNAVAILABLE, "test") as tx:
        tx.append(make.entry())  # seq 4, never committed
        raise RuntimeError("failed")
    assert _head(store).seq == 3
    assert store.sealed_leaves(store.partition, None, _head(store)) == _stored_leaves(store)
    assert store.sealed_hash(store.partition, 4) is None


def test_records_another_handle_wrote_are_not_claimed(
    store: SqlStore, open_store: Callable[[], SqlStore], make: Make
) -> None:
    other = open_store()
    store.keep_sealed()
    other.keep_sealed()
    store.append_audit(make.entry())
    other.append_audit(make.entry())
    store.append_audit(make.entry())
    head = _head(store)
    assert store.sealed_leaves(store.partition, None, head) is None  # record 2 is not its own
    assert store.sealed_hash(store.partition, 2) is None
    assert store.sealed_hash(store.partition, 3) == head.hash
    after = ChainHead(2, list(store.audit_records())[1].hash)
    assert store.sealed_leaves(store.partition, after, head) == _stored_leaves(store)[2:]


def test_the_tail_is_bounded_and_forgets_what_a_checkpoint_covers(make: Make) -> None:
    tail = SealedTail(max_entries=4)
    tail.keep()
    head: ChainHead | None = None
    sealed = []
    for i in range(6):
        entry = make.entry(body={"i": i})
        one = seal_with_leaf(
            head,
            record_id=entry.record_id,
            at="2026-01-01T00:00:00+00:00",
            kind=AuditKind.DECISION,
            agent=None,
            task_id=None,
            body=entry.body,
        )
        sealed.append(one)
        head = ChainHead(one.record.seq, one.record.hash)
    tail.add(sealed)
    assert head is not None
    assert tail.leaves("0", None, head) is None  # records 1 and 2 were dropped
    after = ChainHead(2, sealed[1].record.hash)
    assert tail.leaves("0", after, head) == [s.leaf_hash for s in sealed[2:]]
    mid = ChainHead(4, sealed[3].record.hash)
    assert tail.leaves("0", mid, head) == [s.leaf_hash for s in sealed[4:]]
    assert tail.hash_of("0", 3) is None  # forgotten once a checkpoint covered it
    forged = ChainHead(6, "00" * 32)
    assert tail.leaves("0", mid, forged) is None  # a head it did not seal
