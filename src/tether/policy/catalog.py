"""The dataset catalog: which classification each dataset has (``catalog.yaml``).

Format::

    datasets:
      crm:     {classification: confidential}
      payroll: {classification: restricted, description: "salaries"}

Classifications are :class:`tether.core.scope.Classification` values. A dataset that is not
listed has no classification (``None``); what that means for a call is the service's decision.
Trusted sources and sink arguments (``trusted``, ``tools``, ``trusted_values``) are read by
:mod:`tether.policy.provenance`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import yaml

from tether.core.provenance_rules import ProvenanceRules
from tether.core.scope import MAX_DATASET_NAME, Classification, is_valid_name
from tether.policy.provenance import ProvenanceProblem, parse_provenance

_ENTRY_KEYS = frozenset({"classification", "description", "trusted"})
_TOP_KEYS = frozenset({"datasets", "tools", "trusted_values"})


class CatalogProblem(ValueError):
    """The catalog cannot be used; the loader names the file."""


@dataclass(frozen=True, slots=True)
class Catalog:
    datasets: Mapping[str, Classification] = field(default_factory=lambda: MappingProxyType({}))
    provenance: ProvenanceRules = field(default_factory=ProvenanceRules)

    def classification(self, dataset: str) -> Classification | None:
        return self.datasets.get(dataset)


def parse_catalog(text: str) -> Catalog:
    """Parse ``catalog.yaml``; raises :class:`CatalogProblem` saying what is wrong and where."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogProblem(f"not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict) or set(raw) - _TOP_KEYS:
        raise CatalogProblem(f"must be a mapping with keys among {', '.join(sorted(_TOP_KEYS))}")
    datasets = raw.get("datasets") or {}
    if not isinstance(datasets, dict):
        raise CatalogProblem("datasets must map dataset names to {classification: ...}")
    known = ", ".join(c.value for c in Classification)
    out: dict[str, Classification] = {}
    for name, entry in datasets.items():
        if not isinstance(name, str) or not is_valid_name(name, MAX_DATASET_NAME):
            raise CatalogProblem(f"dataset name {name!r} is not a valid name")
        if not isinstance(entry, dict) or "classification" not in entry:
            raise CatalogProblem(f"dataset {name}: give {{classification: one of {known}}}")
        extra = set(entry) - _ENTRY_KEYS
        if extra:
            raise CatalogProblem(f"dataset {name}: unknown keys {sorted(map(str, extra))}")
        try:
            out[name] = Classification(str(entry["classification"]))
        except ValueError:
            raise CatalogProblem(
                f"dataset {name}: classification {entry['classification']!r} is not one of {known}"
            ) from None
    try:
        provenance = parse_provenance(raw)
    except ProvenanceProblem as exc:
        raise CatalogProblem(str(exc)) from None
    return Catalog(MappingProxyType(out), provenance)
