"""A tool call as the enforcement point describes it, before it runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from tether.core.scope import ActionKind, JSONValue


@dataclass(frozen=True, slots=True)
class Call:
    """One tool call: which tool, what kind of action, which dataset, with which arguments."""

    tool: str
    action: ActionKind
    dataset: str | None = None
    args: dict[str, JSONValue] = field(default_factory=dict, hash=False)

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "tool": self.tool,
            "action": self.action.value,
            "dataset": self.dataset,
            "args": dict(self.args),
        }
