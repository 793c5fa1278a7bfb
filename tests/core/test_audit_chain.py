"""Property tests: the chain verifier names the first record any tampering breaks."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tether.core import jcs
from tether.core.audit import (
    AuditKind,
    AuditRecord,
    ChainFormat,
    ChainHead,
    canonical_json,
    redact_args,
    seal,
    seal_with_leaf,
    verify_chain,
)
from tether.core.jcs import canonicalize
from tether.core.merkle import leaf_hash
from tether.core.scope import JSONValue

T = TypeVar("T")


def build(n: int, format: ChainFormat = ChainFormat.JCS) -> list[AuditRecord]:
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
            format=format,
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
    for format in ChainFormat:
        for record in build(5, format):
            assert AuditRecord.from_json(record.to_json()) == record


def _legacy_record() -> AuditRecord:
    return seal(
        None,
        record_id="aud_1",
        at="2026-01-01T00:00:00+00:00",
        kind=AuditKind.DECISION,
        agent="spiffe://td/agent/a",
        task_id=None,
        body={"amount": 1.0, "note": "\u00e9", "big": 2**60},
        format=ChainFormat.LEGACY,
    )


def test_format_1_hashes_are_what_they_always_were() -> None:
    # The hash this record had before chain formats existed: existing chains still verify.
    record = _legacy_record()
    assert record.hash == "c3e073fd4a815433d401cfa97f4ec56c3b8cd385edcba5bef7478b1edf4db7b7"
    assert "format" not in record.to_json()
    assert verify_chain([record], ChainHead(1, record.hash)).ok


def test_format_2_hashes_rfc_8785_bytes_and_says_so() -> None:
    legacy = _legacy_record()
    record = seal(
        None,
        record_id=legacy.record_id,
        at=legacy.at,
        kind=legacy.kind,
        agent=legacy.agent,
        task_id=None,
        body=legacy.body,
    )
    content = record.to_json()
    del content["hash"]
    assert content["format"] == 2
    # A third party re-hashes it with any RFC 8785 implementation.
    expected = hashlib.sha256(record.prev_hash.encode() + canonicalize(content)).hexdigest()
    assert record.hash == expected != legacy.hash
    assert b'"amount":1,' in record.leaf() and b'"big":1152921504606847000' in record.leaf()


def test_a_chain_cannot_change_format_midway() -> None:
    records = build(3, ChainFormat.LEGACY)
    last = records[-1]
    switched = seal(
        ChainHead(last.seq, last.hash),
        record_id="aud_x",
        at=last.at,
        kind=AuditKind.DECISION,
        agent=None,
        task_id=None,
        body={},
    )
    report = verify_chain([*records, switched])
    assert not report.ok and report.first_bad_seq == 4
    assert report.problem is not None and "format" in report.problem


@pytest.mark.parametrize("bad", [1, "2", True, 2.0, 3])
def test_an_export_line_with_a_bad_format_is_refused(bad: object) -> None:
    raw = build(1)[0].to_json() | {"format": bad}
    with pytest.raises(ValueError):
        AuditRecord.from_json(raw)


def test_redaction_macs_all_but_plain_values() -> None:
    out = redact_args(
        {"amount": 5, "to": "x@y.z", "blob": {"a": 1}},
        lambda b: "m" + str(len(b)),
        frozenset({"amount"}),
    )
    assert out["amount"] == 5
    assert str(out["to"]).startswith("hmac-sha256:")
    assert str(out["blob"]).startswith("hmac-sha256:")


# A decision record of format 2 as the server writes them, with whole and fractional floats,
# accents and an emoji; its hash was taken with the canonicalizer of before the fast check.
_DECISION_BODY: dict[str, JSONValue] = {
    "call": {
        "action": "read",
        "args": {
            "limit": "hmac-sha256:19cf7a7f9f910c3abcc2f084c04e94b5dcfbaf91275076318a85e7ba5b9abfa8",
            "n": 12.5,
            "whole": 3.0,
        },
        "dataset": "crm",
        "tool": "crm.query",
    },
    "decision_id": "dec_21c49mmgxr3yw8p88fgvmc9sdg",
    "grant_id": "grt_5x7zct6s8hggxabhxpht9qshgf",
    "intent": {
        "on_behalf_of": "user:zo\u00eb",
        "purpose": "quarterly report \U0001f4c8",
        "workflow": "support",
    },
    "verdict": {
        "approval_id": None,
        "decided_at": "2026-01-01T00:00:00+00:00",
        "decision": "allow",
        "decision_id": "dec_21c49mmgxr3yw8p88fgvmc9sdg",
        "delegation": {"chain": [], "depth": 0},
        "obligations": [{"kind": "row_cap", "policy_id": "analyst-reads-crm", "value": "500"}],
        "policy_ids": ["analyst-reads-crm"],
        "policy_revision": "cfd2ca82e9ae64c4c42436267a79266ad5cd74eacf1dc37ead2fd10b3f3404d6",
        "reasons": [
            {
                "code": "policy_permits",
                "message": "read on crm.query permitted by policy analyst-reads-crm",
            }
        ],
        "risks": ["ASI02", "ASI03", "ASI10"],
    },
    "budget_holds": [
        {
            "task_id": "tsk_75e15smyk0xgcma683a5gq0tfa",
            "kind": "records",
            "classification": "confidential",
            "amount": 500.0,
        },
        {
            "task_id": "tsk_75e15smyk0xgcma683a5gq0tfa",
            "kind": "bytes",
            "classification": "confidential",
            "amount": 0.25,
            "step": "fetch",
        },
    ],
}


def test_a_decision_record_hashes_as_it_always_did() -> None:
    record = seal(
        ChainHead(1, "0e1e604d3461a6283d95673a91e2b8154daa44585f463e7d6945bc090e86ae01"),
        record_id="aud_42y14xsd7hnaskmvzdctsed8k0",
        at="2026-01-01T00:00:00+00:00",
        kind=AuditKind.DECISION,
        agent="spiffe://tether.local/agent/analyst",
        task_id="tsk_75e15smyk0xgcma683a5gq0tfa",
        body=_DECISION_BODY,
    )
    assert record.hash == "0576d18aacb5be16fdaa8e977819d0141d8eb53b127178494940f310589cd2c5"
    without_floats = {k: v for k, v in _DECISION_BODY.items() if k != "budget_holds"}
    without_floats["call"] = {"action": "read", "args": {}, "dataset": "crm", "tool": "crm.query"}
    plain = seal(
        None,
        record_id="aud_1",
        at=record.at,
        kind=record.kind,
        agent=None,
        task_id=None,
        body=without_floats,
    )
    rule_by_rule = jcs._general(plain.content())
    assert plain.hash == hashlib.sha256(plain.prev_hash.encode() + rule_by_rule).hexdigest()


_tricky_text = st.sampled_from(
    [
        *("kind", ',"kind":', '","kind":"x', '"hash"', "é", "\u2028"),
        *("body", ',"body":', "format", ',"format":2,', '"}],"format":1,"kind":"'),
    ]
) | st.text(st.characters(exclude_categories=["Cs"]), max_size=6)
_bodies = st.dictionaries(
    _tricky_text,
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _tricky_text,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(_tricky_text, inner, max_size=3)
        ),
        max_leaves=8,
    ),
    max_size=4,
)


@given(
    _bodies,
    st.sampled_from(list(ChainFormat)),
    st.sampled_from(["0", "r1"]),
    st.sampled_from(list(AuditKind)),
    st.none() | _tricky_text,
    st.none() | _tricky_text,
)
def test_the_leaf_kept_at_sealing_is_the_records_leaf(
    body: dict[str, JSONValue],
    format: ChainFormat,
    partition: str,
    kind: AuditKind,
    agent: str | None,
    task_id: str | None,
) -> None:
    head = ChainHead(7, "ab" * 32)

    def made_by(sealer: Callable[..., T]) -> T:
        return sealer(
            head,
            record_id="aud_1",
            at="2026-01-01T00:00:00+00:00",
            kind=kind,
            agent=agent,
            task_id=task_id,
            body=body,
            format=format,
            partition=partition,
        )

    sealed = made_by(seal_with_leaf)
    assert sealed.record == made_by(seal)
    assert sealed.leaf_hash == leaf_hash(sealed.record.leaf())
    # Members and keys named body, format or kind, and strings holding them, leave the body's
    # text cut from the sealed bytes as its own format-1 text (none is kept where RFC 8785
    # wrote the record by its careful path: a name outside ASCII).
    expected = canonical_json(body).decode("utf-8")
    if format is ChainFormat.LEGACY or jcs.as_is(sealed.record.content()):
        assert sealed.body_text == expected
    else:
        assert sealed.body_text is None


@example({"a": {"body": 1, "format": 2, "kind": 3}, "format": 4}, ChainFormat.JCS)
@example({"a": {"body": 1, "kind": 3}, "kind": 4}, ChainFormat.LEGACY)
@given(
    st.dictionaries(
        _tricky_text,
        st.floats(allow_nan=False, allow_infinity=False) | st.integers() | _tricky_text,
        max_size=4,
    ),
    st.sampled_from(list(ChainFormat)),
)
def test_the_body_text_kept_at_sealing_is_its_format_1_text_or_none(
    body: dict[str, JSONValue], format: ChainFormat
) -> None:
    """Whole floats and integers past 2**53 are written otherwise by RFC 8785 than by format 1:
    then no text is kept (the row's body is written as before), and whatever is kept is exact."""
    sealed = seal_with_leaf(
        None,
        record_id="aud_1",
        at="2026-01-01T00:00:00+00:00",
        kind=AuditKind.DECISION,
        agent=None,
        task_id=None,
        body=body,
        format=format,
    )
    expected = canonical_json(body).decode("utf-8")
    if format is ChainFormat.LEGACY or jcs.as_is(body):
        assert sealed.body_text == expected
    else:
        assert sealed.body_text is None
