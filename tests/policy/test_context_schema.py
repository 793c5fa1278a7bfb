"""`tether policy context-schema`: the schema printed is the context the engine really builds."""

from __future__ import annotations

import json

import cedarpy
from typer.testing import CliRunner

from tether.cli.main import app
from tether.core.call import Call
from tether.core.identity import Workload
from tether.core.ids import TaskId
from tether.core.scope import ActionKind
from tether.core.task import Intent
from tether.policy.bundle import load_schema_text
from tether.policy.context import ALL_REFS, build_context
from tether.policy.diagnostics import Problem
from tether.policy.engine import _facts
from tether.policy.shape import request_schema_json
from tether.service.ports import PolicyRequest

runner = CliRunner()


def printed_schema() -> str:
    result = runner.invoke(app, ["policy", "context-schema"])
    assert result.exit_code == 0, result.output
    return result.output


def real_request() -> PolicyRequest:
    """A root grant that has read nothing classified: the sparest context tether sends."""
    return PolicyRequest(
        agent=Workload.from_spiffe_id("spiffe://tether.local/agent/analyst"),
        call=Call(tool="crm.query", action=ActionKind.SEND, dataset=None, args={}),
        classification=None,
        intent=Intent(workflow="triage", purpose="answer", on_behalf_of="alice"),
        task_id=TaskId("tsk_" + "1" * 26),
    )


def cedar_errors(schema: str, context: dict[str, object]) -> list[str]:
    request = {
        "principal": {"type": "Agent", "id": "a"},
        "action": {"type": "Action", "id": "send"},
        "resource": {"type": "Tool", "id": "t"},
        "context": context,
    }
    return list(cedarpy.is_authorized(request, "", [], schema=schema).diagnostics.errors)


def test_a_context_the_engine_builds_validates_against_the_printed_schema() -> None:
    schema = printed_schema()
    context = build_context(_facts(real_request()), {}, ALL_REFS)
    assert set(context) >= {"intent", "agent", "args", "delegation", "dataflow"}
    assert cedar_errors(schema, context) == []
    # and the check bites: a context of another shape is refused
    assert cedar_errors(schema, {**context, "surprise": "x"})
    assert cedar_errors(schema, {k: v for k, v in context.items() if k != "agent"})


def test_the_printed_schema_fits_what_tether_checks_a_schema_for() -> None:
    problems: list[Problem] = []
    assert load_schema_text(printed_schema(), problems) is not None
    assert problems == []


def test_the_json_form_is_the_same_schema() -> None:
    as_json = runner.invoke(app, ["policy", "context-schema", "--json"])
    assert as_json.exit_code == 0
    assert json.loads(as_json.output) == request_schema_json()
    context = build_context(_facts(real_request()), {}, ALL_REFS)
    assert cedar_errors(json.dumps(request_schema_json()), context) == []
    assert cedar_errors(json.dumps(request_schema_json()), {**context, "surprise": "x"})
