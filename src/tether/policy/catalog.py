"""The dataset catalog: which classification each dataset has (``catalog.yaml``).

Format::

    datasets:
      crm:     {classification: confidential}
      payroll: {classification: restricted, description: "salaries"}

Classifications are :class:`tether.core.scope.Classification` values. A dataset that is not
listed has no classification (``None``); what that means for a call is the service's decision.

Trusted sources and sink arguments (``trusted``, ``tools``, ``trusted_values``,
``trusted_authors``) are modelled in :mod:`tether.policy.provenance`.

The file is read by :func:`tether.configfile.read_yaml` and checked against :class:`CatalogFile`
(one typed model per YAML mapping): every problem is reported at once, at its ``file:line:col``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Annotated, Final

from pydantic import AfterValidator, ValidationInfo, model_validator

from tether.configfile import ProblemsError, YamlModel, read_yaml, validate
from tether.configfile.models import Flag, share
from tether.core.errors import ErrorCode
from tether.core.provenance_rules import ProvenanceRules
from tether.core.scope import MAX_DATASET_NAME, Classification, is_valid_name
from tether.policy.provenance import (
    AUTHOR_LISTS,
    AuthorLists,
    ToolEntry,
    ToolName,
    TrustedValues,
    rules_of,
)

CATALOG_FILE: Final = "catalog.yaml"


class CatalogProblem(ProblemsError):
    """The catalog cannot be used; ``problems`` places each problem in the file."""

    default_code = ErrorCode.POLICY_INVALID


@dataclass(frozen=True, slots=True)
class Catalog:
    datasets: Mapping[str, Classification] = field(default_factory=lambda: MappingProxyType({}))
    provenance: ProvenanceRules = field(default_factory=ProvenanceRules)

    def classification(self, dataset: str) -> Classification | None:
        return self.datasets.get(dataset)


def _dataset_name(name: str) -> str:
    if not is_valid_name(name, MAX_DATASET_NAME):
        raise ValueError(
            f"{name!r} is not a valid dataset name (letters, digits, '.', '_', '-'; at most "
            f"{MAX_DATASET_NAME})"
        )
    return name


DatasetName = Annotated[str, AfterValidator(_dataset_name)]


class DatasetEntry(YamlModel):
    """``crm: {classification: confidential, description: …}``."""

    classification: Classification
    description: str | None = None
    #: Results read from this dataset are the user's own records (a trusted source).
    trusted: Flag = False


class CatalogFile(YamlModel):
    """The whole of ``catalog.yaml``."""

    datasets: dict[DatasetName, DatasetEntry] | None = None
    tools: dict[ToolName, ToolEntry] | None = None
    trusted_values: TrustedValues | None = None
    trusted_authors: AuthorLists | None = None

    @model_validator(mode="before")
    @classmethod
    def _author_lists(cls, data: object, info: ValidationInfo) -> object:
        # The tools' parts name lists of trusted authors: checked even when a list is wrong.
        if isinstance(data, dict):
            lists = data.get("trusted_authors")
            if lists is None or isinstance(lists, dict):
                share(info, AUTHOR_LISTS, [str(n) for n in lists or {}])
        return data

    def to_catalog(self) -> Catalog:
        entries = self.datasets or {}
        trusted = frozenset(name for name, entry in entries.items() if entry.trusted)
        return Catalog(
            MappingProxyType({n: e.classification for n, e in entries.items()}),
            rules_of(trusted, self.tools or {}, self.trusted_values or [], self.trusted_authors),
        )


def parse_catalog(text: str | bytes, *, file: str = CATALOG_FILE) -> Catalog:
    """Parse ``catalog.yaml``; raises :class:`CatalogProblem` listing every problem."""
    doc = read_yaml(text, file=file, code=ErrorCode.POLICY_INVALID, error=CatalogProblem)
    return validate(doc, CatalogFile, if_empty={}).to_catalog()
