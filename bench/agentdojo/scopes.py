"""The operator's side of a task: which tether scopes the agent application asks for.

``scopes.yaml`` maps every AgentDojo tool to a tether call (``<suite>.<tool>``, action, dataset)
and says which tools a task is granted from the user's request text alone. This module reads it
and turns one request into the ``scopes`` of ``POST /v1/tasks``. It never sees tool outputs nor
which calls came from an injection.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCOPES_FILE = Path(__file__).with_name("scopes.yaml")

EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# A host in lower case (so "www.our-company.com.They" ends at ".com"), then an optional path.
URL_RE = re.compile(r"(?:https?://)?www\.[a-z0-9-]+(?:\.[a-z0-9-]+)+(?:/[^\s'\"<>]*)?")


@dataclass(frozen=True)
class ToolMap:
    """How tether sees one AgentDojo tool."""

    tool: str
    action: str
    dataset: str | None


@dataclass(frozen=True)
class Capability:
    name: str
    when: tuple[re.Pattern[str], ...]
    tools: tuple[str, ...]
    constraints: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def wanted(self, request: str) -> bool:
        return any(pattern.search(request) for pattern in self.when)


@dataclass(frozen=True)
class SuitePlan:
    """One suite's operator configuration."""

    suite: str
    agent: str
    tools: Mapping[str, ToolMap]
    always: tuple[str, ...]
    capabilities: tuple[Capability, ...]

    def call(self, function: str) -> ToolMap:
        """The tether call for an AgentDojo tool; an unmapped tool is a ``write`` (fail safe)."""
        return self.tools.get(function, ToolMap(f"{self.suite}.{function}", "write", None))

    def capabilities_for(self, request: str) -> list[Capability]:
        return [c for c in self.capabilities if c.wanted(request)]

    def scopes(self, request: str, environment: Any) -> list[dict[str, Any]]:
        """The scopes a task with this request asks for, values drawn from ``environment``."""
        wanted: dict[str, dict[str, Any]] = {name: {} for name in self.always}
        for capability in self.capabilities_for(request):
            for name in capability.tools:
                wanted.setdefault(name, {})
                for arg, raw in capability.constraints.get(name, {}).items():
                    wanted[name][arg] = _constraint(raw, request, environment)
        scopes: list[dict[str, Any]] = []
        for name, constraints in wanted.items():
            mapped = self.tools[name]
            scope: dict[str, Any] = {"tool": mapped.tool, "actions": [mapped.action]}
            if mapped.dataset:
                scope["datasets"] = [mapped.dataset]
            if constraints:
                scope["constraints"] = constraints
            scopes.append(scope)
        return scopes


def _constraint(raw: Mapping[str, Any], request: str, environment: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "one_of" and isinstance(value, Mapping):
            names = value.get("from", [])
            out[key] = sorted(_values(names, request, environment))
        else:
            out[key] = value
    return out


def _values(sources: Iterable[str], request: str, environment: Any) -> set[str]:
    values: set[str] = set()
    for source in sources:
        values |= SOURCES[source](request, environment)
    return values


# -- value sources: the environment's own data and the request text ----------------------------


def _contacts(request: str, env: Any) -> set[str]:
    """The user's address book."""
    return {str(c.email) for c in env.inbox.contact_list}


def _calendar_people(request: str, env: Any) -> set[str]:
    """Everyone on the user's calendar."""
    return {str(p) for event in env.calendar.events.values() for p in event.participants}


def _drive_collaborators(request: str, env: Any) -> set[str]:
    """Everyone a file on the user's drive is shared with."""
    return {str(who) for f in env.cloud_drive.files.values() for who in f.shared_with}


def _named_emails(request: str, env: Any) -> set[str]:
    """E-mail addresses the user typed in the request."""
    return set(EMAIL_RE.findall(request))


def _named_urls(request: str, env: Any) -> set[str]:
    """Web sites the user typed in the request."""
    return {url.rstrip(".,;:!?)") for url in URL_RE.findall(request)}


SOURCES: dict[str, Callable[[str, Any], set[str]]] = {
    "contacts": _contacts,
    "calendar_people": _calendar_people,
    "drive_collaborators": _drive_collaborators,
    "named_emails": _named_emails,
    "named_urls": _named_urls,
}


# -- loading ------------------------------------------------------------------------------------


def load(path: Path = SCOPES_FILE) -> tuple[str, dict[str, SuitePlan]]:
    """``(on_behalf_of, {suite: plan})`` from ``scopes.yaml``; raises ``ValueError`` if broken."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    plans: dict[str, SuitePlan] = {}
    for suite, body in raw["suites"].items():
        tools = {
            name: ToolMap(f"{suite}.{name}", str(m["action"]), m.get("dataset"))
            for name, m in body["tools"].items()
        }
        capabilities = []
        for cname, c in (body.get("capabilities") or {}).items():
            for tool in [*c["tools"], *(c.get("constraints") or {})]:
                if tool not in tools:
                    raise ValueError(f"{path.name}: {suite}.{cname} names unknown tool {tool}")
            for spec in (c.get("constraints") or {}).values():
                for arg in spec.values():
                    one_of = arg.get("one_of")
                    if isinstance(one_of, Mapping):
                        unknown = set(one_of.get("from", [])) - set(SOURCES)
                        if unknown:
                            raise ValueError(f"{path.name}: unknown value source {unknown}")
            capabilities.append(
                Capability(
                    cname,
                    tuple(re.compile(p, re.IGNORECASE) for p in c["when"]),
                    tuple(c["tools"]),
                    dict(c.get("constraints") or {}),
                )
            )
        always = tuple(body.get("always") or ())
        for tool in always:
            if tool not in tools:
                raise ValueError(f"{path.name}: {suite}.always names unknown tool {tool}")
        plans[suite] = SuitePlan(suite, str(body["agent"]), tools, always, tuple(capabilities))
    return str(raw["user"]), plans
