"""Checkpoints over a chain, as properties: any rewrite or truncation below a checkpoint is
caught, records after the last are only counted, and proofs verify against the signed root."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.core.audit import AuditKind, AuditRecord, ChainHead, seal
from tether.core.checkpoint import (
    Checkpoint,
    Signer,
    inclusion_document,
    verify_inclusion_document,
)
from tether.core.logcheck import verify_log
from tether.core.merkle import Frontier, inclusion_proof, leaf_hash

# A stand-in signature for pure tests (the real one is Ed25519, tests/identity/test_audit_key).
_KEY = b"k" * 32


def _sign(message: bytes) -> bytes:
    return hmac.new(_KEY, message, hashlib.sha256).digest()


def _verify(checkpoint: Checkpoint) -> bool:
    return hmac.compare_digest(_sign(checkpoint.message()), checkpoint.signature_bytes())


SIGNER = Signer("test-key", _sign)


def _chain(n: int, start: list[AuditRecord] | None = None, mark: str = "") -> list[AuditRecord]:
    records = list(start or [])
    for i in range(len(records), n):
        head = ChainHead(records[-1].seq, records[-1].hash) if records else None
        records.append(
            seal(
                head,
                record_id=f"aud_{i}",
                at="2026-01-01T00:00:00+00:00",
                kind=AuditKind.DECISION,
                agent=None,
                task_id=None,
                body={"i": i, "decision": "deny" if mark and i == int(mark) else "allow"},
            )
        )
    return records


def _checkpoint(records: list[AuditRecord], size: int) -> Checkpoint:
    frontier = Frontier().extend(leaf_hash(r.leaf()) for r in records[:size])
    head = records[size - 1].hash if size else "0" * 64
    return SIGNER.checkpoint(records[0].format, frontier, head, f"t{size}")


def _head(records: list[AuditRecord]) -> ChainHead | None:
    return ChainHead(records[-1].seq, records[-1].hash) if records else None


sizes = st.integers(1, 40).flatmap(
    lambda n: st.tuples(st.just(n), st.lists(st.integers(0, n), min_size=1, max_size=4))
)


@given(sizes)
def test_an_untouched_log_verifies_and_counts_what_is_unanchored(
    case: tuple[int, list[int]],
) -> None:
    n, cuts = case
    records = _chain(n)
    checkpoints = [_checkpoint(records, k) for k in set(cuts)]
    report = verify_log(records, checkpoints, _verify, head=_head(records))
    assert report.ok and report.records == n
    assert report.anchored == max(cuts) and report.unanchored == n - max(cuts)
    assert report.frontier is not None and report.frontier.size == n


@given(sizes, st.data())
def test_a_rewrite_below_a_checkpoint_with_every_later_hash_recomputed_is_caught(
    case: tuple[int, list[int]], data: st.DataObject
) -> None:
    n, cuts = case
    records = _chain(n)
    top = max(cuts)
    checkpoints = [_checkpoint(records, k) for k in set(cuts)]
    i = data.draw(st.integers(0, n - 1))
    forged = _chain(n, records[:i], mark=str(i))
    report = verify_log(forged, checkpoints, _verify, head=_head(forged))
    # Below the last checkpoint it is caught; after it, it is only unanchored (what witnesses
    # and the next checkpoint are for).
    assert report.ok is (i >= top)
    if not report.ok:
        assert report.problem is not None and "changed" in report.problem


@given(sizes, st.data())
def test_a_truncation_below_a_checkpoint_is_caught_even_with_the_head_moved_back(
    case: tuple[int, list[int]], data: st.DataObject
) -> None:
    n, cuts = case
    records = _chain(n)
    checkpoints = [_checkpoint(records, k) for k in set(cuts)]
    k = data.draw(st.integers(0, n - 1))
    cut = records[:k]
    report = verify_log(cut, checkpoints, _verify, head=_head(cut))
    assert report.ok is (k >= max(cuts))


def test_a_forged_signature_is_refused_before_anything_else() -> None:
    records = _chain(3)
    good = _checkpoint(records, 3)
    forged = Checkpoint.from_json(good.to_json() | {"signature": "AAAA"})
    report = verify_log(records, [forged], _verify)
    assert not report.ok and report.problem is not None and "signature" in report.problem


@pytest.mark.parametrize(
    "change",
    [
        {"size": -1},
        {"size": True},
        {"format": 3},
        {"root": "AB" * 32},
        {"head": "ab"},
        {"signature": ""},
        {"at": "x" * 300},
    ],
)
def test_a_malformed_checkpoint_is_refused(change: dict[str, object]) -> None:
    raw = _checkpoint(_chain(2), 2).to_json() | change
    with pytest.raises(ValueError):
        Checkpoint.from_json(raw)


@given(st.integers(1, 30), st.data())
def test_every_record_proves_against_a_checkpoint_that_covers_it(
    n: int, data: st.DataObject
) -> None:
    records = _chain(n)
    size = data.draw(st.integers(1, n))
    i = data.draw(st.integers(0, size - 1))
    checkpoint = _checkpoint(records, size)
    leaves = [leaf_hash(r.leaf()) for r in records[:size]]
    document = inclusion_document(records[i], checkpoint, inclusion_proof(i, leaves))
    assert verify_inclusion_document(document, _verify) is None
    other = records[(i + 1) % size]
    if other.seq != records[i].seq:
        moved = document | {"record": other.to_json()}
        assert verify_inclusion_document(moved, _verify) is not None


@pytest.mark.parametrize(
    "change",
    [
        {"type": "nope"},
        {"proof": "ab"},
        {"proof": ["zz"]},
        {"proof": ["ab" * 32] * 65},
        {"record": []},
        {"record": {"seq": 1}},
        {"checkpoint": None},
    ],
)
def test_a_malformed_proof_is_answered_not_raised(change: dict[str, object]) -> None:
    records = _chain(2)
    checkpoint = _checkpoint(records, 2)
    proof = inclusion_proof(0, [leaf_hash(r.leaf()) for r in records])
    document = inclusion_document(records[0], checkpoint, proof) | change
    assert isinstance(verify_inclusion_document(document, _verify), str)


def test_a_checkpoint_of_the_empty_log_must_be_of_the_empty_tree() -> None:
    records = _chain(2)
    empty = SIGNER.checkpoint(records[0].format, Frontier(), "0" * 64, "t0")
    assert verify_log(records, [empty], _verify).ok
    wrong = SIGNER.checkpoint(records[0].format, Frontier().append(b"x" * 32), "0" * 64, "t0")
    lying = Checkpoint.from_json(wrong.to_json() | {"size": 0})
    resigned = Checkpoint.from_json(lying.to_json() | {"signature": _b64(_sign(lying.message()))})
    report = verify_log(records, [resigned], _verify)
    assert not report.ok and report.records == 0


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
