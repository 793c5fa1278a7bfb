"""Each task's provenance key (core/provenance.py, ``task_key``) and the check of a delegation
chain's observations, each under its own task's key (``check_chain``). A property test holds the
check to a reference: the check as it was with one merged index under one key."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.core.errors import ConfigurationError
from tether.core.provenance import (
    Need,
    Observation,
    Outcome,
    ProvenanceIndex,
    SinkRequirement,
    Source,
    Trust,
    Violation,
    Why,
    check_arguments,
    check_chain,
    fingerprint,
    observe,
    observe_under,
    task_key,
)
from tether.core.provenance_extract import extract_json
from tether.core.scope import JSONValue

MASTER = b"m" * 32
INBOX = Source("email.read_inbox", "mail", Trust.UNTRUSTED)
WEB = Source("web.get_webpage", None, Trust.UNTRUSTED)
CONTACTS = Source("contacts.list", "contacts", Trust.TRUSTED)
ENDED = Source("(ended)", None, Trust.UNTRUSTED)
URL_SINK = SinkRequirement("url", Need.TRUSTED)
BODY_SINK = SinkRequirement("body", Need.NOT_ONLY_UNTRUSTED, Outcome.APPROVAL_REQUIRED)


def test_a_tasks_key_needs_both_the_master_key_and_its_secret() -> None:
    one, two = task_key(MASTER, b"\x01" * 32), task_key(MASTER, b"\x02" * 32)
    assert len(one) == 32 and one != two and MASTER not in (one, two)
    assert task_key(b"n" * 32, b"\x01" * 32) != one
    assert task_key(MASTER, b"\x01" * 32) == one  # the same secret gives the same key
    # A task opened before tasks had secrets keeps the master key.
    assert task_key(MASTER, b"") == MASTER
    with pytest.raises(ConfigurationError):
        task_key(b"short", b"\x01" * 32)


def test_observing_under_a_chains_keys_scans_once_and_keys_each() -> None:
    keys = [task_key(MASTER, b"\x01" * 32), task_key(MASTER, b"\x02" * 32)]
    result = "mail eve@evil.example.com about https://evil.example.com/x"
    child, parent = observe_under(keys, INBOX, result)
    assert child == observe(keys[0], INBOX, result)
    assert parent == observe(keys[1], INBOX, result)
    assert child.fingerprints.isdisjoint(parent.fingerprints)


def test_a_value_is_looked_up_under_each_chain_tasks_key() -> None:
    child_key, parent_key = task_key(MASTER, b"\x01" * 32), task_key(MASTER, b"\x02" * 32)
    url = "https://shop.example.com/order"
    in_child = ProvenanceIndex.of([observe(child_key, WEB, url)])
    in_parent = ProvenanceIndex.of([observe(parent_key, CONTACTS, url)])
    args: dict[str, JSONValue] = {"url": url}
    # Seen untrusted by the child only: it fails, naming the child's source.
    (only_child,) = {v.why for v in check_chain(args, [URL_SINK], [(child_key, in_child)])}
    assert only_child is Why.NOT_TRUSTED
    # Trusted in the parent's rows, under the parent's key: it passes for the whole chain.
    assert check_chain(args, [URL_SINK], [(child_key, in_child), (parent_key, in_parent)]) == []
    # The same rows under the wrong key match nothing.
    wrong = check_chain(args, [URL_SINK], [(child_key, in_child), (child_key, in_parent)])
    assert wrong and all(v.sources == (WEB,) for v in wrong)


def test_a_chain_task_without_a_key_can_only_make_the_check_stricter() -> None:
    key = task_key(MASTER, b"\x01" * 32)
    ended = ProvenanceIndex(unscanned=frozenset({ENDED}))
    args: dict[str, JSONValue] = {"body": "see https://made-up.example.org/"}
    assert check_chain(args, [BODY_SINK], [(key, ProvenanceIndex())]) == []
    violations = check_chain(args, [BODY_SINK], [(key, ProvenanceIndex()), (MASTER, ended)])
    assert {v.kind.value for v in violations if v.kind} == {"url", "domain"}
    assert all(v.why is Why.ONLY_UNTRUSTED and v.sources == (ENDED,) for v in violations)
    assert all(v.unscanned for v in violations)


# --- the reference: the check with one merged index, as it was --------------------------------


def _reference(
    args: Mapping[str, JSONValue],
    requirements: Sequence[SinkRequirement],
    index: ProvenanceIndex,
    key: bytes,
    user: frozenset[str],
) -> list[Violation]:
    violations: list[Violation] = []
    for requirement in requirements:
        if requirement.argument not in args:
            continue
        found = extract_json(args[requirement.argument], requirement.kinds)
        for extracted in found.values:
            fp = fingerprint(key, extracted.kind, extracted.value)
            if fp in user:
                continue
            seen = index.sources(fp)
            if any(s.trust is Trust.TRUSTED for s in seen):
                continue
            ordered = tuple(sorted(seen, key=lambda s: (s.trust.value, s.tool, s.dataset or "")))
            if requirement.need is Need.TRUSTED:
                failure = (Why.NOT_TRUSTED, ordered, False)
            elif seen:
                failure = (Why.ONLY_UNTRUSTED, ordered, False)
            elif index.unscanned:
                partly = tuple(
                    sorted(index.unscanned, key=lambda s: (s.trust.value, s.tool, s.dataset or ""))
                )
                failure = (Why.ONLY_UNTRUSTED, partly, True)
            else:
                continue
            violations.append(
                Violation(
                    requirement.argument,
                    extracted.kind,
                    requirement.need,
                    requirement.outcome,
                    *failure,
                )
            )
        if not found.complete:
            violations.append(
                Violation(
                    requirement.argument,
                    None,
                    requirement.need,
                    requirement.outcome,
                    Why.ARGUMENT_UNSCANNED,
                )
            )
    return violations


_VALUES = st.sampled_from(
    [
        "https://shop.example.com/order",
        "https://evil.example.net/x?y=1",
        "eve@evil.example.net",
        "bob@example.com",
        "DE89 3704 0044 0532 0130 00",
        "2024-05-19",
        "$1,250.00",
        "+1 555 010 9999",
        "www.example.org",
        "nothing to see",
    ]
)
_TEXTS = st.lists(_VALUES, max_size=4).map(" and ".join)
_SOURCES = st.sampled_from([INBOX, WEB, CONTACTS])


@settings(max_examples=300, deadline=None)
@given(
    seen=st.lists(st.tuples(_SOURCES, _TEXTS, st.booleans()), max_size=4),
    user=_TEXTS,
    url=_TEXTS,
    body=_TEXTS,
)
def test_the_check_finds_what_the_reference_found(
    seen: list[tuple[Source, str, bool]], user: str, url: str, body: str
) -> None:
    observations = []
    for source, text, complete in seen:
        observed = observe(MASTER, source, text)
        observations.append(Observation(source, observed.fingerprints, complete))
    index = ProvenanceIndex.of(observations)
    requested = observe(MASTER, CONTACTS, user).fingerprints
    args: dict[str, JSONValue] = {"url": url, "body": body}
    sinks = [URL_SINK, BODY_SINK]
    assert check_arguments(args, sinks, index, MASTER, requested) == _reference(
        args, sinks, index, MASTER, requested
    )
    # Split over a chain, each task's observation under its own key: the same answer.
    chain = []
    for i, (source, text, complete) in enumerate(seen):
        key = task_key(MASTER, bytes([i + 1]) * 32)
        observed = observe(key, source, text)
        chain.append(
            (key, ProvenanceIndex.of([Observation(source, observed.fingerprints, complete)]))
        )
    assert check_chain(args, sinks, chain) == _reference(args, sinks, index, MASTER, frozenset())
