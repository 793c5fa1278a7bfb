"""Loading a policy directory into an immutable, validated :class:`PolicyBundle`.

A policy directory holds, at its top level:

    *.cedar             Cedar policies (templates are not supported)
    *.observe.cedar     Cedar policies in observe mode: evaluated and audited, never enforced
                        (see ``@mode`` in :mod:`tether.policy.meta`)
    schema.cedarschema  the Cedar schema (Cedar schema syntax) every policy is validated against
    catalog.yaml        dataset classifications (see :mod:`tether.policy.catalog`)

Other files and subdirectories (``tests/`` holds policy test cases) are ignored. Loading parses
every file, checks the schema fits the request tether sends (entity types ``Agent`` and ``Tool``,
the six action kinds with the ``CallContext`` record, no action groups), validates every policy
against the schema (Cedar's strict validation), reads tether's annotations
(:mod:`tether.policy.meta`) and refuses duplicate policy ids. Every problem found is reported at
once in one ``ConfigurationError(code=POLICY_INVALID)`` whose lines name the file, the policy and
Cedar's own error.

The bundle's ``revision`` is ``sha256`` over the sorted file names and their contents, so two
replicas loading the same files agree on it and a decision log names exactly what decided.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import cedarpy

from tether.core.errors import ConfigurationError, ErrorCode
from tether.core.scope import ActionKind
from tether.policy.catalog import CATALOG_FILE, Catalog, CatalogProblem, parse_catalog
from tether.policy.context import ALL_REFS, CallFacts, build_context
from tether.policy.diagnostics import (
    PolicyInvalid,
    Problem,
    parse_problems,
    policy_problem,
    schema_problem,
    undeclared_has,
    validation_problems,
)
from tether.policy.flows import FLOW_FILES, check_flow_file
from tether.policy.meta import PolicyMeta, PolicyProblem, build_meta
from tether.policy.schema_view import SchemaNames
from tether.policy.syntax import Statement, split_statements

SCHEMA_FILE: Final = "schema.cedarschema"
POLICY_SUFFIX: Final = ".cedar"
OBSERVE_SUFFIX: Final = ".observe.cedar"
_ACTION_GROUP: Final = re.compile(r"^\s*action\s.*\bin\s*\[", re.MULTILINE)
_STEM_OK: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

#: The context the engine builds with every attribute (:mod:`tether.policy.context`). A schema
#: may leave ``delegation``, ``dataflow`` and ``provenance`` out (policies then cannot read
#: them), or declare them, optional or not (the engine sends each one whenever a policy reads
#: it).
_FULL_CONTEXT: Final = build_context(
    CallFacts("w", "p", "o", "t", "a", "d", "n", "", "", ("spiffe://d/root",), ""), {}, ALL_REFS
)
#: The parts of the context a schema may leave out: every combination is probed, most left
#: out first.
_OPTIONAL: Final = ("delegation", "dataflow", "provenance")
_PROBE_CONTEXTS: Final = tuple(
    {k: v for k, v in _FULL_CONTEXT.items() if k not in left_out}
    for size in range(len(_OPTIONAL), -1, -1)
    for left_out in itertools.combinations(_OPTIONAL, size)
)


def is_policy_source(name: str) -> bool:
    """True for the file names a policy directory's bundle is made of."""
    return name.endswith(POLICY_SUFFIX) or name in (SCHEMA_FILE, CATALOG_FILE)


@dataclass(frozen=True, slots=True)
class PolicyBundle:
    """A validated policy set with its schema and catalog. Never changes once built."""

    origin: str
    revision: str
    policies: tuple[PolicyMeta, ...]
    schema: Any  # cedarpy.Schema handle
    catalog: Catalog
    files: tuple[str, ...]

    def policy(self, policy_id: str) -> PolicyMeta | None:
        for meta in self.policies:
            if meta.policy_id == policy_id:
                return meta
        return None


def revision_of(sources: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(sources):
        data = sources[name].encode("utf-8")
        digest.update(name.encode("utf-8") + b"\0" + str(len(data)).encode("ascii") + b"\0")
        digest.update(data)
    return digest.hexdigest()


def read_policy_dir(policy_dir: Path) -> dict[str, str]:
    """Read the bundle's files from ``policy_dir`` (top level only)."""
    if not policy_dir.is_dir():
        raise ConfigurationError(
            f"policy directory {policy_dir} does not exist or is not a directory",
            code=ErrorCode.POLICY_INVALID,
        )
    sources: dict[str, str] = {}
    for path in sorted(policy_dir.iterdir()):
        if not path.is_file() or not is_policy_source(path.name):
            continue
        try:
            sources[path.name] = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigurationError(
                f"{path}: not UTF-8 text", code=ErrorCode.POLICY_INVALID
            ) from None
        except OSError as exc:
            raise ConfigurationError(
                f"{path}: cannot be read ({exc.strerror})", code=ErrorCode.POLICY_INVALID
            ) from None
    return sources


def load_policy_dir(policy_dir: Path) -> PolicyBundle:
    """Read and validate ``policy_dir``; raises ``ConfigurationError(POLICY_INVALID)``."""
    return load_sources(read_policy_dir(policy_dir), origin=str(policy_dir))


def load_sources(sources: Mapping[str, str], *, origin: str) -> PolicyBundle:
    """Validate a bundle given as ``{file name: text}``; raises :class:`PolicyInvalid` (a
    ``ConfigurationError(POLICY_INVALID)``) listing every problem as ``file:line:col: …``."""
    problems: list[Problem] = []
    schema = _load_schema(sources, problems)
    catalog = _load_catalog(sources, problems)
    policies = check_policy_files(sources, schema, problems)
    if problems:
        raise PolicyInvalid(origin, problems)
    assert catalog is not None and schema is not None  # no problems means both loaded
    return PolicyBundle(
        origin=origin,
        revision=revision_of(sources),
        policies=tuple(policies),
        schema=schema,
        catalog=catalog,
        files=tuple(sorted(sources)),
    )


def check_policy_files(
    sources: Mapping[str, str], schema: Any, problems: list[Problem]
) -> list[PolicyMeta]:
    """Read every ``*.cedar`` of ``sources`` (validated against ``schema`` unless it is
    ``None``), adding what is wrong to ``problems``; duplicate ids are refused across files."""
    names = SchemaNames.of(schema)
    policies: list[PolicyMeta] = []
    for name in sorted(n for n in sources if n.endswith(POLICY_SUFFIX)):
        policies.extend(
            _load_policy_file(name, sources[name], schema, names, len(policies), problems)
        )
    seen: dict[str, PolicyMeta] = {}
    for meta in policies:
        first = seen.setdefault(meta.policy_id, meta)
        if first is not meta:
            problems.append(
                Problem(
                    meta.file,
                    f"duplicate policy id {meta.policy_id!r}, already used at {first.where}",
                    meta.line,
                    1 if meta.line is not None else None,
                )
            )
    return policies


def load_schema_text(text: str | None, problems: list[Problem]) -> Any:
    """Parse a schema and check it fits the request tether sends; ``None`` if it does not."""
    return _load_schema({SCHEMA_FILE: text} if text is not None else {}, problems)


def _load_schema(sources: Mapping[str, str], problems: list[Problem]) -> Any:
    text = sources.get(SCHEMA_FILE)
    if text is None:
        problems.append(Problem(SCHEMA_FILE, "missing; every policy set needs a Cedar schema"))
        return None
    try:
        schema = cedarpy.Schema.from_str(text)
    except ValueError as exc:
        problems.append(schema_problem(SCHEMA_FILE, text, str(exc)))
        return None
    if _ACTION_GROUP.search(str(schema)):
        problems.append(
            Problem(
                SCHEMA_FILE,
                "declares an action group (action … in [...]); tether evaluates "
                "without the action hierarchy, so list actions in policies instead",
            )
        )
        return None
    empty = cedarpy.PolicySet.from_str("")
    for action in ActionKind:
        errors: list[str] = []
        for context in _PROBE_CONTEXTS:
            probe = {
                "principal": {"type": "Agent", "id": "probe"},
                "action": {"type": "Action", "id": action.value},
                "resource": {"type": "Tool", "id": "probe"},
                "context": context,
            }
            found = cedarpy.is_authorized(probe, empty, [], schema=schema).diagnostics.errors
            if not found:
                errors = []
                break
            # Report the attempt that got past the optional parts, if one did.
            if not errors or any(part in errors[0] for part in _OPTIONAL):
                errors = found
        if errors:
            problems.append(
                Problem(
                    SCHEMA_FILE,
                    f"does not fit the request tether sends for action {action.value} (Agent, "
                    f"Tool and CallContext with optional args; see tether policy "
                    f"context-schema): {errors[0]}",
                )
            )
            return None
    return schema


def _load_catalog(sources: Mapping[str, str], problems: list[Problem]) -> Catalog | None:
    text = sources.get(CATALOG_FILE)
    if text is None:
        problems.append(Problem(CATALOG_FILE, "missing; list datasets (it may be `datasets: {}`)"))
        return None
    try:
        return parse_catalog(text)
    except CatalogProblem as exc:
        problems.extend(exc.problems)
        return None


def _load_policy_file(
    name: str,
    text: str,
    schema: Any,
    names: SchemaNames,
    order: int,
    problems: list[Problem],
) -> list[PolicyMeta]:
    observe_file = name.endswith(OBSERVE_SUFFIX)
    # An observe file's default ids are those the same file would have once enforced.
    stem = name[: -len(OBSERVE_SUFFIX if observe_file else POLICY_SUFFIX)]
    try:
        doc = json.loads(cedarpy.policies_to_json_str(text))
    except ValueError as exc:
        problems.extend(parse_problems(name, text, str(exc)))
        return []
    statements = split_statements(text)
    if doc.get("templates"):
        problems.append(
            policy_problem(
                name,
                text,
                Statement(1, text, 0),
                "contains a template (?principal/?resource); not supported",
                "?",
            )
        )
        return []
    static: dict[str, Any] = doc.get("staticPolicies", {})
    # Cedar numbers the policies of one parse policy0, policy1, … in source order.
    ordered = sorted(static.items(), key=lambda kv: int(kv[0].removeprefix("policy")))
    if len(statements) != len(ordered):  # pragma: no cover - the split follows Cedar's grammar
        statements = []
    metas: list[PolicyMeta] = []
    by_cedar_id: dict[str, int] = {}
    labels: list[str] = []
    unknown_actions: set[int] = set()  # policies whose unknown action tether reported
    built: dict[int, tuple[PolicyMeta, Any]] = {}
    for index, (cedar_id, est) in enumerate(ordered):
        by_cedar_id[cedar_id] = index
        statement = statements[index] if statements else None
        annotated = (est.get("annotations") or {}).get("id")
        labels.append(annotated if isinstance(annotated, str) and annotated else f"#{index}")
        if "id" not in (est.get("annotations") or {}) and not _STEM_OK.match(stem):
            problems.append(
                policy_problem(
                    name,
                    text,
                    statement,
                    f"policy #{index}: give it an @id, or rename the file to letters, "
                    "digits and ._- (its id would come from the file name)",
                    None,
                )
            )
            continue
        try:
            meta = build_meta(
                est,
                file=name,
                stem=stem,
                index=index,
                order=order + len(metas),
                line=statement.line if statement is not None else None,
                observe_file=observe_file,
            )
        except PolicyProblem as exc:
            problem = policy_problem(
                name, text, statement, f"{exc} (policy {labels[index]})", exc.near
            )
            if exc.action is not None:
                unknown_actions.add(index)
            problems.append(problem)
            continue
        metas.append(meta)
        built[index] = (meta, est)
    if schema is not None and ordered:
        result = cedarpy.validate_policies(text, schema)
        errors = [(by_cedar_id.get(err.policy_id), err.error) for err in result.errors]
        problems.extend(
            validation_problems(name, text, statements, errors, names, labels, unknown_actions)
        )
        for index, (meta, est) in built.items():
            if statements:
                reported = " ".join(m for i, m in errors if i == index)
                problems.extend(
                    undeclared_has(
                        (name, text, statements[index]),
                        est.get("conditions"),
                        sorted(a.value for a in meta.actions),
                        names,
                        labels[index],
                        reported,
                    )
                )
    return metas


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What ``tether policy validate`` found: every problem, or the policies that are valid."""

    problems: tuple[Problem, ...]
    policies: tuple[PolicyMeta, ...] = ()
    revision: str | None = None


def check_path(path: Path) -> CheckReport:
    """Validate a policy directory (with its ``workflows.yaml`` and ``dataflow.yaml``), or one
    file of one: a ``*.cedar`` file (against the schema beside it), the schema, the catalog or a
    flow file. Problems name files as ``path`` does."""
    if path.is_dir():
        flows = [p for name in FLOW_FILES for p in check_flow_file(path / name)]
        try:
            bundle = load_policy_dir(path)
        except PolicyInvalid as exc:
            found = [replace(p, file=str(path / p.file)) for p in exc.problems]
            return CheckReport((*found, *flows))
        if flows:
            return CheckReport(tuple(flows))
        return CheckReport((), bundle.policies, bundle.revision)
    if path.name in FLOW_FILES:
        return CheckReport(tuple(check_flow_file(path)))
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return CheckReport((Problem(str(path), f"cannot be read as UTF-8 text ({exc})"),))
    problems: list[Problem] = []
    policies: list[PolicyMeta] = []
    if path.name == SCHEMA_FILE:
        load_schema_text(text, problems)
    elif path.name == CATALOG_FILE:
        _load_catalog({CATALOG_FILE: text}, problems)
    elif path.name.endswith(POLICY_SUFFIX):
        schema_path = path.parent / SCHEMA_FILE
        schema_text = schema_path.read_text(encoding="utf-8") if schema_path.is_file() else None
        schema = load_schema_text(schema_text, problems)
        if schema is None:
            problems.append(
                Problem(path.name, f"cannot be validated without a valid {SCHEMA_FILE} beside it")
            )
        policies = check_policy_files({path.name: text}, schema, problems)
    else:
        problems.append(
            Problem(
                path.name,
                f"not a policy file (*.cedar, {SCHEMA_FILE}, {CATALOG_FILE}, "
                f"{' or '.join(FLOW_FILES)})",
            )
        )
    placed = tuple(replace(p, file=str(path.parent / p.file)) for p in problems)
    return CheckReport(placed, tuple(policies) if not placed else ())
