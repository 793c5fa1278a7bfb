"""Property tests: the chain verifier names the first record any tampering breaks."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from tether.core.audit import AuditKind, AuditRecord, ChainHead, redact_args, seal, verify_chain


def build(n: int) -> list[AuditRecord]:
    records: list[AuditRecord] = []
    head: ChainHead | None = None
    for i in range(n):
        record = seal(
            head,
            record_id=f"aud_{i}",
            at=f"2026-01-01T00:00:{i % 60:02d}+00:00",
            kind=AuditKind.DECISION,
            agent="spiffe://td/agent/a",
            task_id=None,
            body={"i": i, "note": "x" * (i % 3)},
        )
        records.append(record)
        head = ChainHead(record.seq, record.hash)
    return records


def head_of(records: list[AuditRecord]) -> ChainHead:
    return ChainHead(records[-1].seq, records[-1].hash)


@given(st.integers(1, 30))
def test_an_untouched_chain_verifies(n: int) -> None:
    records = build(n)
    report = verify_chain(records, head_of(records))
    assert report.ok and report.records == n


@given(st.integers(2, 30), st.data())
def test_an_edited_record_is_named(n: int, data: st.DataObject) -> None:
    records = build(n)
    i = data.draw(st.integers(0, n - 1))
    records[i] = replace(records[i], body={"i": -1})
    report = verify_chain(records, head_of(build(n)))
    assert not report.ok and report.first_bad_seq == i + 1


@given(st.integers(3, 30), st.data())
def test_a_deleted_record_is_named(n: int, data: st.DataObject) -> None:
    records = build(n)
    i = data.draw(st.integers(0, n - 2))
    del records[i]
    report = verify_chain(records)
    assert not report.ok and report.first_bad_seq == i + 2


@given(st.integers(2, 30))
def test_a_removed_tail_is_caught_by_the_head(n: int) -> None:
    records = build(n)
    report = verify_chain(records[:-1], head_of(records))
    assert not report.ok and report.first_bad_seq == n


@given(st.integers(3, 30), st.data())
def test_reordering_is_named(n: int, data: st.DataObject) -> None:
    records = build(n)
    i = data.draw(st.integers(0, n - 2))
    records[i], records[i + 1] = records[i + 1], records[i]
    report = verify_chain(records)
    assert not report.ok and report.first_bad_seq == i + 2


@given(st.integers(2, 30), st.data())
def test_a_forged_insert_with_a_recomputed_hash_is_named(n: int, data: st.DataObject) -> None:
    records = build(n)
    i = data.draw(st.integers(1, n - 1))
    prev = records[i - 1]
    forged = seal(
        ChainHead(prev.seq, prev.hash),
        record_id="aud_forged",
        at=prev.at,
        kind=AuditKind.DECISION,
        agent=None,
        task_id=None,
        body={"forged": True},
    )
    tampered = [*records[:i], forged, *records[i:]]
    report = verify_chain(tampered)
    assert not report.ok and report.first_bad_seq == i + 1


def test_records_round_trip_through_json() -> None:
    for record in build(5):
        assert AuditRecord.from_json(record.to_json()) == record


def test_redaction_macs_all_but_plain_values() -> None:
    out = redact_args(
        {"amount": 5, "to": "x@y.z", "blob": {"a": 1}},
        lambda b: "m" + str(len(b)),
        frozenset({"amount"}),
    )
    assert out["amount"] == 5
    assert str(out["to"]).startswith("hmac-sha256:")
    assert str(out["blob"]).startswith("hmac-sha256:")
