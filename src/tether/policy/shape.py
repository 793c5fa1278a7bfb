"""The request tether sends Cedar, as a Cedar schema (``tether policy context-schema``).

Nothing here is written by hand: a sample request goes through the engine's own steps (the
facts it reads, :func:`tether.policy.context.build_context` with every attribute, the Cedar
request it sends), and the schema is read off the values they produce. A change to what tether
sends changes this schema with it.

``args`` is the one open part: it carries the call's own arguments, whatever they are, so the
schema leaves it as an empty record type ``Args`` for the operator to fill with the arguments
their policies read, each optional (``amount?: Long``).
"""

from __future__ import annotations

import json
from typing import Any, Final

from tether.core.call import Call
from tether.core.identity import Workload
from tether.core.ids import TaskId
from tether.core.provenance import Need, Outcome, Source, Trust, Violation, Why
from tether.core.provenance_extract import ValueKind
from tether.core.provenance_rules import ArgumentProvenance
from tether.core.scope import ActionKind, Classification
from tether.core.task import Intent
from tether.policy.context import ALL_REFS, CedarJSON, build_context
from tether.policy.engine import _cedar_request as cedar_request  # what decide() sends
from tether.policy.engine import _facts as call_facts  # what decide() reads
from tether.service.ports import PolicyRequest

ARGS_TYPE: Final = "Args"
CONTEXT_TYPE: Final = "CallContext"

#: A request with every part filled (a delegation chain, a data-flow label), so that every
#: attribute shows and every set has an element to read its type from.
SAMPLE_REQUEST: Final = PolicyRequest(
    agent=Workload.from_spiffe_id("spiffe://example.org/agent/sample"),
    call=Call(tool="sample.tool", action=ActionKind.READ, dataset="sample", args={}),
    classification=Classification.INTERNAL,
    intent=Intent(workflow="sample", purpose="sample", on_behalf_of="sample"),
    task_id=TaskId("tsk_" + "0" * 26),
    delegators=("spiffe://example.org/agent/root",),
    dataflow=Classification.CONFIDENTIAL,
    provenance=ArgumentProvenance(
        True,
        (
            Violation(
                "url",
                ValueKind.URL,
                Need.TRUSTED,
                Outcome.APPROVAL_REQUIRED,
                Why.NOT_TRUSTED,
                (Source("sample.fetch", None, Trust.UNTRUSTED),),
            ),
        ),
    ),
)


def sample_context(request: PolicyRequest = SAMPLE_REQUEST) -> dict[str, CedarJSON]:
    """The whole context record the engine builds for ``request`` (every attribute)."""
    return build_context(call_facts(request), request.call.args, ALL_REFS)


def _type_of(value: CedarJSON, path: str) -> dict[str, Any]:
    """Cedar's JSON schema type of one context value."""
    if path == "args":
        return {"type": ARGS_TYPE}
    if isinstance(value, bool):
        return {"type": "Boolean"}
    if isinstance(value, int):
        return {"type": "Long"}
    if isinstance(value, str):
        return {"type": "String"}
    if isinstance(value, list):
        if not value:  # pragma: no cover - SAMPLE_REQUEST fills every set
            raise ValueError(f"{path}: an empty set in the sample; fill it in SAMPLE_REQUEST")
        return {"type": "Set", "element": _type_of(value[0], f"{path}[]")}
    if isinstance(value, dict):
        return {
            "type": "Record",
            "attributes": {
                key: _type_of(item, f"{path}.{key}" if path else key)
                for key, item in sorted(value.items())
            },
        }
    raise ValueError(f"{path}: no Cedar type for {value!r}")  # pragma: no cover


def request_schema_json() -> dict[str, Any]:
    """The schema in Cedar's JSON schema format (empty namespace)."""
    request = cedar_request(SAMPLE_REQUEST, sample_context())
    principal, resource = request["principal"]["type"], request["resource"]["type"]
    return {
        "": {
            "entityTypes": {principal: {}, resource: {}},
            "actions": {
                action.value: {
                    "appliesTo": {
                        "principalTypes": [principal],
                        "resourceTypes": [resource],
                        "context": {"type": CONTEXT_TYPE},
                    }
                }
                for action in ActionKind
            },
            "commonTypes": {
                ARGS_TYPE: {"type": "Record", "attributes": {}},
                CONTEXT_TYPE: _type_of(sample_context(), ""),
            },
        }
    }


def _cedar_type(schema_type: dict[str, Any], indent: int) -> str:
    kind = schema_type["type"]
    if kind == "Set":
        return f"Set<{_cedar_type(schema_type['element'], indent)}>"
    if kind == "Boolean":
        return "Bool"  # the schema syntax's name; the JSON format says Boolean
    if kind != "Record":
        return str(kind)
    attributes = schema_type["attributes"]
    if not attributes:
        return "{}"
    pad = "  " * (indent + 1)
    body = ",\n".join(
        f"{pad}{name}: {_cedar_type(item, indent + 1)}" for name, item in attributes.items()
    )
    return "{\n" + body + "\n" + "  " * indent + "}"


def request_schema_text() -> str:
    """The schema in Cedar's schema syntax, ready to start a ``schema.cedarschema`` from."""
    namespace = request_schema_json()[""]
    principal, resource = namespace["entityTypes"]
    actions = ", ".join(json.dumps(a) for a in namespace["actions"])
    context = _cedar_type(namespace["commonTypes"][CONTEXT_TYPE], 0)
    return (
        "// The request tether sends Cedar for every tool call (tether policy context-schema).\n"
        f"// Declare in {ARGS_TYPE} the call arguments your policies read, each optional\n"
        "// (`amount?: Long`), and test them with `has` before reading them.\n"
        f"entity {principal};\n"
        f"entity {resource};\n\n"
        f"type {ARGS_TYPE} = {{}};\n\n"
        f"type {CONTEXT_TYPE} = {context};\n\n"
        f"action {actions} appliesTo {{\n"
        f"  principal: [{principal}],\n"
        f"  resource: [{resource}],\n"
        f"  context: {CONTEXT_TYPE}\n"
        "};\n"
    )
