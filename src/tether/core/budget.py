"""Budgets: how much a task may take out, per kind and per data classification.

A read-heavy agent looks harmless until it exfiltrates through legitimate queries, so a task
carries limits on records and bytes read (in total and per classification), calls per minute,
and money spent. Authorize *reserves* against a limit before the call runs (the call's declared
maximum, or a default); the reported effect *settles* the real amount. A reservation that would
pass a limit is refused, so concurrent calls can never overspend; an effect above its reservation
is recorded and closes that budget.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from tether.core.errors import ErrorCode, InvalidRequest
from tether.core.scope import Classification, JSONValue


class BudgetKind(StrEnum):
    RECORDS = "records"
    BYTES = "bytes"
    CALLS_PER_MINUTE = "calls_per_minute"
    SPEND = "spend"


#: The key for a limit that applies whatever the classification.
ANY = ""


@dataclass(frozen=True, slots=True)
class Limit:
    kind: BudgetKind
    classification: str  # ANY or a Classification value
    amount: float

    @property
    def label(self) -> str:
        where = f" of {self.classification} data" if self.classification else ""
        return f"{self.kind.value}{where}"


@dataclass(frozen=True, slots=True)
class Budgets:
    limits: tuple[Limit, ...] = ()

    def get(self, kind: BudgetKind, classification: str = ANY) -> Limit | None:
        for limit in self.limits:
            if limit.kind is kind and limit.classification == classification:
                return limit
        return None

    def capped_by(self, policy: Budgets) -> Budgets:
        """These (requested) limits, each cut to policy's limit of the same kind and
        classification, plus policy's limits that were not requested at all.

        INVARIANT: the result is never looser than policy: a task gets at most what policy
        allows, and the policy's limit when it asked for none.
        """
        limits: list[Limit] = []
        for limit in self.limits:
            cap = policy.get(limit.kind, limit.classification)
            limits.append(limit if cap is None or limit.amount <= cap.amount else cap)
        limits.extend(c for c in policy.limits if self.get(c.kind, c.classification) is None)
        return Budgets(tuple(limits))

    def narrower_than(self, parent: Budgets) -> str | None:
        """Why these budgets exceed ``parent``'s (a delegation may only narrow), or ``None``."""
        for theirs in parent.limits:
            ours = self.get(theirs.kind, theirs.classification)
            if ours is None:
                return f"the delegating grant limits {theirs.label}; the delegate must too"
            if ours.amount > theirs.amount:
                return (
                    f"{ours.label} limit {_fmt(ours.amount)} exceeds the parent's "
                    f"{_fmt(theirs.amount)}"
                )
        return None

    def to_json(self) -> dict[str, JSONValue]:
        out: dict[str, JSONValue] = {}
        by_class: dict[str, JSONValue] = {}
        for limit in self.limits:
            if limit.classification == ANY:
                out[limit.kind.value] = _num(limit.amount)
            else:
                entry = by_class.setdefault(limit.classification, {})
                if isinstance(entry, dict):
                    entry[limit.kind.value] = _num(limit.amount)
        if by_class:
            out["by_classification"] = by_class
        return out

    @staticmethod
    def from_json(raw: object) -> Budgets:
        """Parse ``{"records": 1000, "bytes": 5e6, "calls_per_minute": 60, "spend": 500,
        "by_classification": {"confidential": {"records": 100}}}``."""
        if raw is None:
            return Budgets()
        if not isinstance(raw, Mapping):
            raise _bad('budgets must be an object such as {"records": 1000}')
        limits: list[Limit] = []
        for key, value in raw.items():
            if key == "by_classification":
                if not isinstance(value, Mapping):
                    raise _bad("budgets.by_classification must map classifications to limits")
                for name, inner in value.items():
                    if name not in {c.value for c in Classification}:
                        raise _bad(f"unknown classification {name!r} in budgets")
                    if not isinstance(inner, Mapping):
                        raise _bad(f"budgets.by_classification.{name} must be an object")
                    for kind, amount in inner.items():
                        limits.append(_limit(kind, amount, name, per_class=True))
                continue
            limits.append(_limit(key, value, ANY, per_class=False))
        return Budgets(tuple(limits))


def _limit(kind: object, amount: object, classification: str, *, per_class: bool) -> Limit:
    kinds = {k.value for k in BudgetKind}
    if per_class:
        kinds = {BudgetKind.RECORDS.value, BudgetKind.BYTES.value}
    if kind not in kinds:
        raise _bad(f"unknown budget {kind!r}; use one of: {', '.join(sorted(kinds))}")
    if (
        isinstance(amount, bool)
        or not isinstance(amount, int | float)
        or not math.isfinite(amount)
        or amount < 0
        or amount > 1e15
    ):
        raise _bad(f"budget {kind} must be a non-negative number")
    return Limit(BudgetKind(str(kind)), classification, float(amount))


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(message, code=ErrorCode.INVALID_FIELD)


def _num(value: float) -> int | float:
    return int(value) if value.is_integer() else value


def _fmt(value: float) -> str:
    return str(_num(value))


@dataclass(frozen=True, slots=True)
class Hold:
    """An amount reserved against one limit of one task for one decision.

    ``step`` names the declared-workflow step whose limit it counts against; ``None`` for the
    task's own limits. A step's holds are kept apart from the task's: the same call makes both.
    """

    task_id: str
    kind: BudgetKind
    classification: str
    amount: float
    step: str | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        """Which limit this hold counts against: (task, step or "", kind, classification)."""
        return (self.task_id, self.step or "", self.kind.value, self.classification)


@dataclass(frozen=True, slots=True)
class Usage:
    limit: Limit
    used: float
    reserved: float
    closed: bool = False
    #: The workflow step whose limit this is; ``None`` for the task's own.
    step: str | None = None

    def refusal(self, amount: float) -> str | None:
        """Why reserving ``amount`` more is refused, or ``None``."""
        name = budget_name(self.limit.label, self.step)
        if self.closed:
            return (
                f"the {name} is closed: an effect exceeded its reservation "
                f"(used {_fmt(self.used)} of {_fmt(self.limit.amount)})"
            )
        if self.used + self.reserved + amount > self.limit.amount:
            return (
                f"the {name} would be exceeded: used {_fmt(self.used)}, "
                f"reserved {_fmt(self.reserved)}, this call {_fmt(amount)}, limit "
                f"{_fmt(self.limit.amount)}"
            )
        return None


def budget_name(label: str, step: str | None) -> str:
    """``records budget``, or ``records budget of workflow step 'query'``."""
    return f"{label} budget" if step is None else f"{label} budget of workflow step {step!r}"


def holds_for(
    budgets: Budgets,
    task_ids: Iterable[str],
    *,
    classification: Classification | None,
    records: float | None,
    bytes_: float | None,
    spend: float | None,
    step: str | None = None,
) -> list[Hold]:
    """The reservations one call makes, against its task and every task it was delegated from
    (a delegate's use also counts against its ancestors, so fan-out cannot overspend)."""
    holds: list[Hold] = []
    wanted = [
        (BudgetKind.RECORDS, records),
        (BudgetKind.BYTES, bytes_),
        (BudgetKind.SPEND, spend),
    ]
    for task_id in task_ids:
        for kind, amount in wanted:
            if amount is None:
                continue
            holds.append(Hold(task_id, kind, ANY, amount, step))
            if classification is not None and kind is not BudgetKind.SPEND:
                holds.append(Hold(task_id, kind, classification.value, amount, step))
    return holds


@dataclass(frozen=True, slots=True)
class ReadFloors:
    """The fewest records a read reserves against a records budget, whatever it declares.

    An agent that declares ``expect: {records: 0}`` and never reports an effect would otherwise
    read without limit: the floor is what every read costs until its effect settles it. The
    floor of a dataset or a tool named here replaces the default (the higher when both are)."""

    default: int = 100
    tools: Mapping[str, int] = field(default_factory=dict, hash=False)
    datasets: Mapping[str, int] = field(default_factory=dict, hash=False)

    def records_for(self, tool: str, dataset: str | None) -> int:
        named = [
            floor
            for floor in (self.tools.get(tool), self.datasets.get(dataset or ""))
            if floor is not None
        ]
        return max(named) if named else self.default
