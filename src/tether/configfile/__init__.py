"""Files tether is configured by, checked with every problem placed at ``file:line:col``.

    problems   Problem, ProblemsError, did_you_mean: one shape for every problem in a file
    yamldoc    read_yaml, read_yaml_file: safe, bounded YAML, duplicate keys refused, places kept
    models     YamlModel, validate: typed models whose errors land on the key or value

Used by the policy directory's YAML (catalog, workflows, dataflow, credentials), the egress
proxy's config, ``tether.yaml`` and the policy diagnostics of Cedar files, so all report
problems alike.
"""

from __future__ import annotations

from tether.configfile.models import (
    Below,
    Flag,
    PositiveInt,
    StrictCount,
    Text,
    YamlModel,
    share,
    shared,
    validate,
)
from tether.configfile.problems import MAX_PROBLEMS, Problem, ProblemsError, did_you_mean
from tether.configfile.yamldoc import (
    MAX_YAML_BYTES,
    Place,
    YamlDocument,
    read_yaml,
    read_yaml_file,
    show_path,
)

__all__ = [
    "MAX_PROBLEMS",
    "MAX_YAML_BYTES",
    "Below",
    "Flag",
    "Place",
    "PositiveInt",
    "Problem",
    "ProblemsError",
    "StrictCount",
    "Text",
    "YamlDocument",
    "YamlModel",
    "did_you_mean",
    "read_yaml",
    "read_yaml_file",
    "share",
    "shared",
    "show_path",
    "validate",
]
