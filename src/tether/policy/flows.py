"""Declared workflows and egress sinks, read from the policy directory.

    workflows.yaml   {workflows: {NAME: {start: [..], steps: {STEP: {uses, next, repeatable,
                     optional, budgets}}, budgets: {..}, anomaly: {percentile, min_history,
                     history}}}} (see :mod:`tether.core.workflow`; ``budgets`` caps the tasks'
                     budgets, a step's ``budgets`` limit each task in that step, ``anomaly`` is
                     :mod:`tether.core.anomaly`)
    dataflow.yaml    {egress_sinks: [TOOL, ..], read_floors: {default: N, tools: {TOOL: N},
                     datasets: {DATASET: N}}}: tools that send data out of the organisation, and
                     the fewest records a read reserves against a records budget

Both are optional. A broken file stops tether from starting, naming the file and the path.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tether.core.budget import ReadFloors
from tether.core.dataflow import EgressRules
from tether.core.errors import ConfigurationError, ErrorCode
from tether.core.scope import is_valid_name
from tether.core.workflow import Workflow, parse_workflows

WORKFLOWS_FILE = "workflows.yaml"
DATAFLOW_FILE = "dataflow.yaml"


def _read(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigurationError(
            f"{path.name}: cannot be read: {error}", code=ErrorCode.POLICY_INVALID
        ) from None


def load_workflows(policy_dir: Path) -> dict[str, Workflow]:
    path = policy_dir / WORKFLOWS_FILE
    if not path.exists():
        return {}
    return parse_workflows(_read(path), source=WORKFLOWS_FILE)


def load_egress(policy_dir: Path) -> EgressRules:
    path = policy_dir / DATAFLOW_FILE
    if not path.exists():
        return EgressRules()
    raw = _dataflow(path)
    sinks = raw.get("egress_sinks") or []
    if not isinstance(sinks, list) or not all(
        isinstance(t, str) and is_valid_name(t, 128) for t in sinks
    ):
        raise ConfigurationError(
            f"{DATAFLOW_FILE}: egress_sinks must be a list of tool names",
            code=ErrorCode.POLICY_INVALID,
        )
    return EgressRules(frozenset(sinks))


def _dataflow(path: Path) -> dict[str, object]:
    raw = _read(path)
    if not isinstance(raw, dict) or set(raw) - {"egress_sinks", "read_floors"}:
        raise ConfigurationError(
            f"{DATAFLOW_FILE}: must be a mapping with the keys 'egress_sinks' and 'read_floors'",
            code=ErrorCode.POLICY_INVALID,
        )
    return raw


def load_read_floors(policy_dir: Path) -> ReadFloors:
    """The ``read_floors`` of ``dataflow.yaml`` (100 records by default when it names none)."""
    path = policy_dir / DATAFLOW_FILE
    raw = _dataflow(path).get("read_floors") if path.exists() else None
    if raw is None:
        return ReadFloors()

    def bad(where: str) -> ConfigurationError:
        return ConfigurationError(
            f"{DATAFLOW_FILE}: read_floors.{where} must be a whole number of records ≥ 0",
            code=ErrorCode.POLICY_INVALID,
        )

    def count(value: object, where: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise bad(where)
        return value

    if not isinstance(raw, dict) or set(raw) - {"default", "tools", "datasets"}:
        raise ConfigurationError(
            f"{DATAFLOW_FILE}: read_floors must be a mapping of default, tools and datasets",
            code=ErrorCode.POLICY_INVALID,
        )
    named: dict[str, dict[str, int]] = {}
    for kind in ("tools", "datasets"):
        entries = raw.get(kind) or {}
        if not isinstance(entries, dict) or not all(
            isinstance(k, str) and is_valid_name(k, 128) for k in entries
        ):
            raise ConfigurationError(
                f"{DATAFLOW_FILE}: read_floors.{kind} must map names to record counts",
                code=ErrorCode.POLICY_INVALID,
            )
        named[kind] = {k: count(v, f"{kind}.{k}") for k, v in entries.items()}
    return ReadFloors(
        default=count(raw.get("default", 100), "default"),
        tools=named["tools"],
        datasets=named["datasets"],
    )
