"""Authorize one tool call: gather its facts, decide (pure), record — fail closed.

    enforce → check the input once (core/callcheck)
      → facts: grant token, the grant and its task's delegation chain (one read), the dataset's
        classification, the root's workflow, one ``now``; for a tool with sink arguments, their
        provenance (service/provenance)
      → decide (core/decide): grant → scope → workflow → budgeted args → egress → Cedar's
        answer → data flow / anomaly → break-glass → approval; later facts are read only when
        the decision gets far enough to need them
      → record: the decision row, its audit record, budget holds, task progress, an approval
        or a lease, in one transaction (or deny)

Every failure yields a ``deny`` verdict with a stable reason code and the OWASP Agentic risk
ids the step guards against. Nothing is answered from a cache: sensitive (non-``read``) calls
never may be, and read decisions are cheap enough not to need one yet.

The steps are written once, as a generator that yields each :class:`DecisionWrite` and is sent
back its audit record (or has the store's error thrown in). Three drivers run it: ``authorize``
calls the store's ``record_decision`` on the caller's thread; ``enforce_async`` awaits the loop
store's ``record_decision_async``, so an HTTP door decides on its event loop and no commit
blocks it; on a store whose reads wait on the network, ``enforce_async`` runs the steps up to
their write on a worker thread that hands the write over, and the rest on the loop
(:mod:`tether.service.handoff`).
"""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import replace
from datetime import datetime

from tether.core.approval import Approval
from tether.core.audit import AuditKind
from tether.core.call import Call
from tether.core.callcheck import CallLimits, checked_call
from tether.core.dataflow import EgressRules
from tether.core.decide import (
    decide,
    needs_approval,
    needs_breakglass,
    refuse,
    screen,
    unreadable,
    unrecorded,
    verdict_of,
)
from tether.core.errors import BudgetExceeded, Conflict, TetherError, Unauthenticated
from tether.core.facts import CallFacts, Decided, LateFacts, PolicyOutcome, TokenStatus
from tether.core.identity import Workload
from tether.core.ids import (
    ApprovalId,
    DecisionId,
    GrantId,
    IdFactory,
    IdKind,
    TaskId,
    is_well_formed,
)
from tether.core.lease import Lease
from tether.core.provenance_rules import NO_PROVENANCE
from tether.core.risks import Risk
from tether.core.scope import ActionKind, Classification, JSONValue
from tether.core.verdict import (
    Decision,
    IssuedCredential,
    Reason,
    ReasonCode,
    Verdict,
)
from tether.service.approvals import ApprovalService
from tether.service.breakglass import BreakGlassService
from tether.service.enforce import CallRequest
from tether.service.flows import Expect, Flows
from tether.service.handoff import DecisionThreads, Steps
from tether.service.leases import LeaseService
from tether.service.observer import DecisionObserver, DecisionWatch, Unobserved
from tether.service.ports import (
    AuditEntry,
    BudgetCharge,
    Clock,
    DecisionRecord,
    DecisionWrite,
    GrantSigner,
    HandedDecisionLog,
    LoopDecisionLog,
    PolicyEngine,
    PolicyRequest,
    QueuedEffects,
    Store,
)
from tether.service.provenance import ProvenanceService
from tether.service.recording import Recorder

_Minted = tuple[Lease, IssuedCredential, AuditEntry]
_Steps = Steps


class Authorizer:
    def __init__(
        self,
        *,
        store: Store,
        policy: PolicyEngine,
        signer: GrantSigner,
        clock: Clock,
        ids: IdFactory,
        recorder: Recorder,
        approvals: ApprovalService,
        breakglass: BreakGlassService | None = None,
        flows: Flows | None = None,
        leases: LeaseService | None = None,
        limits: CallLimits | None = None,
        observer: DecisionObserver | None = None,
        loop_store: LoopDecisionLog | None = None,
        provenance: ProvenanceService | None = None,
        queued_effects: QueuedEffects | None = None,
        handed_store: HandedDecisionLog | None = None,
    ) -> None:
        """``loop_store``: the same store as ``store``, given only when its reads are safe to
        make on an event loop (:class:`~tether.service.ports.LoopDecisionLog`); without it
        ``enforce_async`` decides on a worker thread. ``handed_store``: the same store again,
        given when its reads may wait on the network (PostgreSQL) and no loop store is: then
        ``enforce_async`` reads the facts and decides on a worker thread that hands the write
        over without waiting for it, and the loop hears of the batch's commit once
        (:class:`~tether.service.ports.HandedDecisionLog`). ``provenance``: the argument provenance
        of sink arguments (its reads are the store's too). ``queued_effects``: the group
        commit effects are queued into after their call's answer (the same database): a
        decision waits for its chain's queued effects before it reads their facts."""
        self._provenance = provenance
        self._queued_effects = queued_effects
        self._limits = limits if limits is not None else CallLimits()
        self._loop_store = loop_store
        self._observer: DecisionObserver = observer if observer is not None else Unobserved()
        self._store = store
        self._policy = policy
        self._signer = signer
        self._clock = clock
        self._ids = ids
        self._rec = recorder
        self._approvals = approvals
        self._breakglass = breakglass
        self._flows = flows
        self._leases = leases
        self._handed_store = handed_store
        self._threads = DecisionThreads()

    def enforce(
        self,
        agent: Workload,
        grant_token: str,
        request: CallRequest,
        *,
        credentials: bool = False,
    ) -> Verdict:
        """The one enforcement entry of every door: check the call's input once, then decide.

        Raises :class:`~tether.core.errors.InvalidRequest` (``invalid_field`` or
        ``payload_too_large``) for input that cannot be decided on; each door maps it to its own
        wire error. Everything else is a verdict, recorded in the audit log."""
        call = checked_call(
            request.tool, request.action, request.dataset, request.args, self._limits
        )
        return self.authorize(
            agent,
            grant_token,
            call,
            request.approval_id,
            expect=request.expect,
            credentials=credentials,
        )

    def authorize(
        self,
        agent: Workload,
        grant_token: str,
        call: Call,
        approval_id: str | None = None,
        *,
        expect: Expect | None = None,
        credentials: bool = False,
    ) -> Verdict:
        """Decide ``call`` for ``agent`` holding ``grant_token``; ``approval_id`` names an
        approval a human gave for exactly this call; ``expect`` declares what a read may take
        (its budget reservation); ``credentials`` asks for the call's just-in-time credential
        on allow (only a caller that hands it to the agent asks: a credential nobody receives
        is never minted). Never raises for a well-formed call: every failure is a ``deny``
        carrying its cause."""
        with self._observer.watch(agent, call) as watch:
            steps = self._steps(agent, grant_token, call, approval_id, expect, credentials, watch)
            try:
                write = next(steps)
                while True:
                    try:
                        written = self._store.record_decision(write)
                    except Exception as error:
                        write = steps.throw(error)
                    else:
                        write = steps.send(written)
            except StopIteration as done:
                verdict: Verdict = done.value
            watch.answered(verdict)
            return verdict

    async def enforce_async(
        self,
        agent: Workload,
        grant_token: str,
        request: CallRequest,
        *,
        credentials: bool = False,
    ) -> Verdict:
        """:meth:`enforce` for a door on an event loop. With a loop store the decision runs on
        the loop and only its write leaves it (awaited from the store's writer thread); with a
        handed store it is read and decided on a worker thread and its write handed over
        (:mod:`tether.service.handoff`); otherwise, or when the call may need a credential
        minted (an issuer may wait on the network), the whole decision runs on a worker
        thread."""
        call = checked_call(
            request.tool, request.action, request.dataset, request.args, self._limits
        )
        store = self._loop_store
        leases = self._leases
        minting = credentials and leases is not None and leases.issuer_for(call.tool) is not None
        handed = self._handed_store
        if store is None and handed is not None and not minting:
            # The decision runs in a task of its own, in a context of its own that its worker
            # thread enters too (one at a time); shielded, so that a caller who stops waiting
            # leaves the decision to finish, written and observed, as a worker thread would.
            context = contextvars.copy_context()
            deciding = self._decide_handed(
                handed, context, agent, grant_token, call, request, credentials
            )
            task = asyncio.get_running_loop().create_task(deciding, context=context)
            return await asyncio.shield(task)
        if store is None or minting:
            return await asyncio.to_thread(
                self.authorize,
                agent,
                grant_token,
                call,
                request.approval_id,
                expect=request.expect,
                credentials=credentials,
            )
        with self._observer.watch(agent, call) as watch:
            steps = self._steps(
                agent, grant_token, call, request.approval_id, request.expect, credentials, watch
            )
            try:
                write = next(steps)
                while True:
                    try:
                        written = await store.record_decision_async(write)
                    except Exception as error:
                        write = steps.throw(error)
                    else:
                        write = steps.send(written)
            except StopIteration as done:
                verdict: Verdict = done.value
            watch.answered(verdict)
            return verdict

    async def _decide_handed(
        self,
        store: HandedDecisionLog,
        context: contextvars.Context,
        agent: Workload,
        grant_token: str,
        call: Call,
        request: CallRequest,
        credentials: bool,
    ) -> Verdict:
        """The decision on a store whose reads may wait on the network, in a task running in
        ``context``: its facts read and the call decided on a worker thread, which hands the
        write over without waiting; the loop hears of its batch's commit once
        (:mod:`tether.service.handoff`)."""
        with self._observer.watch(agent, call) as watch:
            steps = self._steps(
                agent, grant_token, call, request.approval_id, request.expect, credentials, watch
            )
            verdict = await self._threads.decide(steps, store, context)
            watch.answered(verdict)
            return verdict

    def _steps(
        self,
        agent: Workload,
        grant_token: str,
        call: Call,
        approval_id: str | None,
        expect: Expect | None,
        credentials: bool,
        watch: DecisionWatch,
    ) -> _Steps:
        now = self._clock.now()  # the one reading of the clock for this decision
        decision_id = self._ids.decision()
        facts = CallFacts(agent.id, call, now, TokenStatus.INVALID)
        try:
            facts = self._facts(agent, grant_token, call, now)
            decided = self._decide(agent, facts, approval_id, expect)
        except TetherError as error:
            decided = unreadable(error.message)
        new_approval = None
        if decided.draft_approval:
            try:
                new_approval = self._draft(agent, facts, decided, decision_id, now)
            except TetherError as error:
                decided = unreadable(error.message, decided.risks)
            else:
                decided = replace(decided, approval_ref=new_approval[0].approval_id)
        minted = None
        if credentials and decided.decision is Decision.ALLOW:
            try:
                minted = self._mint(agent, call, decided, decision_id, now)
            except TetherError as error:
                # Fail closed: an allow whose credential cannot be minted is a deny.
                decided = refuse(
                    decided,
                    ReasonCode.CREDENTIAL_UNAVAILABLE,
                    "the call is allowed but its credential could not be issued, so it is "
                    f"denied: {error.message}",
                )
        try:
            verdict = yield from self._record(
                agent, call, decided, decision_id, now, watch, expect, facts, minted, new_approval
            )
        except BudgetExceeded as exceeded:
            over = refuse(
                decided, ReasonCode.BUDGET_EXCEEDED, exceeded.message, (Risk.ASI02, Risk.ASI08)
            )
            verdict = yield from self._record_or_deny(agent, call, over, decision_id, now, watch)
        except Conflict:
            # Another retry used the approval between our check and our write: used once.
            used = refuse(
                decided,
                ReasonCode.APPROVAL_USED,
                "the approval was already used; each approval allows one call",
                (Risk.ASI09,),
            )
            verdict = yield from self._record_or_deny(agent, call, used, decision_id, now, watch)
        except TetherError as error:
            verdict = self._verdict(unrecorded(decided, error.message), decision_id, now)
        if minted is not None and self._leases is not None and verdict.credential is None:
            # Minted, but the allow was not recorded: the credential must not outlive this call.
            self._leases.discard(minted[0])
        if new_approval is not None and verdict.decision is Decision.APPROVAL_REQUIRED:
            self._approvals.announce(new_approval[0])
        return verdict

    # -- facts -----------------------------------------------------------------------------

    def _facts(self, agent: Workload, grant_token: str, call: Call, now: datetime) -> CallFacts:
        """What the decision needs, read once: the token, then (for a token bound to the
        caller) the grant, its task and the task's delegation chain."""
        try:
            claims = self._signer.verify(grant_token, now)
        except Unauthenticated as error:
            expired = getattr(error, "expired", False)
            status = TokenStatus.EXPIRED if expired else TokenStatus.INVALID
            return CallFacts(agent.id, call, now, status)
        valid = TokenStatus.VALID
        if claims.agent != agent.id:
            # Not bound to the caller: nothing more is read for it.
            return CallFacts(agent.id, call, now, valid, token_agent=claims.agent)
        grant, task = self._store.get_grant_with_task(claims.grant_id)
        if grant is None or task is None:
            return CallFacts(agent.id, call, now, valid, token_agent=claims.agent, grant=grant)
        flows = self._flows
        chain = tuple(flows.chain(task)) if flows is not None else (task,)
        if self._queued_effects is not None:
            # INVARIANT: the effects an earlier call queued on this chain are committed before
            # its facts (budget usage, history, observations) are read; else this call denies.
            self._queued_effects.wait_for_effects([t.task_id for t in chain])
        # Built whole, not by dataclasses.replace: this runs on every decision.
        return CallFacts(
            agent.id,
            call,
            now,
            valid,
            token_agent=claims.agent,
            grant=grant,
            chain=chain,
            classification=self._policy.classification(call.dataset) if call.dataset else None,
            workflow=flows.workflows.get(chain[-1].intent.workflow) if flows else None,
            egress=flows.egress if flows is not None else EgressRules(),
            # -- argument provenance: what the chain observed, for a tool with sinks --
            provenance=(
                self._provenance.assess(chain, call)
                if self._provenance is not None
                else NO_PROVENANCE
            ),
        )

    def _decide(
        self,
        agent: Workload,
        facts: CallFacts,
        approval_id: str | None,
        expect: Expect | None,
    ) -> Decided:
        """The pure decision, with the policy engine's answer and whatever later facts (anomaly,
        break-glass, approvals) the decision turns out to need."""
        screened = screen(facts)
        outcome = None
        if screened.denied is None:
            outcome = self._ask_policy(agent, facts)
        late = LateFacts(anomaly=self._anomaly(facts, outcome, expect))
        decided = decide(facts, outcome, late, screened=screened)
        task = decided.task
        if needs_breakglass(decided) and self._breakglass is not None and task is not None:
            active = self._breakglass.active_for(task.task_id, agent.id)
            if active is not None:
                late = replace(late, breakglass=active)
                decided = decide(facts, outcome, late, screened=screened)
        if needs_approval(decided) and task is not None:
            if approval_id is not None:
                approval = (
                    self._store.get_approval(ApprovalId(approval_id))
                    if is_well_formed(approval_id, IdKind.APPROVAL)
                    else None
                )
                late = replace(
                    late,
                    approval_id=approval_id,
                    approval=approval,
                    args_mac=self._approvals.args_mac(facts.call),
                )
            else:
                late = replace(late, pending=self._approvals.pending_for(agent, task, facts.call))
            decided = decide(facts, outcome, late, screened=screened)
        return decided

    def _ask_policy(self, agent: Workload, facts: CallFacts) -> PolicyOutcome:
        grant, task = facts.grant, facts.task
        assert grant is not None and task is not None  # screen() passed: both were found
        label = facts.label
        return self._policy.decide(
            PolicyRequest(
                agent=agent,
                call=facts.call,
                classification=facts.classification,
                intent=task.intent,
                task_id=task.task_id,
                delegators=grant.delegators,
                dataflow=Classification(label) if label else None,
                provenance=facts.provenance,
            )
        )

    def _anomaly(
        self, facts: CallFacts, outcome: PolicyOutcome | None, expect: Expect | None
    ) -> Reason | None:
        """The anomaly signal, read only for a read that policy does not deny."""
        task = facts.task
        if (
            self._flows is None
            or outcome is None
            or outcome.decision is Decision.DENY
            or task is None
            or facts.call.action is not ActionKind.READ
        ):
            return None
        return self._flows.anomaly(task, facts.call, expect)

    # -- what the decision implies ---------------------------------------------------------

    def _draft(
        self,
        agent: Workload,
        facts: CallFacts,
        decided: Decided,
        decision_id: DecisionId,
        now: datetime,
    ) -> tuple[Approval, AuditEntry]:
        grant, task = decided.grant, decided.task
        assert grant is not None and task is not None  # an approval is only drafted for both
        return self._approvals.draft(
            agent=agent,
            task=task,
            grant=grant,
            call=facts.call,
            decision_id=decision_id,
            classification=facts.classification,
            why=[r.message for r in decided.reasons],
            policy_ids=decided.policy_ids,
            required=decided.approvers,
        )

    def _mint(
        self, agent: Workload, call: Call, decided: Decided, decision_id: DecisionId, now: datetime
    ) -> _Minted | None:
        if self._leases is None or decided.grant is None or decided.task is None:
            return None
        return self._leases.mint(agent, decided.task, decided.grant, call, decision_id, now)

    def _verdict(
        self,
        decided: Decided,
        decision_id: DecisionId,
        now: datetime,
        minted: _Minted | None = None,
    ) -> Verdict:
        return verdict_of(
            decided,
            decision_id,
            self._policy.revision,
            now,
            lease=minted[0] if minted is not None else None,
            credential=minted[1] if minted is not None else None,
        )

    def _record_or_deny(
        self,
        agent: Workload,
        call: Call,
        decided: Decided,
        decision_id: DecisionId,
        now: datetime,
        watch: DecisionWatch,
    ) -> _Steps:
        try:
            return (yield from self._record(agent, call, decided, decision_id, now, watch))
        except TetherError as error:
            return self._verdict(unrecorded(decided, error.message), decision_id, now)

    def _record(
        self,
        agent: Workload,
        call: Call,
        decided: Decided,
        decision_id: DecisionId,
        now: datetime,
        watch: DecisionWatch,
        expect: Expect | None = None,
        facts: CallFacts | None = None,
        minted: _Minted | None = None,
        new_approval: tuple[Approval, AuditEntry] | None = None,
    ) -> _Steps:
        """Record ``decided`` with its audit record and everything it implies, in one
        transaction (the write it yields); the verdict it answers."""
        budget: BudgetCharge | None = None
        if (
            facts is not None
            and self._flows is not None
            and decided.decision is Decision.ALLOW
            and decided.chain
        ):
            budget = self._flows.charge(
                decided.chain, call, facts.classification, expect, now, decided.step
            )
        verdict = self._verdict(decided, decision_id, now, minted)
        grant, task = decided.grant, decided.task
        record = DecisionRecord(
            decision_id=decision_id,
            task_id=TaskId(task.task_id) if task is not None else None,
            grant_id=GrantId(grant.grant_id) if grant is not None else None,
            agent=agent.id,
            tool=call.tool,
            action=call.action,
            dataset=call.dataset,
            decision=verdict.decision,
            decided_at=now,
        )
        body: dict[str, JSONValue] = {
            "decision_id": decision_id,
            "grant_id": record.grant_id,
            "intent": task.intent.to_json() if task is not None else None,
            "call": self._rec.call(call),
            "verdict": verdict.to_json(),
        }
        kind = AuditKind.DECISION
        if decided.breakglass is not None:
            # Its own audit class: every call break-glass allowed stands out in the log.
            kind = AuditKind.BREAKGLASS_DECISION
            body["breakglass_id"] = decided.breakglass.breakglass_id
            if decided.overridden is not None:
                decision, reasons = decided.overridden
                body["policy_would_have"] = {
                    "decision": decision.value,
                    "reasons": [r.to_json() for r in reasons],
                }
        body.update(decided.audit_extra())
        entry = self._rec.entry(kind, now, agent=agent.id, task_id=record.task_id, body=body)
        if budget is not None:
            body["budget_holds"] = [
                {
                    "task_id": h.task_id,
                    "kind": h.kind.value,
                    "classification": h.classification,
                    "amount": h.amount,
                    **({"step": h.step} if h.step is not None else {}),
                }
                for h in budget.holds
            ]
        with watch.writing(record):
            written = yield DecisionWrite(
                record,
                entry,
                new_approval=(
                    new_approval if verdict.decision is Decision.APPROVAL_REQUIRED else None
                ),
                use_approval=decided.use_approval if verdict.decision is Decision.ALLOW else None,
                budget=budget,
                progress=decided.progress if verdict.decision is Decision.ALLOW else (),
                lease=(minted[0], minted[2]) if minted is not None else None,
            )
        watch.written(record, written.seq)
        return verdict
