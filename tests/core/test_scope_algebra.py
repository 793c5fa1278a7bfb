"""Property tests: the scope algebra is exact on the values it allows."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.core.errors import InvalidRequest
from tether.core.scope import ActionKind, ArgConstraint, Scope

SUFFIXES = ["@example.com", "example.com", ".com", "@a.example.com", "@evil.com", "m"]
WORDS = ["a@example.com", "b@a.example.com", "x@evil.com", "example.com", "plain", "", "m"]
NUMBERS = st.integers(-50, 150) | st.floats(-50, 150, allow_nan=False)
SCALARS = st.one_of(NUMBERS, st.sampled_from(WORDS), st.booleans())
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4), st.none())


@st.composite
def constraints(draw: st.DrawFn) -> ArgConstraint:
    return ArgConstraint.of(
        max=draw(st.none() | st.integers(-20, 120)),
        min=draw(st.none() | st.integers(-20, 120)),
        one_of=draw(st.none() | st.lists(SCALARS, max_size=4)),
        ends_with=draw(st.none() | st.lists(st.sampled_from(SUFFIXES), min_size=1, max_size=3)),
        max_length=draw(st.none() | st.integers(0, 15)),
    )


def allows(c: ArgConstraint, value: object) -> bool:
    return c.violation(value) is None  # type: ignore[arg-type]


@settings(max_examples=400)
@given(constraints(), constraints(), VALUES)
def test_intersection_allows_exactly_what_both_allow(
    a: ArgConstraint, b: ArgConstraint, value: object
) -> None:
    assert allows(a.intersect(b), value) == (allows(a, value) and allows(b, value))


@settings(max_examples=400)
@given(constraints(), constraints(), VALUES)
def test_subset_never_admits_a_value_the_superset_refuses(
    a: ArgConstraint, b: ArgConstraint, value: object
) -> None:
    if a.is_subset(b) and allows(a, value):
        assert allows(b, value)


@given(constraints(), constraints())
def test_intersection_is_a_subset_of_both(a: ArgConstraint, b: ArgConstraint) -> None:
    meet = a.intersect(b)
    assert meet.is_subset(a)
    assert meet.is_subset(b)


@given(constraints())
def test_subset_is_reflexive(a: ArgConstraint) -> None:
    assert a.is_subset(a)


@given(constraints(), VALUES)
def test_an_empty_constraint_allows_no_plain_value(a: ArgConstraint, value: object) -> None:
    if a.is_empty and not isinstance(value, list):
        assert not allows(a, value)


ACTIONS = st.frozensets(st.sampled_from(list(ActionKind)), max_size=3)
DATASETS = st.frozensets(st.sampled_from(["crm", "tickets", "docs"]), max_size=2)


@st.composite
def scopes(draw: st.DrawFn) -> Scope:
    args = draw(st.dictionaries(st.sampled_from(["amount", "to"]), constraints(), max_size=2))
    return Scope.of(draw(st.sampled_from(["t1", "t2"])), draw(ACTIONS), draw(DATASETS), args)


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, ActionKind, str | None, dict[str, object]]:
    args = draw(st.dictionaries(st.sampled_from(["amount", "to"]), VALUES, max_size=2))
    return (
        draw(st.sampled_from(["t1", "t2"])),
        draw(st.sampled_from(list(ActionKind))),
        draw(st.none() | st.sampled_from(["crm", "tickets", "docs"])),
        args,
    )


def scope_allows(
    scope: Scope | None, call: tuple[str, ActionKind, str | None, dict[str, object]]
) -> bool:
    if scope is None:
        return False
    tool, action, dataset, args = call
    if tool != scope.tool or action not in scope.actions or dataset not in scope.allowed_datasets:
        return False
    return all(arg in args and allows(c, args[arg]) for arg, c in scope.constraints)


@settings(max_examples=400)
@given(scopes(), scopes(), calls())
def test_scope_intersection_is_exact_for_calls(a: Scope, b: Scope, call: tuple) -> None:  # type: ignore[type-arg]
    meet = a.intersect(b)
    if scope_allows(a, call) and scope_allows(b, call):
        assert scope_allows(meet, call)
    if scope_allows(meet, call):
        assert scope_allows(a, call) and scope_allows(b, call)


@settings(max_examples=400)
@given(scopes(), scopes(), calls())
def test_scope_subset_is_sound_for_calls(a: Scope, b: Scope, call: tuple) -> None:  # type: ignore[type-arg]
    if a.is_subset(b) and scope_allows(a, call):
        assert scope_allows(b, call)


@given(scopes())
def test_scope_round_trips_through_json(scope: Scope) -> None:
    def given(c: ArgConstraint) -> bool:
        fields = (c.one_of, c.ends_with, c.max, c.min, c.max_length)
        return any(f is not None for f in fields)

    if scope.actions and all(given(c) for _, c in scope.constraints):
        assert Scope.from_json(scope.to_json()) == scope


def test_dataset_restriction_cannot_be_escaped_by_naming_none() -> None:
    scoped = Scope.of("crm.query", ["read"], ["crm"])
    unscoped = Scope.of("crm.query", ["read"])
    assert not unscoped.is_subset(scoped)
    assert not scoped.is_subset(unscoped)
    assert scoped.intersect(unscoped) is None


def test_one_is_not_true() -> None:
    c = ArgConstraint.of(one_of=[1])
    assert c.violation(True) is not None
    assert c.violation(1) is None


@pytest.mark.parametrize(
    "raw",
    [
        {"tool": "t", "actions": ["read"], "constraints": {"a": {"maximum": 3}}},
        {"tool": "t", "actions": ["read"], "constraints": {"a": {}}},
        {"tool": "t", "actions": ["read"], "constraints": {"a": {"max": True}}},
        {"tool": "t", "actions": ["read"], "constraints": {"a": {"ends_with": []}}},
        {"tool": "t", "actions": ["read"], "constraints": {"a": {"one_of": [[1]]}}},
        {"tool": "t", "actions": ["read"], "constraints": {"a": {"max_length": -1}}},
        {"tool": "t", "actions": []},
        {"tool": "", "actions": ["read"]},
        {"tool": "t", "actions": ["read"], "datasets": "crm"},
        {"tool": "t", "actions": ["read"], "extra": 1},
        "not an object",
    ],
)
def test_malformed_scopes_are_refused_with_a_code(raw: object) -> None:
    with pytest.raises(InvalidRequest) as caught:
        Scope.from_json(raw)
    assert caught.value.code.value in {"invalid_scope", "invalid_constraint", "unknown_constraint"}
