"""The kill switch (OWASP ASI10): revoke an agent everywhere at once.

Revoking an agent ends every open task it holds, and every task delegated from them, which
revokes all their grants and ends their leases (database roles are dropped at once, or by the
reaper's retries); until it is restored, the agent can open no task and receive no
delegation. One transaction, audited as ``agent_revoked``.
"""

from __future__ import annotations

from tether.core.audit import AuditKind
from tether.core.errors import ErrorCode, InvalidRequest, NotFound
from tether.core.identity import parse_spiffe_id
from tether.core.task import Task
from tether.service.leases import LeaseService
from tether.service.ports import AgentRegistry, AuditEntry, Clock
from tether.service.recording import Recorder


class AgentService:
    def __init__(
        self,
        *,
        store: AgentRegistry,
        clock: Clock,
        recorder: Recorder,
        leases: LeaseService | None = None,
    ) -> None:
        self._leases = leases
        self._store = store
        self._clock = clock
        self._rec = recorder

    def revoke(self, agent: str, reason: str, by: str) -> int:
        _check_agent(agent)
        if not reason.strip() or len(reason) > 2000:
            raise InvalidRequest(
                "give a reason of 1 to 2000 characters", code=ErrorCode.INVALID_FIELD
            )
        now = self._clock.now()

        def ended(task: Task) -> AuditEntry:
            return self._rec.entry(
                AuditKind.TASK_REVOKED,
                now,
                agent=task.agent,
                task_id=task.task_id,
                body={"state": "revoked", "because": f"agent {agent} was revoked: {reason}"},
            )

        ended_tasks = self._store.revoke_agent(
            agent,
            now,
            reason,
            by,
            self._rec.entry(
                AuditKind.AGENT_REVOKED,
                now,
                agent=agent,
                task_id=None,
                body={"reason": reason, "by": by},
            ),
            ended,
            ended,
        )
        if self._leases is not None:
            self._leases.release_quietly()
        return ended_tasks

    def restore(self, agent: str, by: str) -> None:
        _check_agent(agent)
        now = self._clock.now()
        restored = self._store.restore_agent(
            agent,
            self._rec.entry(
                AuditKind.AGENT_RESTORED, now, agent=agent, task_id=None, body={"by": by}
            ),
        )
        if not restored:
            raise NotFound(f"agent {agent} is not revoked", code=ErrorCode.NOT_FOUND)

    def revoked(self) -> list[tuple[str, str, str, str]]:
        return [
            (a, at.isoformat(), reason, by) for a, at, reason, by in self._store.revoked_agents()
        ]


def _check_agent(agent: str) -> None:
    if agent.startswith("spiffe://"):
        try:
            parse_spiffe_id(agent)
        except ValueError as error:
            raise InvalidRequest(
                f"not a SPIFFE ID: {error}", code=ErrorCode.INVALID_FIELD
            ) from None
    elif "#" not in agent or len(agent) > 2048:
        raise InvalidRequest(
            "name the agent by its SPIFFE ID (spiffe://…) or OIDC id (issuer#subject)",
            code=ErrorCode.INVALID_FIELD,
        )
