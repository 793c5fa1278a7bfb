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

These are the typed models of those mappings (read with the rest of the catalog by
:mod:`tether.policy.catalog`, every problem at its ``file:line:col``) and the step from them to
the frozen :class:`~tether.core.provenance_rules.ProvenanceRules` the decision uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Final

from pydantic import AfterValidator, Field, StringConstraints

from tether.configfile import YamlModel
from tether.configfile.models import Flag
from tether.core.provenance import Need, Outcome, SinkRequirement
from tether.core.provenance_extract import ValueKind
from tether.core.provenance_rules import ProvenanceRules
from tether.core.scope import is_valid_name

__all__ = ["MAX_TRUSTED_VALUES", "SinkEntry", "ToolEntry", "ToolName", "TrustedValues", "rules_of"]

MAX_TRUSTED_VALUES: Final = 1000
_MAX_VALUE: Final = 1024
_MAX_TOOL_NAME: Final = 128


def _argument(name: str) -> str:
    if not name or not all(name.split(".")):
        raise ValueError(f"{name!r} is not an argument name ('to', or 'event.title')")
    return name


def _tool(name: str) -> str:
    if not is_valid_name(name, _MAX_TOOL_NAME):
        raise ValueError(f"{name!r} is not a valid tool name")
    return name


ArgumentName = Annotated[str, AfterValidator(_argument)]
ToolName = Annotated[str, AfterValidator(_tool)]
TrustedValue = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=_MAX_VALUE)]
TrustedValues = Annotated[list[TrustedValue], Field(max_length=MAX_TRUSTED_VALUES)]


class SinkEntry(YamlModel):
    """``url: {needs: trusted, on_failure: deny, kinds: [url, domain]}``."""

    needs: Need
    on_failure: Outcome = Outcome.DENY
    kinds: Annotated[list[ValueKind], Field(min_length=1)] | None = None

    def requirement(self, argument: str) -> SinkRequirement:
        if self.kinds is None:
            return SinkRequirement(argument, self.needs, self.on_failure)
        return SinkRequirement(argument, self.needs, self.on_failure, frozenset(self.kinds))


class ToolEntry(YamlModel):
    """``web.browse: {trusted: false, sinks: {url: {needs: trusted}}}``."""

    description: str | None = None
    trusted: Flag = False
    sinks: dict[ArgumentName, SinkEntry] | None = None


def rules_of(
    trusted_datasets: frozenset[str],
    tools: Mapping[str, ToolEntry],
    trusted_values: list[str],
) -> ProvenanceRules:
    """The frozen provenance rules of a checked catalog."""
    sinks = {
        name: tuple(sink.requirement(argument) for argument, sink in entry.sinks.items())
        for name, entry in tools.items()
        if entry.sinks
    }
    return ProvenanceRules(
        frozenset(name for name, entry in tools.items() if entry.trusted),
        trusted_datasets,
        tuple(trusted_values),
        MappingProxyType(sinks),
    )
