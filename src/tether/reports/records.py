"""Reading audit records for reports: the time window, and typed access to record bodies.

Reports read whatever the service wrote (see ``tether.service``: tasks, authorize, effects,
approvals, break-glass). A body that does not have the shape the service writes is not guessed
at: :class:`MalformedRecord` names the record and what was wrong, and the report stops.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from tether.core.audit import AuditKind, AuditRecord
from tether.core.errors import TetherError
from tether.core.risks import Risk
from tether.core.scope import ActionKind, JSONValue, Scope
from tether.core.verdict import Decision

#: The record kinds that carry a decision on one call.
DECISION_KINDS = frozenset({AuditKind.DECISION, AuditKind.BREAKGLASS_DECISION})
#: The record kinds that open a task with a grant.
GRANT_KINDS = frozenset({AuditKind.TASK_OPENED, AuditKind.TASK_DELEGATED})


class MalformedRecord(ValueError):
    """A record whose time or body is not what tether writes; the message names the record."""


def parse_instant(text: str) -> datetime:
    """An ISO-8601 instant; one without an offset is taken as UTC. Raises ``ValueError``."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@dataclass(frozen=True, slots=True)
class Window:
    """Records with ``since <= at < until``; an open end has no bound."""

    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        for bound in (self.since, self.until):
            if bound is not None and bound.tzinfo is None:
                raise ValueError("window bounds must be timezone-aware")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("the window is empty: --since must be before --until")

    def contains(self, at: datetime) -> bool:
        if self.since is not None and at < self.since:
            return False
        return self.until is None or at < self.until

    def describe(self) -> str:
        since = self.since.isoformat() if self.since is not None else "the first record"
        until = self.until.isoformat() if self.until is not None else "the last record"
        return f"from {since} until {until}"


def record_time(record: AuditRecord) -> datetime:
    try:
        return parse_instant(record.at)
    except ValueError:
        raise MalformedRecord(f"record {record.seq}: 'at' is not an ISO-8601 time") from None


def windowed(
    records: Iterable[AuditRecord], window: Window
) -> Iterator[tuple[AuditRecord, datetime]]:
    """The records inside ``window``, each with its parsed time."""
    for record in records:
        at = record_time(record)
        if window.contains(at):
            yield record, at


# -- typed access to bodies ------------------------------------------------------------------


def _bad(record: AuditRecord, what: str) -> MalformedRecord:
    return MalformedRecord(f"record {record.seq} ({record.kind.value}): {what}")


def obj(record: AuditRecord, parent: Mapping[str, JSONValue], key: str) -> dict[str, JSONValue]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise _bad(record, f"'{key}' must be an object")
    return value


def opt_obj(
    record: AuditRecord, parent: Mapping[str, JSONValue], key: str
) -> dict[str, JSONValue] | None:
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad(record, f"'{key}' must be an object or null")
    return value


def text(record: AuditRecord, parent: Mapping[str, JSONValue], key: str) -> str:
    value = parent.get(key)
    if not isinstance(value, str):
        raise _bad(record, f"'{key}' must be a string")
    return value


def opt_text(record: AuditRecord, parent: Mapping[str, JSONValue], key: str) -> str | None:
    value = parent.get(key)
    if value is not None and not isinstance(value, str):
        raise _bad(record, f"'{key}' must be a string or null")
    return value


def items(record: AuditRecord, parent: Mapping[str, JSONValue], key: str) -> list[JSONValue]:
    value = parent.get(key)
    if not isinstance(value, list):
        raise _bad(record, f"'{key}' must be a list")
    return value


def count(record: AuditRecord, parent: Mapping[str, JSONValue], key: str) -> int:
    """A non-negative integer, or 0 when absent or null (an effect may not report it)."""
    value = parent.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _bad(record, f"'{key}' must be a non-negative integer or null")
    return value


# -- the values reports need -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallFacts:
    """The call a decision or effect record names (arguments are HMAC'd and not read here)."""

    tool: str
    action: ActionKind
    dataset: str | None


@dataclass(frozen=True, slots=True)
class DecisionFacts:
    """What reports read from one decision record."""

    decision: Decision
    call: CallFacts
    reason_codes: tuple[str, ...]
    risks: tuple[Risk, ...]
    workflow: str | None
    delegation_depth: int
    obligation_kinds: tuple[str, ...]
    breakglass: bool


def call_facts(record: AuditRecord, parent: Mapping[str, JSONValue]) -> CallFacts:
    call = obj(record, parent, "call")
    action = text(record, call, "action")
    try:
        kind = ActionKind(action)
    except ValueError:
        raise _bad(record, f"unknown action {action!r}") from None
    return CallFacts(text(record, call, "tool"), kind, opt_text(record, call, "dataset"))


def decision_facts(record: AuditRecord) -> DecisionFacts:
    """Read a ``decision`` or ``breakglass_decision`` record."""
    body = record.body
    verdict = obj(record, body, "verdict")
    raw_decision = text(record, verdict, "decision")
    try:
        decision = Decision(raw_decision)
    except ValueError:
        raise _bad(record, f"unknown decision {raw_decision!r}") from None
    codes: list[str] = []
    for reason in items(record, verdict, "reasons"):
        if not isinstance(reason, dict):
            raise _bad(record, "each reason must be an object")
        codes.append(text(record, reason, "code"))
    risks: list[Risk] = []
    for raw in items(record, verdict, "risks"):
        if not isinstance(raw, str) or raw not in Risk.__members__:
            raise _bad(record, f"unknown risk id {raw!r}")
        risks.append(Risk(raw))
    obligations: list[str] = []
    for raw in items(record, verdict, "obligations") if "obligations" in verdict else []:
        if not isinstance(raw, dict):
            raise _bad(record, "each obligation must be an object")
        obligations.append(text(record, raw, "kind"))
    delegation = opt_obj(record, verdict, "delegation")
    depth = count(record, delegation, "depth") if delegation is not None else 0
    intent = opt_obj(record, body, "intent")
    return DecisionFacts(
        decision=decision,
        call=call_facts(record, body),
        reason_codes=tuple(codes),
        risks=tuple(risks),
        workflow=text(record, intent, "workflow") if intent is not None else None,
        delegation_depth=depth,
        obligation_kinds=tuple(obligations),
        breakglass=record.kind is AuditKind.BREAKGLASS_DECISION,
    )


@dataclass(frozen=True, slots=True)
class GrantFacts:
    """What reports read from a ``task_opened`` or ``task_delegated`` record."""

    task_id: str
    agent: str
    workflow: str
    granted: tuple[Scope, ...]
    delegated: bool


def grant_facts(record: AuditRecord) -> GrantFacts:
    body = record.body
    if record.task_id is None or record.agent is None:
        raise _bad(record, "a task record must name its task and agent")
    intent = obj(record, body, "intent")
    scopes: list[Scope] = []
    for raw in items(record, body, "granted"):
        try:
            scopes.append(Scope.from_json(raw))
        except TetherError as error:
            raise _bad(record, f"a granted scope is not valid: {error.message}") from None
    return GrantFacts(
        task_id=record.task_id,
        agent=record.agent,
        workflow=text(record, intent, "workflow"),
        granted=tuple(scopes),
        delegated=record.kind is AuditKind.TASK_DELEGATED,
    )
