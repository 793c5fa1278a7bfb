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
    trusted_authors:                                         # lists the operator keeps
      members: [alice, bob]
    tools:
      chat.read:
        parts: {items: messages, author: sender, trusted_authors: members}

A tool result is untrusted unless its tool or the dataset it was read from is marked
``trusted``. ``needs`` is ``trusted`` (every value found in the argument was seen in the user's
request or a trusted source) or ``not_only_untrusted`` (no value was seen only in untrusted
results); ``on_failure`` is ``deny`` or ``approval_required``; ``kinds`` narrows which kinds of
value are checked (default: every kind but ``text``; see :mod:`tether.core.provenance_extract`).
An argument is named as the call sends it, nested ones with dots (``event.title``).

``parts`` gives the items of an untrusted tool's structured result their own trust
(:class:`~tether.core.provenance_parts.TrustedParts`): each item of the list at ``items`` (a
key path; absent: the result is the list) whose ``author`` field (a key path in the item) holds
a name on the ``trusted_authors`` list it names is a trusted part; the rest of the result stays
untrusted. A list of ``trusted_authors`` is the operator's (the workspace's members as they
are set up), never a value read from a result.

These are the typed models of those mappings (read with the rest of the catalog by
:mod:`tether.policy.catalog`, every problem at its ``file:line:col``) and the step from them to
the frozen :class:`~tether.core.provenance_rules.ProvenanceRules` the decision uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Annotated, Final

from pydantic import (
    AfterValidator,
    Field,
    Strict,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tether.configfile import YamlModel
from tether.configfile.models import Below, Flag, shared
from tether.configfile.problems import did_you_mean
from tether.core.provenance import Need, Outcome, SinkRequirement
from tether.core.provenance_extract import ValueKind
from tether.core.provenance_parts import TrustedParts
from tether.core.provenance_rules import ProvenanceRules
from tether.core.scope import is_valid_name

__all__ = [
    "AUTHOR_LISTS",
    "MAX_TRUSTED_VALUES",
    "AuthorLists",
    "PartsEntry",
    "SinkEntry",
    "ToolEntry",
    "ToolName",
    "TrustedValues",
    "rules_of",
]

MAX_TRUSTED_VALUES: Final = 1000
_MAX_VALUE: Final = 1024
_MAX_TOOL_NAME: Final = 128


#: The key under which the catalog's lists of trusted authors' names are shared with the tools.
AUTHOR_LISTS: Final = "trusted author lists"
_MAX_LISTS: Final = 64


def _dotted(what: str, example: str) -> Callable[[str], str]:
    """A validator of a dotted path of names (``event.title``): none of its names empty."""

    def check(path: str) -> str:
        if not path or not all(path.split(".")):
            raise ValueError(f"{path!r} is not {what} ({example})")
        return path

    return check


def _named(what: str) -> Callable[[str], str]:
    """A validator of a name of letters, digits, '.', '_' and '-'."""

    def check(name: str) -> str:
        if not is_valid_name(name, _MAX_TOOL_NAME):
            raise ValueError(f"{name!r} is not a valid {what}")
        return name

    return check


_argument = _dotted("an argument name", "'to', or 'event.title'")
_key_path = _dotted("a key path", "'sender', or 'meta.owner'")
_tool = _named("tool name")
_list_name = _named("list name")


ArgumentName = Annotated[str, AfterValidator(_argument)]
ToolName = Annotated[str, AfterValidator(_tool)]
TrustedValue = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=_MAX_VALUE)]
TrustedValues = Annotated[list[TrustedValue], Field(max_length=MAX_TRUSTED_VALUES)]
KeyPath = Annotated[str, Strict(), AfterValidator(_key_path)]
ListName = Annotated[str, Strict(), AfterValidator(_list_name)]
AuthorLists = Annotated[
    dict[
        ListName, Annotated[list[TrustedValue], Field(min_length=1, max_length=MAX_TRUSTED_VALUES)]
    ],
    Field(max_length=_MAX_LISTS),
]


class SinkEntry(YamlModel):
    """``url: {needs: trusted, on_failure: deny, kinds: [url, domain]}``."""

    needs: Need
    on_failure: Outcome = Outcome.DENY
    kinds: Annotated[list[ValueKind], Field(min_length=1)] | None = None

    def requirement(self, argument: str) -> SinkRequirement:
        if self.kinds is None:
            return SinkRequirement(argument, self.needs, self.on_failure)
        return SinkRequirement(argument, self.needs, self.on_failure, frozenset(self.kinds))


class PartsEntry(YamlModel):
    """``parts: {items: messages, author: sender, trusted_authors: members}``."""

    items: KeyPath | None = None
    author: KeyPath
    trusted_authors: ListName

    @field_validator("trusted_authors")
    @classmethod
    def _declared(cls, name: str, info: ValidationInfo) -> str:
        known = shared(info, AUTHOR_LISTS)
        if isinstance(known, list) and name not in known:
            close = did_you_mean(name, known)
            hint = (
                f"; did you mean {close!r}?"
                if close
                else f" (declared: {', '.join(known)})"
                if known
                else " (declare it under the catalog's trusted_authors)"
            )
            raise ValueError(f"no list of trusted authors named {name!r}{hint}")
        return name

    def parts(self, lists: Mapping[str, list[str]]) -> TrustedParts:
        items = tuple(self.items.split(".")) if self.items is not None else ()
        return TrustedParts(
            tuple(self.author.split(".")), frozenset(lists[self.trusted_authors]), items
        )


class ToolEntry(YamlModel):
    """``web.browse: {trusted: false, sinks: {url: {needs: trusted}}}``."""

    description: str | None = None
    trusted: Flag = False
    sinks: dict[ArgumentName, SinkEntry] | None = None
    parts: PartsEntry | None = None

    @model_validator(mode="after")
    def _parts_of_an_untrusted_tool(self) -> ToolEntry:
        if self.trusted and self.parts is not None:
            raise Below(
                (("parts",), "a trusted tool's result is trusted whole: drop 'parts' or 'trusted'")
            )
        return self


def rules_of(
    trusted_datasets: frozenset[str],
    tools: Mapping[str, ToolEntry],
    trusted_values: list[str],
    trusted_authors: Mapping[str, list[str]] | None = None,
) -> ProvenanceRules:
    """The frozen provenance rules of a checked catalog (whose tools' ``parts`` name lists of
    ``trusted_authors``)."""
    lists = trusted_authors or {}
    parts = {
        name: entry.parts.parts(lists) for name, entry in tools.items() if entry.parts is not None
    }
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
        MappingProxyType(parts),
    )
