"""Scopes: what a grant allows, as separate dimensions, with their subset algebra.

A :class:`Scope` names one tool, the action kinds allowed on it, the datasets it may touch and
constraints on the call's arguments. ``is_subset`` and ``intersect`` are exact on the values they
allow: ``v`` satisfies ``intersect(a, b)`` exactly when it satisfies both ``a`` and ``b``, and
``is_subset(a, b)`` holds only when every call ``a`` allows, ``b`` allows too. Property tests hold
the algebra to that.

Datasets: a scope with no datasets allows only calls that name no dataset; a scope with datasets
allows only calls that name one of them. So a call cannot escape a dataset restriction by not
naming one.

Argument constraints (``constraints`` in the API), each optional, all must hold:

    max, min       the value is a number within the bound (inclusive)
    one_of         the value is one of these scalars
    ends_with      the value is a string ending with one of these suffixes
    max_length     a string's or a list's length is at most this

A list value must have at most ``max_length`` items, and every item must satisfy the
constraint as a plain value would. A constrained argument must be present in the call (fail closed).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, TypeVar

from tether.core.errors import ErrorCode, InvalidRequest

Scalar = str | int | float | bool
JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]

MAX_TOOL_NAME: Final = 128
MAX_DATASET_NAME: Final = 128
MAX_CONSTRAINT_VALUES: Final = 64
MAX_CONSTRAINED_ARGS: Final = 32


class ActionKind(StrEnum):
    """What a call does downstream; a closed set."""

    READ = "read"
    WRITE = "write"
    DELETE = "delete"
    SEND = "send"
    EXECUTE = "execute"
    SPEND = "spend"

    @property
    def is_sensitive(self) -> bool:
        """Anything but ``read`` is sensitive: never answered from a cache."""
        return self is not ActionKind.READ


class Classification(StrEnum):
    """How sensitive a dataset is, lowest first."""

    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"

    @property
    def rank(self) -> int:
        return _CLASSIFICATION_ORDER.index(self)


_CLASSIFICATION_ORDER: Final = (
    Classification.PUBLIC,
    Classification.INTERNAL,
    Classification.CONFIDENTIAL,
    Classification.RESTRICTED,
)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _scalar_key(value: Scalar) -> tuple[str, Scalar]:
    """Compare scalars by kind too, so ``True`` never equals ``1``."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("num", value)
    return ("str", value)


@dataclass(frozen=True, slots=True)
class ArgConstraint:
    """Constraints on one argument; ``None`` means unconstrained in that respect."""

    max: float | None = None
    min: float | None = None
    one_of: frozenset[tuple[str, Scalar]] | None = None
    ends_with: frozenset[str] | None = None
    max_length: int | None = None

    # -- construction ----------------------------------------------------------------------

    @staticmethod
    def of(
        *,
        max: float | None = None,
        min: float | None = None,
        one_of: Iterable[Scalar] | None = None,
        ends_with: Iterable[str] | None = None,
        max_length: int | None = None,
    ) -> ArgConstraint:
        return ArgConstraint(
            max=None if max is None else float(max),
            min=None if min is None else float(min),
            one_of=None if one_of is None else frozenset(_scalar_key(v) for v in one_of),
            ends_with=None if ends_with is None else frozenset(ends_with),
            max_length=max_length,
        )

    # -- semantics -------------------------------------------------------------------------

    @property
    def is_empty(self) -> bool:
        """True when no plain value satisfies this constraint (only an empty list would)."""
        if self.max is not None and self.min is not None and self.min > self.max:
            return True
        numeric = self.max is not None or self.min is not None
        if self.ends_with is not None:
            if numeric or not self.ends_with:
                return True
            if self.max_length is not None and all(
                len(s) > self.max_length for s in self.ends_with
            ):
                return True
        if self.one_of is not None:
            return not any(self._scalar_violation(v) is None for _, v in self.one_of)
        return False

    def violation(self, value: JSONValue) -> str | None:
        """Why ``value`` breaks this constraint, or ``None`` when it satisfies it."""
        if isinstance(value, list):
            if self.max_length is not None and len(value) > self.max_length:
                return f"has {len(value)} items, more than the {self.max_length} allowed"
            for item in value:
                if isinstance(item, list | dict) or item is None:
                    return "must be a list of plain values"
                problem = self._scalar_violation(item)
                if problem is not None:
                    return f"item {item!r} {problem}"
            return None
        if isinstance(value, dict) or value is None:
            return "must be a plain value or a list of them"
        return self._scalar_violation(value)

    def _scalar_violation(self, value: Scalar) -> str | None:
        if self.max is not None or self.min is not None:
            if not _is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
                return "must be a number"
            number = float(value)
            if self.max is not None and number > self.max:
                return f"is above the maximum {_fmt(self.max)}"
            if self.min is not None and number < self.min:
                return f"is below the minimum {_fmt(self.min)}"
        if self.one_of is not None and _scalar_key(value) not in self.one_of:
            return "is not one of the allowed values"
        if self.ends_with is not None:
            if not isinstance(value, str):
                return "must be a string"
            if not any(value.endswith(suffix) for suffix in self.ends_with):
                allowed = ", ".join(sorted(self.ends_with))
                return f"must end with one of: {allowed}"
        if self.max_length is not None and isinstance(value, str) and len(value) > self.max_length:
            return f"is longer than {self.max_length} characters"
        return None

    # -- algebra ---------------------------------------------------------------------------

    def is_subset(self, other: ArgConstraint) -> bool:
        """True when every value this constraint allows, ``other`` allows too."""
        if self.is_empty:
            return True  # only the empty list, which every constraint allows
        if other.max_length is not None and (
            self.max_length is None or self.max_length > other.max_length
        ):
            return False
        if self.one_of is not None:
            # Finite: check each allowed scalar against the other constraint directly.
            return all(
                other._scalar_violation(v) is None
                for _, v in self.one_of
                if self._scalar_violation(v) is None
            )
        if other.one_of is not None:
            return False  # self allows infinitely many values
        if other.max is not None and (self.max is None or self.max > other.max):
            return False
        if other.min is not None and (self.min is None or self.min < other.min):
            return False
        if other.ends_with is not None:
            if self.ends_with is None:
                return False
            return all(any(s.endswith(o) for o in other.ends_with) for s in self.ends_with)
        return True

    def intersect(self, other: ArgConstraint) -> ArgConstraint:
        """The constraint satisfied exactly by values satisfying both (possibly empty)."""
        return ArgConstraint(
            max=_pick(self.max, other.max, min),
            min=_pick(self.min, other.min, max),
            one_of=_meet_sets(self.one_of, other.one_of),
            ends_with=_meet_suffixes(self.ends_with, other.ends_with),
            max_length=_pick(self.max_length, other.max_length, min),
        )

    # -- wire form -------------------------------------------------------------------------

    def to_json(self) -> dict[str, JSONValue]:
        out: dict[str, JSONValue] = {}
        if self.max is not None:
            out["max"] = _num(self.max)
        if self.min is not None:
            out["min"] = _num(self.min)
        if self.one_of is not None:
            values: list[JSONValue] = [
                v for v in sorted((v for _, v in self.one_of), key=_sort_key)
            ]
            out["one_of"] = values
        if self.ends_with is not None:
            suffixes: list[JSONValue] = [s for s in sorted(self.ends_with)]
            out["ends_with"] = suffixes
        if self.max_length is not None:
            out["max_length"] = self.max_length
        return out

    @staticmethod
    def from_json(arg: str, raw: object) -> ArgConstraint:
        """Parse one argument's constraint object, rejecting anything unknown or ill-typed."""
        if not isinstance(raw, dict):
            raise InvalidRequest(
                f'constraint for argument {arg!r} must be an object such as {{"max": 100}}',
                code=ErrorCode.INVALID_CONSTRAINT,
            )
        unknown = set(raw) - _CONSTRAINT_KEYS
        if unknown:
            raise InvalidRequest(
                f"unknown constraint {sorted(unknown)[0]!r} on argument {arg!r}; "
                f"use one of: {', '.join(sorted(_CONSTRAINT_KEYS))}",
                code=ErrorCode.UNKNOWN_CONSTRAINT,
            )
        if not raw:
            raise InvalidRequest(
                f"constraint for argument {arg!r} is empty; give at least one of: "
                f"{', '.join(sorted(_CONSTRAINT_KEYS))}",
                code=ErrorCode.INVALID_CONSTRAINT,
            )

        def bound(key: str) -> float | None:
            value = raw.get(key)
            if value is None:
                return None
            if not _is_number(value) or not math.isfinite(float(value)):
                raise _bad(arg, key, "must be a finite number")
            return float(value)

        one_of: list[Scalar] | None = None
        if "one_of" in raw:
            values = raw["one_of"]
            if not isinstance(values, list) or len(values) > MAX_CONSTRAINT_VALUES:
                raise _bad(arg, "one_of", f"must be a list of at most {MAX_CONSTRAINT_VALUES}")
            for v in values:
                if not isinstance(v, str | int | float | bool) or (
                    isinstance(v, float) and not math.isfinite(v)
                ):
                    raise _bad(arg, "one_of", "must hold only strings, numbers or booleans")
            one_of = values
        ends_with: list[str] | None = None
        if "ends_with" in raw:
            suffixes = raw["ends_with"]
            if isinstance(suffixes, str):
                suffixes = [suffixes]
            if (
                not isinstance(suffixes, list)
                or not suffixes
                or len(suffixes) > MAX_CONSTRAINT_VALUES
                or not all(isinstance(s, str) and 0 < len(s) <= 256 for s in suffixes)
            ):
                raise _bad(arg, "ends_with", "must be a non-empty list of non-empty strings")
            ends_with = suffixes
        max_length: int | None = None
        if "max_length" in raw:
            ml = raw["max_length"]
            if not isinstance(ml, int) or isinstance(ml, bool) or ml < 0:
                raise _bad(arg, "max_length", "must be a non-negative integer")
            max_length = ml
        return ArgConstraint.of(
            max=bound("max"),
            min=bound("min"),
            one_of=one_of,
            ends_with=ends_with,
            max_length=max_length,
        )


_CONSTRAINT_KEYS: Final = frozenset({"max", "min", "one_of", "ends_with", "max_length"})


def _bad(arg: str, key: str, why: str) -> InvalidRequest:
    return InvalidRequest(
        f"constraint {key!r} on argument {arg!r} {why}", code=ErrorCode.INVALID_CONSTRAINT
    )


def _num(value: float) -> int | float:
    return int(value) if value.is_integer() else value


def _fmt(value: float) -> str:
    return str(_num(value))


def _sort_key(value: Scalar) -> tuple[str, str]:
    kind, _ = _scalar_key(value)
    return (kind, repr(value))


_T = TypeVar("_T", int, float)


def _pick(a: _T | None, b: _T | None, choose: Callable[[_T, _T], _T]) -> _T | None:
    if a is None:
        return b
    if b is None:
        return a
    return choose(a, b)


def _meet_sets(
    a: frozenset[tuple[str, Scalar]] | None, b: frozenset[tuple[str, Scalar]] | None
) -> frozenset[tuple[str, Scalar]] | None:
    if a is None:
        return b
    if b is None:
        return a
    return a & b


def _meet_suffixes(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    if a is None:
        return b
    if b is None:
        return a
    # A string ending with x and with y ends with whichever of them is longer.
    return frozenset(
        x if len(x) >= len(y) else y for x in a for y in b if x.endswith(y) or y.endswith(x)
    )


@dataclass(frozen=True, slots=True)
class Scope:
    """One tool, the action kinds allowed on it, its datasets and its argument constraints."""

    tool: str
    actions: frozenset[ActionKind]
    datasets: frozenset[str] = frozenset()
    constraints: tuple[tuple[str, ArgConstraint], ...] = field(default=())

    @staticmethod
    def of(
        tool: str,
        actions: Iterable[ActionKind | str],
        datasets: Iterable[str] = (),
        constraints: Mapping[str, ArgConstraint] | None = None,
    ) -> Scope:
        return Scope(
            tool=tool,
            actions=frozenset(ActionKind(a) for a in actions),
            datasets=frozenset(datasets),
            constraints=tuple(sorted((constraints or {}).items())),
        )

    @property
    def constraint_map(self) -> dict[str, ArgConstraint]:
        return dict(self.constraints)

    @property
    def allowed_datasets(self) -> frozenset[str | None]:
        """The dataset names a call may carry; ``None`` stands for "names no dataset"."""
        return frozenset(self.datasets) if self.datasets else frozenset({None})

    @property
    def is_empty(self) -> bool:
        return not self.actions or any(c.is_empty for _, c in self.constraints)

    def is_subset(self, other: Scope) -> bool:
        """True when every call this scope allows, ``other`` allows too."""
        if not self.actions:
            return True
        if self.tool != other.tool:
            return False
        if not self.actions <= other.actions:
            return False
        if not self.allowed_datasets <= other.allowed_datasets:
            return False
        mine = self.constraint_map
        for arg, theirs in other.constraints:
            ours = mine.get(arg)
            if ours is None or not ours.is_subset(theirs):
                return False
        return True

    def intersect(self, other: Scope) -> Scope | None:
        """The scope allowing exactly the calls both allow, or ``None`` when that is nothing."""
        if self.tool != other.tool:
            return None
        actions = self.actions & other.actions
        datasets = self.allowed_datasets & other.allowed_datasets
        if not actions or not datasets:
            return None
        merged = self.constraint_map
        for arg, theirs in other.constraints:
            ours = merged.get(arg)
            merged[arg] = theirs if ours is None else ours.intersect(theirs)
        return Scope.of(
            self.tool,
            actions,
            frozenset(d for d in datasets if d is not None),
            merged,
        )

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "tool": self.tool,
            "actions": [a.value for a in sorted(self.actions)],
            "datasets": [d for d in sorted(self.datasets)],
            "constraints": {arg: c.to_json() for arg, c in self.constraints},
        }

    @staticmethod
    def from_json(raw: object) -> Scope:
        """Parse one requested scope, with a clear error for each thing that is wrong."""
        if not isinstance(raw, dict):
            raise InvalidRequest("each scope must be an object", code=ErrorCode.INVALID_SCOPE)
        unknown = set(raw) - {"tool", "actions", "datasets", "constraints"}
        if unknown:
            raise InvalidRequest(
                f"unknown scope field {sorted(unknown)[0]!r}; "
                "a scope has tool, actions, datasets, constraints",
                code=ErrorCode.INVALID_SCOPE,
            )
        tool = raw.get("tool")
        if not isinstance(tool, str) or not is_valid_name(tool, MAX_TOOL_NAME):
            raise InvalidRequest(
                "scope 'tool' must be a name of letters, digits, '.', '_', '-', '/' or ':' "
                f"(at most {MAX_TOOL_NAME} characters)",
                code=ErrorCode.INVALID_SCOPE,
            )
        actions = raw.get("actions")
        if not isinstance(actions, list) or not actions:
            raise InvalidRequest(
                f"scope for {tool!r} needs a non-empty 'actions' list", code=ErrorCode.INVALID_SCOPE
            )
        kinds: set[ActionKind] = set()
        for a in actions:
            if not isinstance(a, str) or a not in ActionKind.__members__.values():
                raise InvalidRequest(
                    f"unknown action {a!r} for {tool!r}; use one of: "
                    + ", ".join(k.value for k in ActionKind),
                    code=ErrorCode.INVALID_SCOPE,
                )
            kinds.add(ActionKind(a))
        datasets = raw.get("datasets", [])
        if not isinstance(datasets, list) or not all(
            isinstance(d, str) and is_valid_name(d, MAX_DATASET_NAME) for d in datasets
        ):
            raise InvalidRequest(
                f"scope 'datasets' for {tool!r} must be a list of dataset names",
                code=ErrorCode.INVALID_SCOPE,
            )
        raw_constraints = raw.get("constraints", {})
        if not isinstance(raw_constraints, dict) or len(raw_constraints) > MAX_CONSTRAINED_ARGS:
            raise InvalidRequest(
                f"scope 'constraints' for {tool!r} must be an object of at most "
                f"{MAX_CONSTRAINED_ARGS} arguments",
                code=ErrorCode.INVALID_CONSTRAINT,
            )
        constraints: dict[str, ArgConstraint] = {}
        for arg, c in raw_constraints.items():
            if not is_valid_name(arg, 64):
                raise InvalidRequest(
                    f"constraint argument name {arg!r} is not a valid name",
                    code=ErrorCode.INVALID_CONSTRAINT,
                )
            constraints[arg] = ArgConstraint.from_json(arg, c)
        return Scope.of(tool, kinds, datasets, constraints)


# ASCII letters and digits and ``._-/:@``; one match instead of a test per character (every
# call's tool and dataset are checked).
_NAME = re.compile(r"[A-Za-z0-9._\-/:@]+")


def is_valid_name(value: str, limit: int) -> bool:
    """Names of tools, datasets and arguments: printable, bounded, no spaces or quotes."""
    if not value or len(value) > limit:
        return False
    return _NAME.fullmatch(value) is not None


def scopes_subset(child: Iterable[Scope], parent: Iterable[Scope]) -> bool:
    """True when every scope in ``child`` fits inside some scope of ``parent``."""
    parents = list(parent)
    return all(any(c.is_subset(p) for p in parents) for c in child)
