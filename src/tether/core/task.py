"""Tasks and grants: zero standing privilege.

An agent holds authority only inside a task. Opening a task with a declared intent yields one
grant: short-lived, bound to the agent's workload id, listing what was granted. Closing the task or
reaching its expiry ends the grant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from tether.core.budget import Budgets
from tether.core.ids import GrantId, TaskId
from tether.core.scope import JSONValue, Scope


@dataclass(frozen=True, slots=True)
class Intent:
    """What the agent declares it is doing; recorded and shown, never a source of authority."""

    workflow: str
    purpose: str
    on_behalf_of: str

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "workflow": self.workflow,
            "purpose": self.purpose,
            "on_behalf_of": self.on_behalf_of,
        }


class TaskState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    EXPIRED = "expired"
    REVOKED = "revoked"


class GrantState(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Task:
    task_id: TaskId
    agent: str
    intent: Intent
    requested: tuple[Scope, ...]
    granted: tuple[Scope, ...]
    state: TaskState
    opened_at: datetime
    expires_at: datetime
    ended_at: datetime | None = None
    #: The task this one was delegated from, if any.
    parent_task_id: TaskId | None = None
    #: Limits on what the task may take out (records, bytes, calls per minute, spend).
    budgets: Budgets = field(default_factory=Budgets)
    #: The highest classification the task has read ("" when none): its data-flow label.
    label: str = ""
    #: The last step of its declared workflow the task took (``None`` before the first).
    workflow_step: str | None = None
    #: How many observed values the task holds (argument provenance): grows with each one
    #: recorded, so a copy of the task's observations is current while this is unchanged.
    observed: int = 0
    #: The random secret its argument provenance key is derived from
    #: (:func:`tether.core.provenance.task_key`); ``None`` once the task has ended (wiped, so
    #: what it observed can no longer be linked to a value), ``b""`` for a task opened before
    #: tasks had secrets (its key is the master key). Never shown.
    provenance_secret: bytes | None = field(default=None, repr=False)

    def is_open_at(self, now: datetime) -> bool:
        return self.state is TaskState.OPEN and now < self.expires_at


@dataclass(frozen=True, slots=True)
class Grant:
    """What a task was granted. The signed token names ``grant_id``; this is the server's truth."""

    grant_id: GrantId
    task_id: TaskId
    agent: str
    scopes: tuple[Scope, ...]
    issued_at: datetime
    expires_at: datetime
    state: GrantState
    policy_revision: str
    #: Who delegated this grant, root first (RFC 8693 ``act`` chain); empty for a root grant.
    delegators: tuple[str, ...] = ()
    parent_grant_id: GrantId | None = None

    @property
    def depth(self) -> int:
        return len(self.delegators)

    def scope_for(self, tool: str) -> Scope | None:
        for scope in self.scopes:
            if scope.tool == tool:
                return scope
        return None


def grant_is_usable(grant: Grant, task: Task, now: datetime) -> bool:
    """A grant is usable while it is active, unexpired, and its task is open."""
    return grant.state is GrantState.ACTIVE and now < grant.expires_at and task.is_open_at(now)
