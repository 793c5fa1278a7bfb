"""A Cedar permit policy generated from the privilege an agent actually used.

The text fits the request tether sends Cedar (``src/tether/examples/policies/schema.cedarschema``):
principal ``Agent::"<workload id>"``, action ``Action::"<kind>"``, resource ``Tool::"<tool>"``,
and a context with ``intent.workflow`` and ``dataset`` (``""`` when the call names none).

One ``permit`` per used ``(tool, dataset)``, listing the actions used on it, so the policy set
permits exactly the used triples for that agent in that workflow and nothing else. Argument
constraints are not repeated here: they stay in the proposed grant, which tether checks before
Cedar runs. Each policy carries an ``@id`` tether's loader accepts and ``@risk("ASI03")``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

from tether.core.scope import ActionKind
from tether.reports.privileges import PrivilegeGroup, Triple

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._:/@-]+")


def cedar_string(value: str) -> str:
    """``value`` as a Cedar string literal (quotes, backslashes and controls escaped)."""
    out = ['"']
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _comment(value: str) -> str:
    return " ".join(value.split())


def policy_id_prefix(agent: str, workflow: str) -> str:
    """A stable policy-id prefix: ``least-privilege.<agent name>.<workflow>``, id-safe."""
    name = agent.rstrip("/").rsplit("/", 1)[-1] or "agent"
    raw = f"least-privilege.{name}.{workflow}"
    return _ID_UNSAFE.sub("-", raw)[:110]


def permit_policies(agent: str, workflow: str, used: Iterable[Triple]) -> str:
    """Cedar text permitting exactly ``used`` for ``agent`` in ``workflow`` (empty: a comment)."""
    by_target: dict[tuple[str, str | None], set[ActionKind]] = defaultdict(set)
    for triple in used:
        by_target[(triple.tool, triple.dataset)].add(triple.action)
    header = (
        f"// Proposed by `tether report privileges` for {_comment(agent)} in workflow "
        f"{_comment(workflow)}:\n// it permits exactly the (tool, action, dataset) triples "
        "that were used.\n"
    )
    if not by_target:
        return header + "// Nothing was used: no permit and no grant are proposed for this group.\n"
    prefix = policy_id_prefix(agent, workflow)
    blocks: list[str] = []
    targets = sorted(by_target, key=lambda k: (k[0], k[1] or ""))
    for number, (tool, dataset) in enumerate(targets, start=1):
        actions = sorted(by_target[(tool, dataset)], key=lambda a: a.value)
        if len(actions) == 1:
            action = f'action == Action::"{actions[0].value}"'
        else:
            action = "action in [" + ", ".join(f'Action::"{a.value}"' for a in actions) + "]"
        blocks.append(
            f'@id("{prefix}.{number}")\n'
            '@risk("ASI03")\n'
            "permit (\n"
            f"  principal == Agent::{cedar_string(agent)},\n"
            f"  {action},\n"
            f"  resource == Tool::{cedar_string(tool)}\n"
            ")\n"
            "when {\n"
            f"  context.intent.workflow == {cedar_string(workflow)} &&\n"
            f"  context.dataset == {cedar_string(dataset or '')}\n"
            "};\n"
        )
    return header + "\n".join(blocks)


def proposed_policy(group: PrivilegeGroup) -> str:
    """The Cedar permits for what ``group`` used within its grants."""
    return permit_policies(group.agent, group.workflow, group.used_granted)
