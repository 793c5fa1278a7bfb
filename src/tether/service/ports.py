"""The interfaces the service needs; adapters (identity, policy, store) implement them.

Adapters import only :mod:`tether.core` and this module. Each port states what it must never do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from tether.core.approval import Approval
from tether.core.audit import AuditKind, AuditRecord, ChainHead
from tether.core.budget import Hold
from tether.core.call import Call
from tether.core.effect import Effect
from tether.core.errors import ConfigurationError

# The policy engine's answer and a decision's task progress are core values (the pure decision
# takes and returns them); re-exported here, where the ports that carry them live.
from tether.core.facts import ObservedVerdict as ObservedVerdict
from tether.core.facts import PolicyOutcome as PolicyOutcome
from tether.core.facts import TaskProgress as TaskProgress
from tether.core.identity import Workload
from tether.core.ids import ApprovalId, DecisionId, GrantId, TaskId
from tether.core.lease import IssuerKind, Lease, LeaseState
from tether.core.provenance import Observation
from tether.core.provenance_rules import NO_PROVENANCE, ArgumentProvenance, ProvenanceRules
from tether.core.scope import ActionKind, Classification, JSONValue
from tether.core.task import Grant, Intent, Task, TaskState
from tether.core.verdict import Decision, IssuedCredential


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


# -- identity ----------------------------------------------------------------------------------


class WorkloadVerifier(Protocol):
    """Turns a bearer credential into a verified :class:`Workload`.

    Raises ``Unauthenticated(code=INVALID_TOKEN)`` for anything that does not verify: bad
    signature, algorithm not pinned, expired, not yet valid, wrong audience or issuer, malformed.
    The exception message is safe to show the caller (it never echoes the token).
    """

    def verify(self, token: str, now: datetime) -> Workload: ...


class GrantSigner(Protocol):
    """Signs grant tokens and verifies them (ES256, tether's own key, algorithm pinned)."""

    def sign(self, grant: Grant) -> str: ...

    def verify(self, token: str, now: datetime) -> GrantClaims:
        """Raise ``Unauthenticated(code=INVALID_TOKEN)`` when the token is not a valid grant."""
        ...


@dataclass(frozen=True, slots=True)
class GrantClaims:
    """What a verified grant token says; the store remains the source of truth."""

    grant_id: GrantId
    task_id: TaskId
    agent: str
    expires_at: datetime


# -- policy ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """Everything Cedar sees about one call."""

    agent: Workload
    call: Call
    classification: Classification | None
    intent: Intent
    task_id: TaskId
    #: Who delegated the grant, root first; empty for a root grant.
    delegators: tuple[str, ...] = ()
    #: The task's data-flow label: the highest classification it (or the task it was delegated
    #: from) has read before this call; ``None`` while nothing classified was read.
    dataflow: Classification | None = None
    #: What the provenance check found of the call's sink arguments.
    provenance: ArgumentProvenance = NO_PROVENANCE


@dataclass(frozen=True, slots=True)
class GrantPreview:
    """Whether policy could ever permit ``action`` on ``tool`` for this agent and intent."""

    permitted: bool
    policy_ids: tuple[str, ...]
    reason: str


class PolicyEngine(Protocol):
    """Cedar behind one interface. Never raises on a well-formed request: errors become deny."""

    @property
    def revision(self) -> str:
        """A stable digest of the loaded policy set, schema and catalog."""
        ...

    def decide(self, request: PolicyRequest) -> PolicyOutcome: ...

    def preview_grant(
        self,
        agent: Workload,
        intent: Intent,
        tool: str,
        action: ActionKind,
        dataset: str | None,
        delegators: tuple[str, ...] = (),
    ) -> GrantPreview: ...

    def classification(self, dataset: str) -> Classification | None:
        """The dataset's classification from the catalog, or ``None`` if it is not catalogued."""
        ...

    @property
    def provenance(self) -> ProvenanceRules:
        """The catalog's trusted sources and sink arguments (of the policies in force)."""
        ...

    @property
    def last_error(self) -> ConfigurationError | None:
        """Why the latest reload of the policies failed (``revision`` is then still the last
        good one, in force), or ``None`` when it succeeded or none was tried."""
        ...


# -- store -------------------------------------------------------------------------------------


class ObservationStore(Protocol):
    """What each task's agent has seen in tool results, as keyed HMACs with their source
    (:mod:`tether.core.provenance`). Never holds a raw value.

    Raises ``Unavailable(STORE_UNAVAILABLE)`` when the store cannot answer: the caller denies.
    """

    def add_observations(
        self, entries: Sequence[tuple[TaskId, Observation]], at: datetime, limit: int
    ) -> None:
        """Record each observation under its task, in one transaction (a delegate's chain, so
        its observations roll up, each task's under its own key), each task holding at most
        ``limit`` rows. Fingerprints past a task's
        limit are not stored; for an untrusted source the task then counts an unscanned part
        (so an unseen value fails ``not_only_untrusted``), never fewer untrusted values.
        In the same transaction, each task's ``observed`` (:attr:`Task.observed`) becomes its
        row count: a reader that sees the new count sees the rows it counts."""
        ...

    def observations(self, task_ids: Sequence[TaskId]) -> list[Observation]:
        """Everything recorded under any of ``task_ids``, grouped by source."""
        ...

    def observations_by_task(self, task_ids: Sequence[TaskId]) -> dict[TaskId, list[Observation]]:
        """What each of ``task_ids`` recorded, grouped by source (one read)."""
        ...

    def count_observations(self, task_ids: Sequence[TaskId]) -> int:
        """How many rows ``task_ids`` hold together (what their ``observed`` says after a
        write). Rows are only inserted, each once, so an unchanged count means unchanged
        observations."""
        ...


@dataclass(frozen=True, slots=True)
class ObservedRows:
    """What one result put in an agent's context, checked and fingerprinted: the rows
    ``add_observations`` writes (``entries`` at ``at``, at most ``limit`` per task), queued as
    the write known by ``key`` (see :meth:`QueuedEffects.queue_effect`)."""

    entries: tuple[tuple[TaskId, Observation], ...]
    at: datetime
    limit: int
    key: str

    @property
    def task_ids(self) -> tuple[TaskId, ...]:
        return tuple(dict.fromkeys(task_id for task_id, _ in self.entries))


class QueuedObservations(Protocol):
    """Observations written after their call was answered, in the decisions' group commit
    (see :class:`QueuedEffects`)."""

    def queue_observations(
        self, entries: Sequence[tuple[TaskId, Observation]], at: datetime, limit: int, key: str
    ) -> Awaitable[object]:
        """``add_observations``'s write in one queued write, awaited on the running event
        loop (``Unavailable`` if its batch did not commit); the decisions on the entries'
        tasks wait for it. ``key``: what it (and the same write, retried) is known by."""
        ...


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """An audit record before the store seals it into the chain (seq, prev_hash, hash)."""

    record_id: str
    at: datetime
    kind: AuditKind
    agent: str | None
    task_id: str | None
    body: dict[str, JSONValue]


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    decision_id: DecisionId
    task_id: TaskId | None
    grant_id: GrantId | None
    agent: str
    tool: str
    action: ActionKind
    dataset: str | None
    decision: Decision
    decided_at: datetime


@dataclass(frozen=True, slots=True)
class BudgetCharge:
    """What one decision reserves, and the limits to check it against, atomically."""

    holds: tuple[Hold, ...]
    #: :attr:`Hold.key` (task_id, step or "", kind, classification) -> limit, for every limit
    #: the holds touch.
    limits: dict[tuple[str, str, str, str], float]
    #: (task_id, limit, since): at most ``limit`` allowed decisions on the task since ``since``.
    rate: tuple[str, float, datetime] | None = None
    #: (task_id, step, limit, since): at most ``limit`` calls of the task in workflow step
    #: ``step`` since ``since``. Each such call writes a ``calls_per_minute`` hold of the step
    #: (among ``holds``), which is what is counted.
    step_rate: tuple[str, str, float, datetime] | None = None


@dataclass(frozen=True, slots=True)
class TaskActivity:
    """What a task has done so far, for the approver's summary."""

    decisions: dict[str, int]
    effects: int
    records: int
    bytes: int


class TaskStore(Protocol):
    """Tasks and their grants: opened, read, ended (with every task delegated from them)."""

    def open_task(self, task: Task, grant: Grant, audit: AuditEntry) -> AuditRecord: ...

    def get_task(self, task_id: TaskId) -> Task | None: ...

    def get_grant(self, grant_id: GrantId) -> Grant | None: ...

    def get_grant_with_task(self, grant_id: GrantId) -> tuple[Grant | None, Task | None]:
        """The grant and the task it belongs to, read together (one round trip where the
        backend allows); the task is ``None`` when the grant is."""
        ...

    def end_task(
        self,
        task_id: TaskId,
        state: TaskState,
        at: datetime,
        audit: AuditEntry,
        cascade: Callable[[Task], AuditEntry] | None = None,
    ) -> Task | None:
        """Move an open task to ``state`` (closed, expired, revoked) and revoke or expire its
        grants, and do the same to every open task delegated from it at any depth (auditing
        each with ``cascade``). Returns the updated task, or ``None`` when it was not open
        (nothing written)."""
        ...

    def expired_open_tasks(self, now: datetime, limit: int) -> Sequence[Task]: ...

    def task_activity(self, task_id: TaskId) -> TaskActivity: ...


@dataclass(frozen=True, slots=True)
class DecisionWrite:
    """Everything one decision writes, in one transaction (``DecisionLog.record_decision``)."""

    decision: DecisionRecord
    audit: AuditEntry
    new_approval: tuple[Approval, AuditEntry] | None = None
    use_approval: ApprovalId | None = None
    budget: BudgetCharge | None = None
    progress: Sequence[TaskProgress] = ()
    lease: tuple[Lease, AuditEntry] | None = None


class DecisionLog(Protocol):
    """Decisions and the effects reported for them, each with what it implies."""

    def record_decision(self, write: DecisionWrite) -> AuditRecord:
        """Record a decision; in the same transaction, record the lease it minted, create the
        approval it asks for, or
        move the approval it uses from approved to used (``Conflict`` if it is not approved,
        ``NotFound`` if unknown), reserve its budget holds (``BudgetExceeded`` when a limit
        would be passed), and move its task's label and workflow step. On any refusal nothing
        is written."""
        ...

    def decision_holds(self, decision_id: DecisionId) -> Sequence[tuple[Hold, float | None]]:
        """The holds a decision made, each with its settled amount (``None`` until settled)."""
        ...

    def get_decision(self, decision_id: DecisionId) -> DecisionRecord | None: ...

    def get_effect(self, decision_id: DecisionId) -> Effect | None:
        """The effect reported for ``decision_id``, if any."""
        ...

    def record_effect(
        self, effect: Effect, audit: AuditEntry, observed: ObservedRows | None = None
    ) -> AuditRecord:
        """Raise ``Conflict(code=EFFECT_ALREADY_REPORTED)`` on a second effect for a decision.

        ``observed``: the observation of the same call's result, in the same transaction
        after the effect: committed with it or not at all, and committed even when the effect
        is refused for good (the refusal is raised once it is)."""
        ...


class ApprovalStore(Protocol):
    """Approvals a decision asked for, voted on by humans, used once."""

    def get_approval(self, approval_id: ApprovalId) -> Approval | None: ...

    def list_approvals(self, limit: int = 100) -> Sequence[Approval]: ...

    def find_pending_approval(
        self,
        *,
        agent: str,
        task_id: TaskId,
        tool: str,
        action: ActionKind,
        dataset: str | None,
        args_mac: str,
        now: datetime,
    ) -> Approval | None: ...

    def vote_approval(
        self,
        approval_id: ApprovalId,
        apply: Callable[[Approval], Approval],
        audit: Callable[[Approval], AuditEntry],
    ) -> Approval: ...


class AgentRegistry(Protocol):
    """The kill switch: agents revoked and restored."""

    def revoke_agent(
        self,
        agent: str,
        at: datetime,
        reason: str,
        by: str,
        audit: AuditEntry,
        end_audit: Callable[[Task], AuditEntry],
        cascade: Callable[[Task], AuditEntry],
    ) -> int:
        """The kill switch: list the agent as revoked and end every open task it holds (and
        their delegates) in one transaction; returns how many of its tasks were ended."""
        ...

    def restore_agent(self, agent: str, audit: AuditEntry) -> bool: ...

    def is_agent_revoked(self, agent: str) -> bool: ...

    def revoked_agents(self) -> list[tuple[str, datetime, str, str]]: ...


class AuditLog(Protocol):
    """The hash-chained audit log itself, and the store's health."""

    def append_audit(self, audit: AuditEntry) -> AuditRecord: ...

    def record_gateway_event(self, gateway: str, event_id: str, audit: AuditEntry) -> AuditRecord:
        """Append ``audit`` as remote gateway ``gateway``'s event ``event_id``, once: raise
        ``Conflict(code=EVENT_REPLAYED)``, writing nothing, if that id is already recorded."""
        ...

    def audit_records(
        self, after_seq: int = 0, partition: str | None = None
    ) -> Iterator[AuditRecord]:
        """``partition``'s records in chain order after ``after_seq``; with no partition, every
        partition's, in the log's stable order (:func:`tether.core.partitions.log_order`)."""
        ...

    def chain_head(self) -> ChainHead | None:
        """The head of the partition this store appends to."""
        ...

    def chain_heads(self) -> dict[str, ChainHead | None]:
        """Every partition's head (``None``: empty)."""
        ...

    def ping(self) -> None:
        """Raise ``Unavailable`` unless the store is reachable and writable."""
        ...

    def close(self) -> None: ...


class LoopDecisionLog(Protocol):
    """A store an event loop can decide on: its reads are in-process and brief (never a network
    round trip, never a lock wait), and a decision's write is handed to a writer thread and
    awaited, so no commit blocks the loop. Only such a store is given to
    :meth:`~tether.service.authorize.Authorizer.enforce_async` as its loop store."""

    def record_decision_async(self, write: DecisionWrite) -> Awaitable[AuditRecord]:
        """The same write and the same guarantees as ``record_decision`` (group-committed, no
        result before its commit), awaited on the running event loop."""
        ...


class HandedDecisionLog(Protocol):
    """A store whose reads may wait on the network (PostgreSQL): a decision's facts are read on
    a worker thread, which hands the decision's write to the store's writer thread without
    waiting for it; the write's outcome goes straight to the event loop awaiting it, with the
    rest of its batch's (one wake-up of the loop per batch, not one per decision)."""

    def record_decision_handed(
        self,
        write: DecisionWrite,
        loop: asyncio.AbstractEventLoop,
        answer: asyncio.Future[AuditRecord],
    ) -> None:
        """The same write and the same guarantees as ``record_decision`` (group-committed, no
        result before its commit), called on any thread: its audit record (or the error
        ``record_decision`` would raise) is set on ``answer``, a future of ``loop``, on that
        loop. Raises ``Unavailable`` at once, queuing nothing, when the store is closed."""
        ...


class QueuedEffects(Protocol):
    """Effects written after their call was answered, in the decisions' group commit: for an
    enforcement point that answers first (the MCP gateway). The decisions on a task wait for
    its queued effects (``wait_for_effects``), so none reads the task's facts without them."""

    def queue_effect(
        self, effect: Effect, audit: AuditEntry, observed: ObservedRows | None = None
    ) -> Awaitable[AuditRecord]:
        """``record_effect``'s write and refusals, queued into the next group commit (no
        transaction of its own) and awaited on the running event loop: the audit record once
        its batch committed, ``Unavailable`` if the batch did not.

        ``observed``: the observation of the same call's result, in the same write (one
        savepoint, one wait for the decisions on its tasks), after the effect: committed
        with it or not at all, and written even when the effect is refused for good."""
        ...

    def wait_for_effects(self, task_ids: Sequence[str]) -> None:
        """Return once no effect queued on ``task_ids`` is waiting for its commit. Raises
        ``Unavailable`` while one of theirs failed to commit and was not written since, or if
        the wait outlasts the store's bound: the decision that asked must not be made."""
        ...


class Store(TaskStore, DecisionLog, ApprovalStore, AgentRegistry, AuditLog, Protocol):
    """Durable state, every role in one database. Every mutation takes the audit entry that
    records it and writes both in one transaction: if the audit record cannot be written,
    nothing is. Raises ``Unavailable(code=STORE_UNAVAILABLE)`` when the backend cannot be
    reached, never returns a guess. A use case depends on the roles it uses.
    """


class LeaseStore(Protocol):
    """Leases, in the same database and audit chain as the :class:`Store`."""

    def get(self, lease_id: str) -> Lease | None: ...

    def for_task(self, task_id: str) -> list[Lease]: ...

    def recent(self, limit: int = 100, state: LeaseState | None = None) -> list[Lease]: ...

    def count_live(self, now: datetime) -> int: ...

    def end(
        self, lease_id: str, at: datetime, audit: Callable[[Lease], AuditEntry]
    ) -> Lease | None:
        """Revoke one active lease with its audit record; ``None`` when it was not active."""
        ...

    def expire_due(
        self, now: datetime, limit: int, audit: Callable[[Lease], AuditEntry]
    ) -> list[Lease]: ...

    def unreleased(self, limit: int = 100) -> list[Lease]:
        """Ended leases whose downstream credential may still exist, oldest first."""
        ...

    def mark_released(self, lease: Lease, audit: AuditEntry) -> bool: ...


class DownstreamIssuer(Protocol):
    """Mints and removes one kind of downstream credential (a scoped token, a database role)."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> IssuerKind: ...

    @property
    def ttl(self) -> timedelta: ...

    @property
    def max_ttl(self) -> timedelta: ...

    def covers(self, tool: str) -> bool:
        """True when calls to ``tool`` get this issuer's credential."""
        ...

    def mint(self, lease: Lease, *, now: datetime, actors: tuple[str, ...]) -> IssuedCredential:
        """The credential ``lease`` stands for. Raises ``Unavailable`` when the downstream
        system cannot be reached (nothing is left behind) and ``TetherError`` for a lease it
        cannot serve."""
        ...

    def release(self, lease: Lease) -> None:
        """Remove the credential downstream; idempotent. Raises ``Unavailable`` to be retried."""
        ...
