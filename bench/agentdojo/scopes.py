"""The operator's side of a task: which tether scopes the agent application asks for.

``scopes.yaml`` maps every AgentDojo tool to a tether call (``<suite>.<tool>``, action, dataset)
and constrains some arguments. Every task of a suite gets the suite's tools; this module turns
them into the ``scopes`` of ``POST /v1/tasks``, with allow-lists drawn from the user's own data
and the values the user typed. It never sees tool outputs nor which calls came from an injection.
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
class SuitePlan:
    """One suite's operator configuration: every task gets every tool, some constrained."""

    suite: str
    agent: str
    tools: Mapping[str, ToolMap]
    constraints: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def call(self, function: str) -> ToolMap:
        """The tether call for an AgentDojo tool; an unmapped tool is a ``write`` (fail safe)."""
        return self.tools.get(function, ToolMap(f"{self.suite}.{function}", "write", None))

    def scopes(self, request: str, environment: Any) -> list[dict[str, Any]]:
        """The scopes a task asks for: the suite's tools, values drawn from ``environment``.

        The request text is read only for the values the user typed (addresses, sites), never
        to choose tools.
        """
        scopes: list[dict[str, Any]] = []
        for name, mapped in self.tools.items():
            scope: dict[str, Any] = {"tool": mapped.tool, "actions": [mapped.action]}
            if mapped.dataset:
                scope["datasets"] = [mapped.dataset]
            raw = self.constraints.get(name, {})
            if raw:
                scope["constraints"] = {
                    arg: _constraint(spec, request, environment) for arg, spec in raw.items()
                }
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


def _mailed_by_user(request: str, env: Any) -> set[str]:
    """Everyone the user has sent mail to (the user's own sent mail, not who wrote to them)."""
    inbox = env.inbox
    own = str(inbox.account_email).lower()
    return {
        str(who)
        for mail in inbox.emails.values()
        if str(mail.sender).lower() == own
        for who in [*mail.recipients, *mail.cc, *mail.bcc]
    }


def _shared_by_user(request: str, env: Any) -> set[str]:
    """Everyone the user has shared one of their own drive files with."""
    drive = getattr(env, "cloud_drive", None)
    if drive is None:
        return set()
    own = str(env.inbox.account_email).lower()
    return {
        str(who)
        for f in drive.files.values()
        if str(f.owner).lower() == own
        for who in f.shared_with
    }


def _calendar_people(request: str, env: Any) -> set[str]:
    """Everyone on an event of the user's own calendar."""
    return {str(p) for event in env.calendar.events.values() for p in event.participants}


def _named_emails(request: str, env: Any) -> set[str]:
    """E-mail addresses the user typed in the request."""
    return set(EMAIL_RE.findall(request))


def _named_urls(request: str, env: Any) -> set[str]:
    """Web sites the user typed in the request."""
    return {url.rstrip(".,;:!?)") for url in URL_RE.findall(request)}


SOURCES: dict[str, Callable[[str, Any], set[str]]] = {
    "mailed_by_user": _mailed_by_user,
    "shared_by_user": _shared_by_user,
    "calendar_people": _calendar_people,
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
        constraints = dict(body.get("constraints") or {})
        for tool, spec in constraints.items():
            if tool not in tools:
                raise ValueError(f"{path.name}: {suite}.constraints names unknown tool {tool}")
            for arg in spec.values():
                one_of = arg.get("one_of")
                if isinstance(one_of, Mapping):
                    unknown = set(one_of.get("from", [])) - set(SOURCES)
                    if unknown:
                        raise ValueError(f"{path.name}: unknown value source {unknown}")
        plans[suite] = SuitePlan(suite, str(body["agent"]), tools, constraints)
    return str(raw["user"]), plans
