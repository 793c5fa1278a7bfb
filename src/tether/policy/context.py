"""The Cedar ``context`` record for one call, and which parts of it a policy can read.

Every request carries one record (Cedar JSON value format)::

    { intent: { workflow, purpose, on_behalf_of }, task_id,
      agent: { id, trust_domain, name },
      dataset: String ("" if none), classification: String ("" if none),
      args: Record,
      delegation: { depth, chain, root },
      dataflow: { highest: String, rank: Long },
      provenance: { checked: Bool, untrusted: Set<String>, sources: Set<String>,
                    outcome: String } }

``dataflow`` is the task's data-flow label: the highest classification the task (or, for a
delegate, the task it was delegated from) has read *before* this call, as its name and its rank
(:data:`DATAFLOW_RANKS`: ``public`` 0, ``internal`` 1, ``confidential`` 2, ``restricted`` 3;
``""`` and -1 while nothing classified has been read), so operators can write
``context.dataflow.rank >= 2``. The call's own dataset is ``context.classification``.

``provenance`` is the argument provenance check of the call (:mod:`tether.core.provenance`):
``checked`` when the catalog declares sink arguments for the tool, ``untrusted`` the sink
arguments holding a value that failed what its sink needs, ``sources`` the tools those values
were seen in, and ``outcome`` what tether decides of it alone (``""``, or ``approval_required``:
a ``deny`` never reaches policy). A policy may ask more, e.g. ``forbid (...) when
{ context.provenance.untrusted.contains("body") };``.

Call arguments are JSON; they become Cedar values as follows, and a value that has no faithful
Cedar form makes the call unrepresentable (:class:`Unrepresentable`, which the engine turns into a
``deny`` with reason ``policy_error``: a policy cannot be asked about what it cannot see):

    str -> String       bool -> Bool       int -> Long (within Cedar's signed 64-bit range)
    list -> Set         dict -> Record     null -> attribute left out (``has`` is false);
                                                   a null inside a list is unrepresentable
    float -> Long when integral, else ``decimal`` when it has at most 4 decimal places and fits
             Cedar's decimal range, else unrepresentable (NaN and infinities too)

Nesting is bounded (:data:`MAX_DEPTH`) and so is the number of values sent (:data:`MAX_VALUES`).
Record keys Cedar's JSON format reserves (``__entity``, ``__extn``, ``__expr``) are refused: an
argument must never smuggle in an entity reference or extension value.

Only what a policy can observe is sent. Cedar reads the context only through attribute access
(``context.x``) and ``has``, so :func:`scan_context_refs` records, per policy, which top-level
attributes, which ``args`` attributes and which attributes of the other records (``intent``,
``agent``, ``delegation``, ``dataflow``, ``provenance``) it names; any other use (``context ==
…``, ``context.args like …``, ``context.intent == …``) means "all" of that level. The engine then
builds the context with just the union of those names for the policies it evaluates. This is
exact: a policy's result depends only on the attributes it names. It keeps Cedar's request
parsing (the bulk of a decision's cost: each record and value sent costs Cedar about a
microsecond or more to read) small, and arguments no applicable policy reads are neither
converted nor able to make a call unrepresentable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final, NamedTuple

from tether.core.scope import Classification, JSONValue

MAX_DEPTH: Final = 8
MAX_VALUES: Final = 4096
LONG_MIN: Final = -(2**63)
LONG_MAX: Final = 2**63 - 1
DECIMAL_MAX: Final = Decimal("922337203685477.5807")
DECIMAL_MIN: Final = Decimal("-922337203685477.5808")
RESERVED_KEYS: Final = frozenset({"__entity", "__extn", "__expr"})

TOP_LEVEL: Final = frozenset(
    {
        "intent",
        "task_id",
        "agent",
        "dataset",
        "classification",
        "args",
        "delegation",
        "dataflow",
        "provenance",
    }
)
#: ``context.dataflow.rank`` of each label; -1 for the empty label (nothing classified read).
DATAFLOW_RANKS: Final = {c.value: c.rank for c in Classification}
NO_DATAFLOW_RANK: Final = -1

CedarJSON = None | bool | int | str | list["CedarJSON"] | dict[str, "CedarJSON"]


class Unrepresentable(Exception):
    """An argument has no faithful Cedar value; ``path`` names it (``amount``, ``items[2]``)."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"argument {path} cannot be represented for policy: {why}")
        self.path = path
        self.why = why


# -- what a policy reads -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContextRefs:
    """Which context attributes a policy (or a set of them) can read; ``None`` means all.

    ``record_attrs`` narrows the records of ``top`` other than ``args``: the (record, attribute)
    pairs named, with the records in ``whole_records`` read whole; ``None`` sends every record
    of ``top`` whole."""

    top: frozenset[str] | None
    args: frozenset[str] | None
    record_attrs: frozenset[tuple[str, str]] | None = None
    whole_records: frozenset[str] = frozenset()

    def union(self, other: ContextRefs) -> ContextRefs:
        top = None if self.top is None or other.top is None else self.top | other.top
        args = None if self.args is None or other.args is None else self.args | other.args
        if self.record_attrs is None or other.record_attrs is None:
            return ContextRefs(top, args)
        return ContextRefs(
            top,
            args,
            self.record_attrs | other.record_attrs,
            self.whole_records | other.whole_records,
        )

    def record_fields(self, record: str) -> frozenset[str] | None:
        """The attributes of ``record`` to send; ``None`` for all of them."""
        if self.record_attrs is None or record in self.whole_records:
            return None
        return frozenset(attr for name, attr in self.record_attrs if name == record)


NO_REFS: Final = ContextRefs(frozenset(), frozenset(), frozenset())
ALL_REFS: Final = ContextRefs(None, None)

_CONTEXT: Final = {"Var": "context"}


def _context_attr(node: object) -> str | None:
    """``x`` when ``node`` is ``context.x`` (or ``context["x"]``), else ``None``."""
    if not isinstance(node, dict) or len(node) != 1:
        return None
    inner = node.get(".")
    if isinstance(inner, dict) and inner.get("left") == _CONTEXT:
        attr = inner.get("attr")
        return attr if isinstance(attr, str) else None
    return None


def scan_context_refs(conditions: object) -> ContextRefs:
    """Walk a policy's EST ``conditions`` and collect the context attributes it names.

    Over-collecting is always safe (more is sent); only attribute access and ``has`` directly on
    ``context`` or on one of its attributes (``context.args``, ``context.intent``…) narrow it.
    Reaching ``context.x`` itself in the walk means it is read as a value (compared, ``like``,
    passed to a function), so all of ``x`` is sent: a read of ``context.x.y`` returns before
    its ``context.x`` is walked.
    """
    top: set[str] = set()
    args: set[str] = set()
    attrs: set[tuple[str, str]] = set()
    whole: set[str] = set()
    all_top = False

    def walk(node: object) -> None:
        nonlocal all_top
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        if len(node) == 1:
            for op in (".", "has"):
                inner = node.get(op)
                if isinstance(inner, dict) and isinstance(inner.get("attr"), str):
                    attr: str = inner["attr"]
                    left = inner.get("left")
                    if left == _CONTEXT:
                        top.add(attr)
                        if op == ".":  # `context.x` as a value: all of it (see above)
                            whole.add(attr)
                        return
                    record = _context_attr(left)
                    if record is not None:  # `context.x.y` or `context.x has y`
                        top.add(record)
                        if record == "args":
                            args.add(attr)
                        else:
                            attrs.add((record, attr))
                        return
            if node == _CONTEXT:
                all_top = True
                return
        for value in node.values():
            walk(value)

    walk(conditions)
    if all_top:
        return ALL_REFS
    return ContextRefs(
        frozenset(top),
        None if "args" in whole else frozenset(args),
        frozenset(attrs),
        frozenset(whole - {"args"}),
    )


# -- JSON -> Cedar values ----------------------------------------------------------------------


def _decimal(value: float, path: str) -> dict[str, CedarJSON]:
    try:
        number = Decimal(repr(value))
    except InvalidOperation:  # pragma: no cover - repr of a finite float always parses
        raise Unrepresentable(path, "not a number") from None
    exponent = number.as_tuple().exponent
    if not isinstance(exponent, int) or exponent < -4:
        raise Unrepresentable(path, "a decimal with more than 4 decimal places")
    if not DECIMAL_MIN <= number <= DECIMAL_MAX:
        raise Unrepresentable(path, "outside Cedar's decimal range")
    return {"__extn": {"fn": "decimal", "arg": format(number, "f")}}


def _convert(value: JSONValue, path: str, depth: int, budget: list[int]) -> CedarJSON:
    budget[0] -= 1
    if budget[0] < 0:
        raise Unrepresentable(path, f"more than {MAX_VALUES} values")
    if isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        if not LONG_MIN <= value <= LONG_MAX:
            raise Unrepresentable(path, "an integer outside Cedar's 64-bit range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Unrepresentable(path, "not a finite number")
        if value.is_integer():
            if not LONG_MIN <= value <= LONG_MAX:
                raise Unrepresentable(path, "an integer outside Cedar's 64-bit range")
            return int(value)
        return _decimal(value, path)
    if depth >= MAX_DEPTH:
        raise Unrepresentable(path, f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, list):
        items: list[CedarJSON] = []
        for i, item in enumerate(value):
            if item is None:
                raise Unrepresentable(f"{path}[{i}]", "a null inside a list")
            items.append(_convert(item, f"{path}[{i}]", depth + 1, budget))
        return items
    if isinstance(value, dict):
        return _record(value, path, depth + 1, budget)
    raise Unrepresentable(path, f"a {type(value).__name__}, not a JSON value")


def _record(
    value: Mapping[str, JSONValue], path: str, depth: int, budget: list[int]
) -> dict[str, CedarJSON]:
    out: dict[str, CedarJSON] = {}
    for key, item in value.items():
        sub = f"{path}.{key}" if path else str(key)
        if not isinstance(key, str):
            raise Unrepresentable(sub, "a record key that is not a string")
        if key in RESERVED_KEYS:
            raise Unrepresentable(sub, "a key Cedar reserves")
        if item is None:
            continue
        out[key] = _convert(item, sub, depth, budget)
    return out


def to_cedar_args(
    args: Mapping[str, JSONValue], names: frozenset[str] | None
) -> dict[str, CedarJSON]:
    """Convert the call's arguments (only ``names`` of them, or all when ``None``)."""
    budget = [MAX_VALUES]
    if names is None:
        return _record(args, "", 1, budget)
    picked = {name: args[name] for name in names if name in args}
    return _record(picked, "", 1, budget)


# -- the whole record --------------------------------------------------------------------------


class CallFacts(NamedTuple):
    """What the context says about a call, already reduced to strings (a tuple: cheap to make)."""

    workflow: str
    purpose: str
    on_behalf_of: str
    task_id: str
    agent_id: str
    trust_domain: str
    agent_name: str
    dataset: str
    classification: str
    delegators: tuple[str, ...] = ()
    #: The task's data-flow label before this call ("" when nothing classified was read).
    dataflow: str = ""
    #: The provenance check: whether it ran, the failing sink arguments, where their values
    #: were seen, and tether's own outcome ("" when none).
    provenance_checked: bool = False
    untrusted: tuple[str, ...] = ()
    untrusted_sources: tuple[str, ...] = ()
    provenance_outcome: str = ""


def delegation_record(agent_id: str, delegators: tuple[str, ...]) -> dict[str, CedarJSON]:
    """``context.delegation``: how deep the grant was delegated, by whom (root first), and the
    root agent (the agent itself for a root grant)."""
    return {
        "depth": len(delegators),
        "chain": list(delegators),
        "root": delegators[0] if delegators else agent_id,
    }


def dataflow_record(label: str) -> dict[str, CedarJSON]:
    """``context.dataflow``: the highest classification read so far and its rank."""
    return {"highest": label, "rank": DATAFLOW_RANKS.get(label, NO_DATAFLOW_RANK)}


def provenance_record(facts: CallFacts) -> dict[str, CedarJSON]:
    """``context.provenance``: what the argument provenance check found."""
    return {
        "checked": facts.provenance_checked,
        "untrusted": list(facts.untrusted),
        "sources": list(facts.untrusted_sources),
        "outcome": facts.provenance_outcome,
    }


def build_context(
    facts: CallFacts, args: Mapping[str, JSONValue], refs: ContextRefs
) -> dict[str, CedarJSON]:
    """The context record holding what ``refs`` says the evaluated policies can read.

    Raises :class:`Unrepresentable` when a read argument has no faithful Cedar value.
    """
    top = TOP_LEVEL if refs.top is None else refs.top
    narrow = refs.top is not None and refs.record_attrs is not None
    ctx: dict[str, CedarJSON] = {}

    def record(name: str, value: dict[str, CedarJSON]) -> None:
        fields = refs.record_fields(name) if narrow else None
        ctx[name] = value if fields is None else {k: v for k, v in value.items() if k in fields}

    if "intent" in top:
        record(
            "intent",
            {
                "workflow": facts.workflow,
                "purpose": facts.purpose,
                "on_behalf_of": facts.on_behalf_of,
            },
        )
    if "task_id" in top:
        ctx["task_id"] = facts.task_id
    if "agent" in top:
        record(
            "agent",
            {"id": facts.agent_id, "trust_domain": facts.trust_domain, "name": facts.agent_name},
        )
    if "dataset" in top:
        ctx["dataset"] = facts.dataset
    if "classification" in top:
        ctx["classification"] = facts.classification
    if "args" in top:
        ctx["args"] = to_cedar_args(args, refs.args)
    if "delegation" in top:
        record("delegation", delegation_record(facts.agent_id, facts.delegators))
    if "dataflow" in top:
        record("dataflow", dataflow_record(facts.dataflow))
    if "provenance" in top:
        record("provenance", provenance_record(facts))
    return ctx


_ENCODER: Final = json.JSONEncoder(separators=(",", ":"))


def context_json(ctx: Mapping[str, CedarJSON]) -> str:
    """The context as the JSON text cedarpy passes to Cedar."""
    return _ENCODER.encode(ctx)
