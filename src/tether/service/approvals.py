"""Human approvals: create them for ``approval_required`` calls, let approvers decide, and let
the agent use an approved one exactly once for exactly the call it names.

The summary an approver reads is built here from facts tether holds (the declared intent, the
call, the dataset's classification, the policy that asked and why, what the task has done so
far), never from anything a model wrote about itself (OWASP ASI09). Argument values are shown as
JSON, quoted, and labelled as the agent's input.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from tether.core.approval import Approval, ApprovalState, cast_vote
from tether.core.audit import AuditKind
from tether.core.call import Call
from tether.core.errors import Conflict, ErrorCode, InvalidRequest, NotFound
from tether.core.identity import Workload
from tether.core.ids import ApprovalId, DecisionId, IdFactory
from tether.core.scope import Classification, JSONValue
from tether.core.task import Grant, Task
from tether.service.ports import AuditEntry, Clock, Store, TaskActivity
from tether.service.recording import Recorder

MAX_SHOWN = 200


@dataclass(frozen=True, slots=True)
class Approver:
    """A verified human approver. Its id never starts with ``spiffe://``."""

    id: str
    name: str


class ApproverVerifier(Protocol):
    def verify(self, token: str) -> Approver:
        """Raise ``Unauthenticated`` unless ``token`` is a valid approver credential."""
        ...


class ApprovalNotifier(Protocol):
    def approval_pending(self, approval: Approval) -> None:
        """Tell humans an approval waits (a webhook); must not block or raise."""
        ...


class NoNotifier:
    def approval_pending(self, approval: Approval) -> None:
        return None


def _shown(value: JSONValue) -> str:
    text = json.dumps(value, ensure_ascii=True, sort_keys=True)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def summarize(
    *,
    agent: str,
    task: Task,
    call: Call,
    classification: Classification | None,
    why: Sequence[str],
    policy_ids: Sequence[str],
    required: int,
    activity: TaskActivity,
) -> tuple[str, ...]:
    """Facts only, in a fixed order and wording: the same inputs give the same summary."""
    intent = task.intent
    lines = [
        f"Agent {agent} asks to {call.action.value} with tool {call.tool}.",
        f"Declared intent (stated by the agent, not verified): workflow {_shown(intent.workflow)}, "
        f"purpose {_shown(intent.purpose)}, on behalf of {_shown(intent.on_behalf_of)}.",
    ]
    if call.args:
        shown = "; ".join(f"{name} = {_shown(call.args[name])}" for name in sorted(call.args))
        lines.append(f"Arguments (the agent's input, as sent): {shown}.")
    else:
        lines.append("Arguments: none.")
    if call.dataset is None:
        lines.append("Touches no dataset.")
    else:
        label = classification.value if classification else "unclassified"
        lines.append(f"Touches dataset {call.dataset} ({label}).")
    for policy_id, reason in zip(policy_ids, why, strict=False):
        lines.append(f"Policy {policy_id} asks for approval: {reason}")
    lines.append(
        f"Needs {required} distinct approver{'s' if required != 1 else ''}; "
        "the agent itself can never approve."
    )
    outcomes = ", ".join(f"{n} {d}" for d, n in sorted(activity.decisions.items())) or "none"
    lines.append(
        f"Task {task.task_id} so far: decisions {outcomes}; {activity.effects} effects reported "
        f"({activity.records} records, {activity.bytes} bytes)."
    )
    return tuple(lines)


class ApprovalService:
    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        ids: IdFactory,
        recorder: Recorder,
        notifier: ApprovalNotifier,
        ttl_seconds: int,
    ) -> None:
        self._store = store
        self._clock = clock
        self._ids = ids
        self._rec = recorder
        self._notifier = notifier
        self._ttl = ttl_seconds

    # -- used by the authorizer ------------------------------------------------------------

    def args_mac(self, call: Call) -> str:
        return self._rec.secret_value(call.args)

    def pending_for(self, agent: Workload, task: Task, call: Call) -> Approval | None:
        """An approval already waiting for this exact call, so a retry does not pile up more."""
        return self._store.find_pending_approval(
            agent=agent.id,
            task_id=task.task_id,
            tool=call.tool,
            action=call.action,
            dataset=call.dataset,
            args_mac=self.args_mac(call),
            now=self._clock.now(),
        )

    def draft(
        self,
        *,
        agent: Workload,
        task: Task,
        grant: Grant,
        call: Call,
        decision_id: DecisionId,
        classification: Classification | None,
        why: Sequence[str],
        policy_ids: Sequence[str],
        required: int,
    ) -> tuple[Approval, AuditEntry]:
        now = self._clock.now()
        summary = summarize(
            agent=agent.id,
            task=task,
            call=call,
            classification=classification,
            why=why,
            policy_ids=policy_ids,
            required=required,
            activity=self._store.task_activity(task.task_id),
        )
        approval = Approval(
            approval_id=self._ids.approval(),
            decision_id=decision_id,
            task_id=task.task_id,
            grant_id=grant.grant_id,
            agent=agent.id,
            tool=call.tool,
            action=call.action,
            dataset=call.dataset,
            args=dict(call.args),
            args_mac=self.args_mac(call),
            policy_ids=tuple(policy_ids),
            why="; ".join(why),
            required=required,
            summary=summary,
            created_at=now,
            expires_at=now + timedelta(seconds=self._ttl),
            state=ApprovalState.PENDING,
        )
        entry = self._rec.entry(
            AuditKind.APPROVAL_REQUESTED,
            now,
            agent=agent.id,
            task_id=task.task_id,
            body={
                "approval_id": approval.approval_id,
                "decision_id": decision_id,
                "call": self._rec.call(call),
                "policy_ids": list(policy_ids),
                "required": required,
                "expires_at": approval.expires_at.isoformat(),
            },
        )
        return approval, entry

    def announce(self, approval: Approval) -> None:
        self._notifier.approval_pending(approval)

    # -- used by approvers -----------------------------------------------------------------

    def list(self, limit: int = 100) -> Sequence[Approval]:
        return self._store.list_approvals(limit)

    def get(self, approval_id: ApprovalId) -> Approval:
        approval = self._store.get_approval(approval_id)
        if approval is None:
            raise NotFound(f"no approval {approval_id}", code=ErrorCode.APPROVAL_NOT_FOUND)
        return approval

    def vote(
        self, approver: Approver, approval_id: ApprovalId, approve: bool, reason: str
    ) -> Approval:
        if len(reason) > 1000:
            raise InvalidRequest("reason is limited to 1000 characters")
        now = self._clock.now()
        approval = self._store.get_approval(approval_id)
        if approval is not None:
            task = self._store.get_task(approval.task_id)
            if task is None or not task.is_open_at(now):
                # Ending the task expired the approval; one past its expiry not yet reaped too.
                raise Conflict(
                    "the task this approval was asked for has ended, and its approvals with it; "
                    "nothing to approve",
                    code=ErrorCode.TASK_NOT_OPEN,
                )

        def audit(after: Approval) -> AuditEntry:
            return self._rec.entry(
                AuditKind.APPROVAL_VOTED,
                now,
                agent=after.agent,
                task_id=after.task_id,
                body={
                    "approval_id": after.approval_id,
                    "approver": approver.id,
                    "approve": approve,
                    "reason": reason,
                    "state": after.state.value,
                    "approvals": after.approvals,
                    "required": after.required,
                },
            )

        return self._store.vote_approval(
            approval_id, lambda a: cast_vote(a, approver.id, approve, reason, now), audit
        )

    # -- used by the agent -----------------------------------------------------------------

    def status_for_agent(self, agent: Workload, approval_id: ApprovalId) -> Approval:
        approval = self._store.get_approval(approval_id)
        if approval is None or not hmac.compare_digest(approval.agent, agent.id):
            raise NotFound(
                f"no approval {approval_id} for this agent", code=ErrorCode.APPROVAL_NOT_FOUND
            )
        return approval
