"""The provenance part of ``catalog.yaml``: trusted sources and sink arguments.

Format (beside ``datasets``)::

    datasets:
      contacts: {classification: internal, trusted: true}   # the user's own records
    tools:
      calendar.list_events: {trusted: true}                  # results the user wrote
      web.browse:
        sinks:
          url: {needs: trusted}                              # on_failure: deny (default)
      slack.send:
        sinks:
          body: {needs: not_only_untrusted, on_failure: approval_required}
          channel: {needs: trusted, kinds: [text]}
    trusted_values: ["mycompany.com"]                        # the operator's own allow-list

A tool result is untrusted unless its tool or the dataset it was read from is marked
``trusted``. ``needs`` is ``trusted`` (every value found in the argument was seen in the user's
request or a trusted source) or ``not_only_untrusted`` (no value was seen only in untrusted
results); ``on_failure`` is ``deny`` or ``approval_required``; ``kinds`` narrows which kinds of
value are checked (default: every kind but ``text``; see :mod:`tether.core.provenance_extract`).
An argument is named as the call sends it, nested ones with dots (``event.title``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from tether.core.errors import ConfigurationError
from tether.core.provenance import Need, Outcome, SinkRequirement
from tether.core.provenance_extract import ValueKind
from tether.core.provenance_rules import ProvenanceRules
from tether.core.scope import is_valid_name

__all__ = ["MAX_TRUSTED_VALUES", "ProvenanceProblem", "parse_provenance"]

_TOOL_KEYS = frozenset({"trusted", "sinks", "description"})
_SINK_KEYS = frozenset({"needs", "on_failure", "kinds"})
MAX_TRUSTED_VALUES = 1000
_MAX_VALUE = 1024


class ProvenanceProblem(ValueError):
    """The catalog's provenance rules cannot be used; says what is wrong and where."""


def _choices(enum: type[Need] | type[Outcome] | type[ValueKind]) -> str:
    return ", ".join(m.value for m in enum)


def _flag(entry: Mapping[str, Any], where: str) -> bool:
    value = entry.get("trusted", False)
    if not isinstance(value, bool):
        raise ProvenanceProblem(f"{where}: trusted is true or false, not {value!r}")
    return value


def _sink(tool: str, argument: Any, raw: Any) -> SinkRequirement:
    where = f"tool {tool}: sink {argument!r}"
    if not isinstance(argument, str) or not argument or not all(argument.split(".")):
        raise ProvenanceProblem(f"{where}: name an argument ('to', or 'event.title')")
    if not isinstance(raw, dict) or "needs" not in raw:
        raise ProvenanceProblem(f"{where}: give {{needs: one of {_choices(Need)}}}")
    extra = set(raw) - _SINK_KEYS
    if extra:
        raise ProvenanceProblem(f"{where}: unknown keys {sorted(map(str, extra))}")
    try:
        need = Need(str(raw["needs"]))
    except ValueError:
        raise ProvenanceProblem(
            f"{where}: needs {raw['needs']!r} is not one of {_choices(Need)}"
        ) from None
    try:
        outcome = Outcome(str(raw.get("on_failure", Outcome.DENY.value)))
    except ValueError:
        raise ProvenanceProblem(
            f"{where}: on_failure {raw['on_failure']!r} is not one of {_choices(Outcome)}"
        ) from None
    kinds = raw.get("kinds")
    if kinds is None:
        return SinkRequirement(argument, need, outcome)
    if not isinstance(kinds, list) or not kinds:
        raise ProvenanceProblem(f"{where}: kinds is a list of {_choices(ValueKind)}")
    try:
        chosen = frozenset(ValueKind(str(k)) for k in kinds)
    except ValueError:
        raise ProvenanceProblem(f"{where}: kinds are among {_choices(ValueKind)}") from None
    try:
        return SinkRequirement(argument, need, outcome, chosen)
    except ConfigurationError as error:  # pragma: no cover - checked above
        raise ProvenanceProblem(f"{where}: {error.message}") from None


def _tool(name: Any, entry: Any) -> tuple[bool, tuple[SinkRequirement, ...]]:
    if not isinstance(name, str) or not is_valid_name(name, 128):
        raise ProvenanceProblem(f"tool name {name!r} is not a valid name")
    if not isinstance(entry, dict):
        raise ProvenanceProblem(f"tool {name}: give {{trusted: true}} and/or {{sinks: ...}}")
    extra = set(entry) - _TOOL_KEYS
    if extra:
        raise ProvenanceProblem(f"tool {name}: unknown keys {sorted(map(str, extra))}")
    sinks = entry.get("sinks") or {}
    if not isinstance(sinks, dict):
        raise ProvenanceProblem(f"tool {name}: sinks map argument names to {{needs: ...}}")
    return _flag(entry, f"tool {name}"), tuple(_sink(name, a, r) for a, r in sinks.items())


def parse_provenance(raw: Mapping[str, Any]) -> ProvenanceRules:
    """The provenance rules of a parsed ``catalog.yaml`` (its ``datasets`` already checked)."""
    datasets = raw.get("datasets") or {}
    trusted_datasets = frozenset(
        name
        for name, entry in datasets.items()
        if isinstance(entry, dict) and _flag(entry, f"dataset {name}")
    )
    tools = raw.get("tools") or {}
    if not isinstance(tools, dict):
        raise ProvenanceProblem("tools must map tool names to {trusted: ..., sinks: ...}")
    trusted_tools: set[str] = set()
    sinks: dict[str, tuple[SinkRequirement, ...]] = {}
    for name, entry in tools.items():
        trusted, declared = _tool(name, entry)
        if trusted:
            trusted_tools.add(name)
        if declared:
            sinks[name] = declared
    values = raw.get("trusted_values") or []
    if (
        not isinstance(values, list)
        or len(values) > MAX_TRUSTED_VALUES
        or not all(isinstance(v, str) and 0 < len(v) <= _MAX_VALUE for v in values)
    ):
        raise ProvenanceProblem(
            f"trusted_values is a list of at most {MAX_TRUSTED_VALUES} non-empty strings of at "
            f"most {_MAX_VALUE} characters"
        )
    return ProvenanceRules(
        frozenset(trusted_tools),
        trusted_datasets,
        tuple(values),
        MappingProxyType(sinks),
    )
