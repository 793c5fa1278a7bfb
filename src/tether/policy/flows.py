"""Declared workflows and egress sinks, read from the policy directory.

    workflows.yaml   {workflows: {NAME: {start: [..], steps: {STEP: {uses, next, repeatable,
                     optional, budgets}}, budgets: {..}, anomaly: {percentile, min_history,
                     history}}}} (see :mod:`tether.core.workflow`; ``budgets`` caps the tasks'
                     budgets, a step's ``budgets`` limit each task in that step, ``anomaly`` is
                     :mod:`tether.core.anomaly`)
    dataflow.yaml    {egress_sinks: [TOOL, ..], read_floors: {default: N, tools: {TOOL: N},
                     datasets: {DATASET: N}}}: tools that send data out of the organisation, and
                     the fewest records a read reserves against a records budget

Both are optional. Each is read by :func:`tether.configfile.read_yaml_file` and checked against its
typed models (one per YAML mapping, below); a broken file stops tether from starting with a
``ConfigurationError(POLICY_INVALID)`` that lists every problem at its ``file:line:col``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tether.configfile import (
    Below,
    Flag,
    Problem,
    ProblemsError,
    StrictCount,
    YamlDocument,
    YamlModel,
    did_you_mean,
    read_yaml_file,
    share,
    shared,
    validate,
)
from tether.core.anomaly import (
    DEFAULT_HISTORY,
    DEFAULT_MIN_HISTORY,
    DEFAULT_PERCENTILE,
    MAX_HISTORY,
    AnomalyRule,
)
from tether.core.budget import Budgets, ReadFloors
from tether.core.dataflow import EgressRules
from tether.core.errors import ErrorCode
from tether.core.scope import (
    MAX_DATASET_NAME,
    MAX_TOOL_NAME,
    ActionKind,
    Classification,
    is_valid_name,
)
from tether.core.workflow import Step, Workflow

WORKFLOWS_FILE: Final = "workflows.yaml"
DATAFLOW_FILE: Final = "dataflow.yaml"
FLOW_FILES: Final = (WORKFLOWS_FILE, DATAFLOW_FILE)


def _named(kind: str, longest: int) -> AfterValidator:
    def check(name: str) -> str:
        if not is_valid_name(name, longest):
            raise ValueError(
                f"{name!r} is not a valid {kind} name (letters, digits, '.', '_', '-'; at most "
                f"{longest})"
            )
        return name

    return AfterValidator(check)


ToolName = Annotated[str, _named("tool", MAX_TOOL_NAME)]
DatasetName = Annotated[str, _named("dataset", MAX_DATASET_NAME)]
WorkflowName = Annotated[str, _named("workflow", 128)]
StepName = Annotated[str, _named("step", 64)]
#: A budget amount: a number from 0 to 10^15.
Amount = Annotated[float, Strict(), Field(ge=0, le=1e15, allow_inf_nan=False)]


# -- workflows.yaml ----------------------------------------------------------------------------


class ClassBudgetsModel(YamlModel):
    """``by_classification: {confidential: {records: 100, bytes: 1e6}}``: one entry."""

    records: Amount | None = None
    bytes: Amount | None = None


class BudgetsModel(YamlModel):
    """``budgets: {records, bytes, calls_per_minute, spend, by_classification}``."""

    records: Amount | None = None
    bytes: Amount | None = None
    calls_per_minute: Amount | None = None
    spend: Amount | None = None
    by_classification: dict[Classification, ClassBudgetsModel] | None = None

    def to_budgets(self) -> Budgets:
        """The domain value (:meth:`Budgets.from_json` stays the one reader of budgets)."""
        return Budgets.from_json(self.model_dump(mode="json", exclude_none=True))


class ToolUseModel(YamlModel):
    """``{tool: crm.query, actions: [read]}``: what a step may call."""

    tool: ToolName
    actions: Annotated[list[ActionKind], Field(min_length=1)]


def _known_steps(refs: list[str] | None, info: ValidationInfo) -> list[str] | None:
    """Refuse each reference to a step the workflow does not declare (with the closest)."""
    known = shared(info, "steps")
    if not isinstance(known, list):
        return refs
    bad = []
    for index, ref in enumerate(refs or ()):
        if ref not in known:
            close = did_you_mean(ref, known)
            hint = f"; did you mean {close!r}?" if close else f"; steps: {', '.join(known)}"
            bad.append(((index,), f"no step named {ref!r}{hint}"))
    if bad:
        raise Below(*bad)
    return refs


class StepModel(YamlModel):
    uses: Annotated[list[ToolUseModel], Field(min_length=1)]
    next: Annotated[list[str] | None, AfterValidator(_known_steps)] = None
    repeatable: Flag = False
    optional: Flag = False
    description: str | None = None
    budgets: BudgetsModel | None = None


class AnomalyModel(YamlModel):
    """``anomaly: {percentile, min_history, history}`` (:mod:`tether.core.anomaly`)."""

    percentile: Annotated[float, Strict(), Field(ge=50, le=100)] = DEFAULT_PERCENTILE
    min_history: Annotated[int, Strict(), Field(ge=1, le=MAX_HISTORY)] = DEFAULT_MIN_HISTORY
    history: Annotated[int, Strict(), Field(ge=1, le=MAX_HISTORY)] = DEFAULT_HISTORY

    @model_validator(mode="after")
    def _enough_history(self) -> AnomalyModel:
        if self.history < self.min_history:
            raise Below(
                (
                    ("history",),
                    f"must be at least min_history ({self.min_history}), not {self.history}",
                )
            )
        return self

    def to_rule(self) -> AnomalyRule:
        return AnomalyRule(self.percentile, self.min_history, self.history)


class WorkflowModel(YamlModel):
    steps: Annotated[dict[StepName, StepModel], Field(min_length=1)]
    start: Annotated[list[str], Field(min_length=1), AfterValidator(_known_steps)]
    description: str | None = None
    budgets: BudgetsModel | None = None
    anomaly: AnomalyModel | None = None

    @model_validator(mode="before")
    @classmethod
    def _steps(cls, data: Any, info: ValidationInfo) -> Any:
        # `start` and each step's `next` name steps: checked even when a step is wrong.
        steps = data.get("steps") if isinstance(data, dict) else None
        share(info, "steps", [str(s) for s in steps] if isinstance(steps, dict) else None)
        return data

    @field_validator("anomaly", mode="before")
    @classmethod
    def _defaults(cls, value: object) -> object:
        return {} if value is None else value  # `anomaly:` alone asks for the defaults


class WorkflowsFile(YamlModel):
    """The whole of ``workflows.yaml``."""

    workflows: dict[WorkflowName, WorkflowModel] | None = None


def _workflows(doc: YamlDocument) -> dict[str, Workflow]:
    model = validate(doc, WorkflowsFile, if_empty={})
    return {
        name: Workflow(
            name,
            tuple(body.start),
            {step: _step(step, spec) for step, spec in body.steps.items()},
            body.budgets.to_budgets() if body.budgets else Budgets(),
            body.anomaly.to_rule() if body.anomaly is not None else None,
        )
        for name, body in (model.workflows or {}).items()
    }


def _step(name: str, spec: StepModel) -> Step:
    uses = frozenset((use.tool, action) for use in spec.uses for action in use.actions)
    return Step(
        name,
        uses,
        tuple(spec.next or ()),
        spec.repeatable,
        spec.optional,
        spec.budgets.to_budgets() if spec.budgets else Budgets(),
    )


def parse_workflows(raw: object, *, source: str) -> dict[str, Workflow]:
    """Workflows from data already parsed (``{"workflows": {…}}``); problems name the path."""
    return _workflows(YamlDocument.of(raw, file=source, code=ErrorCode.POLICY_INVALID))


# -- dataflow.yaml -----------------------------------------------------------------------------


class ReadFloorsModel(YamlModel):
    """``read_floors: {default: 100, tools: {TOOL: N}, datasets: {DATASET: N}}``."""

    default: StrictCount = 100
    tools: dict[ToolName, StrictCount] | None = None
    datasets: dict[DatasetName, StrictCount] | None = None

    def to_floors(self) -> ReadFloors:
        return ReadFloors(self.default, dict(self.tools or {}), dict(self.datasets or {}))


class DataflowFile(YamlModel):
    """The whole of ``dataflow.yaml``."""

    egress_sinks: list[ToolName] | None = None
    read_floors: ReadFloorsModel | None = None


# -- reading the files -------------------------------------------------------------------------


def _read(path: Path, file: str | None = None) -> YamlDocument | None:
    """The file as a document (its problems name it ``file``, by default its name), ``None``
    when it does not exist."""
    if not path.exists():
        return None
    return read_yaml_file(path, file=file or path.name, code=ErrorCode.POLICY_INVALID)


def load_workflows(policy_dir: Path) -> dict[str, Workflow]:
    doc = _read(policy_dir / WORKFLOWS_FILE)
    return {} if doc is None else _workflows(doc)


def _dataflow(policy_dir: Path) -> DataflowFile:
    doc = _read(policy_dir / DATAFLOW_FILE)
    return DataflowFile() if doc is None else _dataflow_of(doc)


def _dataflow_of(doc: YamlDocument) -> DataflowFile:
    return validate(doc, DataflowFile, if_empty={})


def load_egress(policy_dir: Path) -> EgressRules:
    """The ``egress_sinks`` of ``dataflow.yaml`` (none without the file)."""
    return EgressRules(frozenset(_dataflow(policy_dir).egress_sinks or ()))


def load_read_floors(policy_dir: Path) -> ReadFloors:
    """The ``read_floors`` of ``dataflow.yaml`` (100 records by default when it names none)."""
    floors = _dataflow(policy_dir).read_floors
    return ReadFloors() if floors is None else floors.to_floors()


def check_flow_file(path: Path) -> list[Problem]:
    """Every problem in the ``workflows.yaml`` or ``dataflow.yaml`` at ``path``, named by
    ``path`` (none when it does not exist; for ``tether policy validate``)."""
    try:
        doc = _read(path, str(path))
        if doc is not None:
            if path.name == WORKFLOWS_FILE:
                _workflows(doc)
            else:
                _dataflow_of(doc)
    except ProblemsError as exc:
        return list(exc.problems)
    return []
