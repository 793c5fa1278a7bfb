"""The operator's provenance rules, and the provenance facts of one call.

:class:`ProvenanceRules` is what the catalog declares (``catalog.yaml``, parsed by
:mod:`tether.policy.provenance`): which tools and datasets are trusted sources (the user's own
account, contacts the user created), literal values the operator trusts (an allow-list), and
per tool, the sink arguments with the provenance they need (:class:`SinkRequirement`) and the
parts of its result trusted on their own (:class:`~tether.core.provenance_parts.TrustedParts`).

:class:`ArgumentProvenance` is what the check found for one call (the violations of its sink
arguments, from :func:`tether.core.provenance.check_arguments`): a fact of the decision
(:class:`tether.core.facts.CallFacts`) and of Cedar's ``context.provenance``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from tether.core.provenance import (
    FingerprintKey,
    Outcome,
    ProvenanceIndex,
    SinkRequirement,
    Source,
    Trust,
    Violation,
    check_chain,
    strictest,
)
from tether.core.provenance_parts import TrustedParts
from tether.core.scope import JSONValue

__all__ = [
    "NO_PROVENANCE",
    "OPERATOR_SOURCE",
    "OVERFLOW_SOURCE",
    "REQUEST_SOURCE",
    "ArgumentProvenance",
    "ProvenanceRules",
    "assess",
    "assess_chain",
]

#: The source of the values of the user's own request (``intent.request`` at task open). Not a
#: tool name a catalog can declare (tool names have no parentheses).
REQUEST_SOURCE = Source("(request)", None, Trust.TRUSTED)
#: The source of the operator's own trusted values (``provenance.trusted_values``).
OPERATOR_SOURCE = Source("(operator)", None, Trust.TRUSTED)
#: Untrusted values a task saw past what it may keep: counted as an unscanned part, so a value
#: seen nowhere fails ``not_only_untrusted`` once anything untrusted was dropped.
OVERFLOW_SOURCE = Source("(overflow)", None, Trust.UNTRUSTED)


@dataclass(frozen=True, slots=True)
class ProvenanceRules:
    """What the catalog says about provenance. Empty: nothing is a sink, nothing is trusted
    but the user's request."""

    trusted_tools: frozenset[str] = frozenset()
    trusted_datasets: frozenset[str] = frozenset()
    #: Literal values the operator trusts, scanned like a request (an allow-list of domains,
    #: the company's own accounts).
    trusted_values: tuple[str, ...] = ()
    sinks: Mapping[str, tuple[SinkRequirement, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    #: Per tool whose result is untrusted: the items of it a trusted author wrote.
    parts: Mapping[str, TrustedParts] = field(default_factory=lambda: MappingProxyType({}))

    def trust_of(self, tool: str, dataset: str | None) -> Trust:
        """A tool result is untrusted unless the catalog marks its tool, or the dataset it
        was read from, trusted."""
        if tool in self.trusted_tools or (dataset is not None and dataset in self.trusted_datasets):
            return Trust.TRUSTED
        return Trust.UNTRUSTED

    def sinks_for(self, tool: str) -> tuple[SinkRequirement, ...]:
        return self.sinks.get(tool, ())

    def parts_for(self, tool: str) -> TrustedParts | None:
        """The trusted parts of ``tool``'s result (``None``: its result has one trust)."""
        return self.parts.get(tool)

    def sources_of(
        self, tool: str, dataset: str | None, result: JSONValue
    ) -> tuple[tuple[Source, JSONValue], ...]:
        """Each source a result of ``tool`` (read from ``dataset``) is recorded under, with
        what of it was seen there: the whole result under one source; for a tool whose
        untrusted result has trusted parts, its untrusted rest first, then those parts."""
        source = Source(tool, dataset, self.trust_of(tool, dataset))
        parts = self.parts.get(tool) if source.trust is Trust.UNTRUSTED else None
        if parts is not None:
            trusted, rest = parts.split(result)
            if trusted:
                return (source, rest), (Source(tool, dataset, Trust.TRUSTED), trusted)
        return ((source, result),)


@dataclass(frozen=True, slots=True)
class ArgumentProvenance:
    """The provenance check of one call's sink arguments: what failed, never a value."""

    #: Whether the call's tool declares sink arguments (so the check ran).
    checked: bool = False
    violations: tuple[Violation, ...] = ()

    @property
    def outcome(self) -> Outcome | None:
        """``deny`` wins over ``approval_required``; ``None`` when nothing failed."""
        return strictest(self.violations)

    @property
    def arguments(self) -> tuple[str, ...]:
        """The arguments holding a value that failed, in order, each once."""
        return tuple(dict.fromkeys(v.argument for v in self.violations))

    @property
    def sources(self) -> tuple[Source, ...]:
        """The sources the failing values were seen in, each once."""
        return tuple(dict.fromkeys(s for v in self.violations for s in v.sources))

    def to_json(self) -> dict[str, JSONValue]:
        return {"checked": self.checked, "violations": [v.to_json() for v in self.violations]}


NO_PROVENANCE = ArgumentProvenance()


def assess(
    args: Mapping[str, JSONValue],
    requirements: tuple[SinkRequirement, ...],
    index: ProvenanceIndex,
    key: bytes | FingerprintKey,
) -> ArgumentProvenance:
    """The provenance facts of a call with ``args`` to a tool whose sinks are
    ``requirements``, against everything its task observed (``index``, which holds the user's
    request and the operator's values as trusted sources), fingerprinted under ``key``."""
    return assess_chain(args, requirements, ((key, index),))


def assess_chain(
    args: Mapping[str, JSONValue],
    requirements: tuple[SinkRequirement, ...],
    observed: Sequence[tuple[bytes | FingerprintKey, ProvenanceIndex]],
) -> ArgumentProvenance:
    """:func:`assess` against what each task of a delegation chain observed, each under its
    own key (:func:`tether.core.provenance.check_chain`)."""
    if not requirements:
        return NO_PROVENANCE
    return ArgumentProvenance(True, tuple(check_chain(args, requirements, observed)))
