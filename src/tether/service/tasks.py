"""Opening, closing and reaping tasks: zero standing privilege.

An agent authenticated by its workload identity opens a task with a declared intent and the scopes
it asks for. Policy decides what is granted, possibly less than asked; the grant is short-lived,
bound to the agent, stored server-side and revocable. Closing the task or its expiry ends it.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from tether.core.audit import AuditKind
from tether.core.budget import Budgets
from tether.core.checks import widening
from tether.core.errors import (
    Conflict,
    ErrorCode,
    Forbidden,
    InvalidRequest,
    NotFound,
    Unauthenticated,
)
from tether.core.identity import Workload
from tether.core.ids import IdFactory, TaskId
from tether.core.scope import JSONValue, Scope
from tether.core.task import Grant, GrantState, Intent, Task, TaskState, grant_is_usable
from tether.service.flows import Flows
from tether.service.leases import LeaseService
from tether.service.ports import AuditEntry, Clock, GrantSigner, PolicyEngine, Store
from tether.service.provenance import ProvenanceService
from tether.service.recording import Recorder
from tether.service.settings import ServiceSettings


@dataclass(frozen=True, slots=True)
class Refusal:
    """A part of the request that was not granted, and why."""

    tool: str
    action: str | None
    dataset: str | None
    code: str
    message: str

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "tool": self.tool,
            "action": self.action,
            "dataset": self.dataset,
            "code": self.code,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class OpenedTask:
    task: Task
    grant: Grant
    token: str
    refused: tuple[Refusal, ...]


class TaskService:
    def __init__(
        self,
        *,
        store: Store,
        policy: PolicyEngine,
        signer: GrantSigner,
        clock: Clock,
        ids: IdFactory,
        recorder: Recorder,
        settings: ServiceSettings,
        flows: Flows | None = None,
        leases: LeaseService | None = None,
        provenance: ProvenanceService | None = None,
    ) -> None:
        self._provenance = provenance
        self._flows = flows
        self._leases = leases
        self._store = store
        self._policy = policy
        self._signer = signer
        self._clock = clock
        self._ids = ids
        self._rec = recorder
        self._settings = settings

    # -- open ------------------------------------------------------------------------------

    def open_task(
        self,
        agent: Workload,
        intent: Intent,
        requested: Sequence[Scope],
        ttl_seconds: int | None = None,
        budgets: Budgets | None = None,
        request: str | None = None,
    ) -> OpenedTask:
        """Open a task; ``request`` is the user's request as given, whose values become a
        trusted source of the task's argument provenance (kept as fingerprints only)."""
        self._check_request(intent, requested, ttl_seconds)
        # The task's provenance secret: its fingerprints' key, wiped when it ends.
        secret = self._provenance.new_secret() if self._provenance else None
        said = (
            self._provenance.request_observation(request, secret)
            if self._provenance is not None and secret is not None
            else None
        )
        self._refuse_revoked(agent)
        now = self._clock.now()
        granted: list[Scope] = []
        refused: list[Refusal] = []
        flow = self._flows.workflows.get(intent.workflow) if self._flows else None
        for scope in requested:
            if flow is not None and not flow.allows_scope(scope):
                # A task that declares a workflow only gets what the workflow's steps use.
                refused.append(
                    Refusal(
                        scope.tool,
                        None,
                        None,
                        "outside_workflow",
                        f"{scope.tool} with {', '.join(sorted(a.value for a in scope.actions))} "
                        f"is not used by any step of the declared workflow {flow.name!r}",
                    )
                )
                continue
            narrowed, why = self._narrow(agent, intent, scope)
            refused.extend(why)
            if narrowed is not None:
                granted.append(narrowed)
        if not granted:
            self._store.append_audit(
                self._rec.entry(
                    AuditKind.TASK_REFUSED,
                    now,
                    agent=agent.id,
                    task_id=None,
                    body={
                        "intent": intent.to_json(),
                        "requested": [s.to_json() for s in requested],
                        "refused": [r.to_json() for r in refused],
                        "policy_revision": self._policy.revision,
                    },
                )
            )
            detail = "; ".join(r.message for r in refused[:5])
            raise Forbidden(
                f"nothing requested can be granted: {detail}", code=ErrorCode.NOTHING_GRANTED
            )

        ttl = ttl_seconds if ttl_seconds is not None else self._settings.default_ttl_seconds
        ttl = min(ttl, self._settings.max_ttl_seconds)  # INVARIANT: no grant outlives the cap
        expires = now + timedelta(seconds=ttl)
        task = Task(
            task_id=self._ids.task(),
            agent=agent.id,
            intent=intent,
            requested=tuple(requested),
            granted=tuple(granted),
            state=TaskState.OPEN,
            opened_at=now,
            expires_at=expires,
            # Limits come from the request, capped by the declared workflow's policy.
            budgets=(budgets or Budgets()).capped_by(flow.budgets if flow else Budgets()),
            provenance_secret=secret,
        )
        grant = Grant(
            grant_id=self._ids.grant(),
            task_id=task.task_id,
            agent=agent.id,
            scopes=tuple(granted),
            issued_at=now,
            expires_at=expires,
            state=GrantState.ACTIVE,
            policy_revision=self._policy.revision,
        )
        self._store.open_task(
            task,
            grant,
            self._rec.entry(
                AuditKind.TASK_OPENED,
                now,
                agent=agent.id,
                task_id=task.task_id,
                body={
                    "grant_id": grant.grant_id,
                    "intent": intent.to_json(),
                    "requested": [s.to_json() for s in requested],
                    "granted": [s.to_json() for s in granted],
                    "refused": [r.to_json() for r in refused],
                    "expires_at": expires.isoformat(),
                    "policy_revision": grant.policy_revision,
                    "budgets": task.budgets.to_json(),
                    # The user's request is never recorded: only how many values it held.
                    **(
                        {"request": {"values": len(said.fingerprints), "whole": said.complete}}
                        if said is not None
                        else {}
                    ),
                },
            ),
        )
        if said is not None and self._provenance is not None:
            self._provenance.record_request(task.task_id, said)
        return OpenedTask(task, grant, self._signer.sign(grant), tuple(refused))

    def _refuse_revoked(self, agent: Workload) -> None:
        # INVARIANT: a revoked agent (the kill switch) holds no authority until restored.
        if self._store.is_agent_revoked(agent.id):
            raise Forbidden(
                f"agent {agent.id} is revoked; an operator must restore it first",
                code=ErrorCode.AGENT_REVOKED,
            )

    def _check_request(
        self, intent: Intent, requested: Sequence[Scope], ttl_seconds: int | None
    ) -> None:
        limit = self._settings.max_intent_field
        for name in ("workflow", "purpose", "on_behalf_of"):
            value = getattr(intent, name)
            if not value.strip() or len(value) > limit:
                raise InvalidRequest(
                    f"intent.{name} must be a non-empty string of at most {limit} characters",
                    code=ErrorCode.INVALID_FIELD,
                )
        if not requested:
            raise InvalidRequest("ask for at least one scope", code=ErrorCode.INVALID_SCOPE)
        if len(requested) > self._settings.max_scopes:
            raise InvalidRequest(
                f"at most {self._settings.max_scopes} scopes per task",
                code=ErrorCode.INVALID_SCOPE,
            )
        tools = [s.tool for s in requested]
        if len(set(tools)) != len(tools):
            raise InvalidRequest(
                "each tool may appear in one scope only; merge its actions and datasets",
                code=ErrorCode.INVALID_SCOPE,
            )
        if ttl_seconds is not None and not (
            self._settings.min_ttl_seconds <= ttl_seconds <= 24 * 3600
        ):
            raise InvalidRequest(
                f"ttl_seconds must be between {self._settings.min_ttl_seconds} and 86400 "
                f"(grants are capped at {self._settings.max_ttl_seconds})",
                code=ErrorCode.INVALID_FIELD,
            )

    def _narrow(
        self, agent: Workload, intent: Intent, scope: Scope, delegators: tuple[str, ...] = ()
    ) -> tuple[Scope | None, list[Refusal]]:
        """Keep only what policy could permit: a product of actions by datasets, never more."""
        refused: list[Refusal] = []
        datasets: list[str | None] = []
        candidates: list[str | None] = [*sorted(scope.datasets)] or [None]
        for dataset in candidates:
            if dataset is not None and self._policy.classification(dataset) is None:
                refused.append(
                    Refusal(
                        scope.tool,
                        None,
                        dataset,
                        "unknown_dataset",
                        f"dataset {dataset!r} is not in the catalog",
                    )
                )
                continue
            datasets.append(dataset)
        permitted: dict[str | None, set[str]] = {d: set() for d in datasets}
        for action in sorted(scope.actions):
            for dataset in datasets:
                preview = self._policy.preview_grant(
                    agent, intent, scope.tool, action, dataset, delegators
                )
                if preview.permitted:
                    permitted[dataset].add(action.value)
                else:
                    refused.append(
                        Refusal(scope.tool, action.value, dataset, "policy_refused", preview.reason)
                    )
        kept = [d for d in datasets if permitted[d]]
        if not kept:
            return None, refused
        # INVARIANT: the granted scope is a product of actions by datasets that policy could
        # permit pairwise, so it never claims more than policy allows.
        actions = set.intersection(*(permitted[d] for d in kept))
        if not actions:
            return None, refused
        narrowed = Scope.of(
            scope.tool,
            actions,
            [d for d in kept if d is not None],
            scope.constraint_map,
        )
        return narrowed, refused

    # -- delegate ----------------------------------------------------------------------------

    def delegate(
        self,
        parent_agent: Workload,
        task_id: TaskId,
        grant_token: str,
        child: Workload,
        requested: Sequence[Scope],
        ttl_seconds: int | None = None,
        budgets: Budgets | None = None,
    ) -> OpenedTask:
        """Hand a narrower slice of a task to another agent (RFC 8693 delegation).

        The child grant is bound to ``child``, lists only scopes within the parent's, expires
        no later than the parent, carries the chain of delegators, and is revoked with it.
        """
        now = self._clock.now()
        try:
            claims = self._signer.verify(grant_token, now)
        except Unauthenticated:
            raise Forbidden(
                "the delegating grant is not valid", code=ErrorCode.GRANT_NOT_BOUND
            ) from None
        parent_grant = self._store.get_grant(claims.grant_id)
        parent_task = self._store.get_task(task_id)
        if (
            parent_grant is None
            or parent_task is None
            or parent_grant.task_id != task_id
            or not hmac.compare_digest(claims.agent, parent_agent.id)
            or not hmac.compare_digest(parent_grant.agent, parent_agent.id)
        ):
            raise NotFound(
                f"no task {task_id!r} with this grant for this agent",
                code=ErrorCode.TASK_NOT_FOUND,
            )
        if not grant_is_usable(parent_grant, parent_task, now):
            raise Conflict("the delegating grant is no longer active", code=ErrorCode.TASK_NOT_OPEN)
        if hmac.compare_digest(child.id, parent_agent.id):
            raise InvalidRequest(
                "delegate to another agent; an agent already holds its own grant",
                code=ErrorCode.INVALID_FIELD,
            )
        self._refuse_revoked(child)
        delegators = (*parent_grant.delegators, parent_agent.id)
        if len(delegators) > self._settings.max_delegation_depth:
            raise Forbidden(
                f"delegation depth {len(delegators)} exceeds the limit of "
                f"{self._settings.max_delegation_depth}",
                code=ErrorCode.DELEGATION_TOO_DEEP,
            )
        self._check_request(parent_task.intent, requested, ttl_seconds)
        for scope in requested:
            problem = widening(scope, parent_grant.scope_for(scope.tool))
            if problem is not None:
                raise Forbidden(
                    f"a delegation may only narrow: {problem}", code=ErrorCode.DELEGATION_WIDENS
                )
        child_budgets = budgets if budgets is not None else parent_task.budgets
        too_loose = child_budgets.narrower_than(parent_task.budgets)
        if too_loose is not None:
            raise Forbidden(
                f"a delegation may only narrow: {too_loose}", code=ErrorCode.DELEGATION_WIDENS
            )
        granted: list[Scope] = []
        refused: list[Refusal] = []
        for scope in requested:
            narrowed, why = self._narrow(child, parent_task.intent, scope, delegators)
            refused.extend(why)
            if narrowed is not None:
                granted.append(narrowed)
        if not granted:
            detail = "; ".join(r.message for r in refused[:5])
            raise Forbidden(
                f"policy grants the delegate nothing: {detail}", code=ErrorCode.NOTHING_GRANTED
            )
        ttl = ttl_seconds if ttl_seconds is not None else self._settings.default_ttl_seconds
        # INVARIANT: a child grant never outlives its parent.
        expires = min(now + timedelta(seconds=ttl), parent_grant.expires_at)
        task = Task(
            task_id=self._ids.task(),
            agent=child.id,
            intent=parent_task.intent,
            requested=tuple(requested),
            granted=tuple(granted),
            state=TaskState.OPEN,
            opened_at=now,
            expires_at=expires,
            parent_task_id=parent_task.task_id,
            budgets=child_budgets,
            # The delegate starts with what its parent has read, and where it is in the workflow.
            label=parent_task.label,
            workflow_step=parent_task.workflow_step,
            # A key of its own: what it observes is also written under each ancestor's key.
            provenance_secret=self._provenance.new_secret() if self._provenance else None,
        )
        grant = Grant(
            grant_id=self._ids.grant(),
            task_id=task.task_id,
            agent=child.id,
            scopes=tuple(granted),
            issued_at=now,
            expires_at=expires,
            state=GrantState.ACTIVE,
            policy_revision=self._policy.revision,
            delegators=delegators,
            parent_grant_id=parent_grant.grant_id,
        )
        self._store.open_task(
            task,
            grant,
            self._rec.entry(
                AuditKind.TASK_DELEGATED,
                now,
                agent=child.id,
                task_id=task.task_id,
                body={
                    "grant_id": grant.grant_id,
                    "parent_task_id": parent_task.task_id,
                    "parent_grant_id": parent_grant.grant_id,
                    "delegation": {"depth": len(delegators), "chain": list(delegators)},
                    "intent": parent_task.intent.to_json(),
                    "requested": [s.to_json() for s in requested],
                    "granted": [s.to_json() for s in granted],
                    "refused": [r.to_json() for r in refused],
                    "expires_at": expires.isoformat(),
                    "policy_revision": grant.policy_revision,
                },
            ),
        )
        return OpenedTask(task, grant, self._signer.sign(grant), tuple(refused))

    # -- close and reap --------------------------------------------------------------------

    def close_task(self, agent: Workload, task_id: TaskId) -> Task:
        task = self._store.get_task(task_id)
        if task is None or not hmac.compare_digest(task.agent, agent.id):
            raise NotFound(f"no task {task_id!r} for this agent", code=ErrorCode.TASK_NOT_FOUND)
        now = self._clock.now()
        if task.state is TaskState.OPEN and now >= task.expires_at:
            self._end(task, TaskState.EXPIRED)
            raise Conflict("the task has already expired", code=ErrorCode.TASK_NOT_OPEN)
        ended = self._end(task, TaskState.CLOSED)
        if ended is None:
            raise Conflict(f"the task is already {task.state.value}", code=ErrorCode.TASK_NOT_OPEN)
        return ended

    def reap_expired(self) -> int:
        """End every open task past its expiry; returns how many were ended."""
        now = self._clock.now()
        ended = 0
        for task in self._store.expired_open_tasks(now, self._settings.reap_batch):
            if self._end(task, TaskState.EXPIRED) is not None:
                ended += 1
        return ended

    def _end(self, task: Task, state: TaskState) -> Task | None:
        now = self._clock.now()
        kind = AuditKind.TASK_EXPIRED if state is TaskState.EXPIRED else AuditKind.TASK_CLOSED

        def cascade(child: Task) -> AuditEntry:
            return self._rec.entry(
                AuditKind.TASK_REVOKED,
                now,
                agent=child.agent,
                task_id=child.task_id,
                body={
                    "state": child.state.value,
                    "because": f"task {task.task_id} it was delegated from ended ({state.value})",
                    "root_task_id": task.task_id,
                },
            )

        ended = self._store.end_task(
            task.task_id,
            state,
            now,
            self._rec.entry(
                kind,
                now,
                agent=task.agent,
                task_id=task.task_id,
                body={"state": state.value, "expires_at": task.expires_at.isoformat()},
            ),
            cascade,
        )
        if ended is not None and self._provenance is not None:
            # Its secret is gone from its row (and its delegates'): from memory too.
            self._provenance.forget(task.task_id)
        if ended is not None and self._leases is not None:
            self._leases.release_quietly()
        return ended
