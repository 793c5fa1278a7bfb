"""Data-flow labels: a task remembers the most sensitive data it has read (OWASP ASI02).

Once a task has read ``confidential`` data, a call to an egress sink (email out, a post to
another host, a file share) needs a human's approval; after ``restricted`` data it is denied.
A delegation chain shares one label: a delegate's reads raise the label of every task it was
delegated from, and a task is bound by the highest label anywhere up its chain (its own or an
ancestor's), so handing the reading to a sub-agent does not launder the data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tether.core.scope import ActionKind, Classification


def raise_label(label: str, classification: Classification | None, action: ActionKind) -> str:
    """The task's label after an allowed call: reads raise it, nothing lowers it."""
    if classification is None or action is not ActionKind.READ:
        return label
    if not label or Classification(label).rank < classification.rank:
        return classification.value
    return label


def chain_label(labels: Iterable[str]) -> str:
    """The label that binds a task: the highest of its own and its ancestors' (``""``: none)."""
    highest = ""
    for label in labels:
        if label and (not highest or Classification(label).rank > Classification(highest).rank):
            highest = label
    return highest


@dataclass(frozen=True, slots=True)
class EgressRules:
    """Which tools send data out of the organisation."""

    sinks: frozenset[str] = field(default_factory=frozenset)

    def verdict(self, label: str, tool: str, action: ActionKind) -> str | None:
        """``"approval"`` or ``"deny"`` for an egress call after sensitive reads, else ``None``.

        Reading from a sink sends nothing out, so only other actions count as egress.
        """
        if tool not in self.sinks or not label or action is ActionKind.READ:
            return None
        rank = Classification(label).rank
        if rank >= Classification.RESTRICTED.rank:
            return "deny"
        if rank >= Classification.CONFIDENTIAL.rank:
            return "approval"
        return None
