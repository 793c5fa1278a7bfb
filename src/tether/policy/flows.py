"""Declared workflows and egress sinks, read from the policy directory.

    workflows.yaml   {workflows: {NAME: {start: [..], steps: {STEP: {uses, next, repeatable,
                     optional, budgets}}, budgets: {..}, anomaly: {percentile, min_history,
                     history}}}} (see :mod:`tether.core.workflow`; ``budgets`` caps the tasks'
                     budgets, a step's ``budgets`` limit each task in that step, ``anomaly`` is
                     :mod:`tether.core.anomaly`)
    dataflow.yaml    {egress_sinks: [TOOL, ..]}: tools that send data out of the organisation

Both are optional. A broken file stops tether from starting, naming the file and the path.
"""

from __future__ import annotations

from pathlib import Path

import yaml

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
    raw = _read(path)
    if not isinstance(raw, dict) or set(raw) - {"egress_sinks"}:
        raise ConfigurationError(
            f"{DATAFLOW_FILE}: must be a mapping with one key, 'egress_sinks'",
            code=ErrorCode.POLICY_INVALID,
        )
    sinks = raw.get("egress_sinks") or []
    if not isinstance(sinks, list) or not all(
        isinstance(t, str) and is_valid_name(t, 128) for t in sinks
    ):
        raise ConfigurationError(
            f"{DATAFLOW_FILE}: egress_sinks must be a list of tool names",
            code=ErrorCode.POLICY_INVALID,
        )
    return EgressRules(frozenset(sinks))
