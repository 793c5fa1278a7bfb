"""Just-in-time downstream credentials: minted on allow, ended with their task, released after.

    allow for a tool an issuer covers → lease (the call's tool, action and dataset only)
      → the issuer mints the credential → the decision, the lease and its audit record commit
        together → the caller gets the credential once, in the verdict

A lease ends when its task ends (closed, expired, revoked by the kill switch or a parent), when
it is revoked on its own, or when its time runs out (the reaper). Ending is a state change in the
store, in the same transaction as its cause; *releasing* it (dropping the database role) happens
after, and the reaper retries every ended lease whose credential may still exist until it is
gone, across restarts. Nothing here ever holds a credential longer than the call that mints it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from tether.core.audit import AuditKind
from tether.core.call import Call
from tether.core.errors import ErrorCode, NotFound, TetherError
from tether.core.identity import Workload
from tether.core.ids import DecisionId, GrantId, TaskId
from tether.core.lease import Lease, LeaseState, new_lease_id, open_lease
from tether.core.scope import Scope
from tether.core.task import Grant, Task
from tether.core.verdict import IssuedCredential
from tether.service.ports import AuditEntry, Clock, DownstreamIssuer, LeaseStore
from tether.service.recording import Recorder

#: How many leases one sweep expires or releases at most.
REAP_BATCH = 200


class LeaseService:
    def __init__(
        self,
        *,
        store: LeaseStore,
        issuers: Sequence[DownstreamIssuer],
        clock: Clock,
        recorder: Recorder,
        random_bytes: Callable[[int], bytes],
        on_error: Callable[[str, Lease | None, TetherError], None] | None = None,
    ) -> None:
        names = [i.name for i in issuers]
        if len(set(names)) != len(names):
            raise ValueError("downstream issuer names must be unique")
        self._store = store
        self._issuers = tuple(issuers)
        self._by_name = {i.name: i for i in issuers}
        self._clock = clock
        self._rec = recorder
        self._random = random_bytes
        self._on_error = on_error

    @property
    def issuers(self) -> tuple[DownstreamIssuer, ...]:
        return self._issuers

    def issuer_for(self, tool: str) -> DownstreamIssuer | None:
        """The first configured issuer covering ``tool``, or ``None`` (no credential minted)."""
        for issuer in self._issuers:
            if issuer.covers(tool):
                return issuer
        return None

    def mint(
        self,
        agent: Workload,
        task: Task,
        grant: Grant,
        call: Call,
        decision_id: DecisionId,
        now: datetime,
    ) -> tuple[Lease, IssuedCredential, AuditEntry] | None:
        """The lease and credential for an allowed ``call``, or ``None`` when no issuer covers
        its tool. Raises ``TetherError`` when the credential cannot be minted (deny)."""
        issuer = self.issuer_for(call.tool)
        if issuer is None:
            return None
        lease = open_lease(
            lease_id=new_lease_id(self._random(16)),
            task_id=TaskId(task.task_id),
            grant_id=GrantId(grant.grant_id),
            agent=agent.id,
            issuer=issuer.kind,
            # INVARIANT: a lease covers exactly the call it was minted for.
            scope=Scope.of(call.tool, [call.action], [call.dataset] if call.dataset else []),
            now=now,
            ttl=issuer.ttl,
            max_ttl=issuer.max_ttl,
            grant_expires_at=min(grant.expires_at, task.expires_at),
            issuer_name=issuer.name,
            decision_id=decision_id,
        )
        # The delegation chain, most recent actor first (RFC 8693 act nesting).
        credential = issuer.mint(lease, now=now, actors=tuple(reversed(grant.delegators)))
        body = {**lease.to_json(), "because": "allowed call"}
        entry = self._rec.entry(
            AuditKind.LEASE_ISSUED, now, agent=agent.id, task_id=task.task_id, body=body
        )
        return lease, credential, entry

    def discard(self, lease: Lease) -> None:
        """Remove a credential that was minted but never handed over (its decision was not
        recorded). Best effort: such a credential was never seen outside this process."""
        issuer = self._by_name.get(lease.issuer_name)
        if issuer is None:
            return
        try:
            issuer.release(lease)
        except TetherError as error:
            self._report("lease_discard_failed", lease, error)

    def get(self, lease_id: str) -> Lease:
        lease = self._store.get(lease_id)
        if lease is None:
            raise NotFound(f"no lease {lease_id}", code=ErrorCode.LEASE_NOT_FOUND)
        return lease

    def is_active(self, lease_id: str) -> bool:
        """True while tether honours the lease: active in the store and not past its expiry."""
        lease = self._store.get(lease_id)
        return lease is not None and lease.is_active_at(self._clock.now())

    def for_task(self, task_id: str) -> list[Lease]:
        return self._store.for_task(task_id)

    def recent(self, limit: int = 100, state: LeaseState | None = None) -> list[Lease]:
        return self._store.recent(limit, state)

    def count_live(self) -> int:
        return self._store.count_live(self._clock.now())

    def revoke(self, lease_id: str, *, by: str, reason: str) -> Lease:
        """End one lease now (idempotent) and release its credential."""
        now = self._clock.now()

        def audit(lease: Lease) -> AuditEntry:
            body = {**lease.to_json(), "revoked_by": by, "reason": reason}
            return self._rec.entry(
                AuditKind.LEASE_REVOKED, now, agent=lease.agent, task_id=lease.task_id, body=body
            )

        ended = self._store.end(lease_id, now, audit)
        if ended is None:
            return self.get(lease_id)  # NotFound when unknown; already ended otherwise
        self.release_ended()
        return ended

    def reap(self) -> tuple[int, int]:
        """Expire leases past their expiry and release ended ones; returns both counts."""
        now = self._clock.now()

        def audit(lease: Lease) -> AuditEntry:
            return self._rec.entry(
                AuditKind.LEASE_EXPIRED,
                now,
                agent=lease.agent,
                task_id=lease.task_id,
                body={"lease_id": lease.lease_id, "expires_at": lease.expires_at.isoformat()},
            )

        expired = self._store.expire_due(now, REAP_BATCH, audit)
        return len(expired), self.release_ended()

    def release_ended(self) -> int:
        """Remove downstream every ended lease's credential that may still exist. A failure
        leaves the lease unreleased, so the next sweep retries it: never forgotten."""
        released = 0
        for lease in self._store.unreleased(REAP_BATCH):
            issuer = self._by_name.get(lease.issuer_name)
            if issuer is None:
                self._report(
                    "lease_issuer_missing",
                    lease,
                    TetherError(
                        f"issuer {lease.issuer_name!r} is no longer configured; restore it so "
                        "tether can remove this lease's credential"
                    ),
                )
                continue
            try:
                issuer.release(lease)
            except TetherError as error:
                self._report("lease_release_failed", lease, error)
                continue
            entry = self._rec.entry(
                AuditKind.LEASE_RELEASED,
                self._clock.now(),
                agent=lease.agent,
                task_id=lease.task_id,
                body={"lease_id": lease.lease_id, "issuer": lease.issuer_name},
            )
            if self._store.mark_released(lease, entry):
                released += 1
        return released

    def release_quietly(self) -> None:
        """Release what just ended without failing the caller (a task close, the kill switch):
        whatever cannot be released now stays recorded as unreleased, and the reaper retries."""
        try:
            self.release_ended()
        except TetherError as error:
            self._report("lease_release_deferred", None, error)

    def _report(self, event: str, lease: Lease | None, error: TetherError) -> None:
        if self._on_error is not None:
            self._on_error(event, lease, error)
