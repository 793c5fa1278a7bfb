"""The use cases, observed: each one traced, authorize counted and logged, decision writes timed.

These are the service classes themselves with the public use cases wrapped, built by
:func:`tether.runtime.open_runtime` in their place, so every entry point (HTTP, AuthZEN, the MCP
gateway, the egress proxy) is observed alike and the service package knows nothing of
OpenTelemetry, Prometheus or structlog. The decision pipeline is untouched: a wrapper only reads
what went in and what came out.

One authorize runs in a copy of the caller's context, so what it binds for its log lines (agent,
tool, then decision id and task id once the decision is recorded) ends with it.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.trace import Span, Tracer, format_trace_id
from structlog.contextvars import bind_contextvars

from tether.core.audit import AuditRecord
from tether.core.budget import Budgets
from tether.core.call import Call
from tether.core.effect import Effect, EffectStatus
from tether.core.identity import Workload
from tether.core.ids import DecisionId, TaskId
from tether.core.scope import Scope
from tether.core.task import Intent, Task
from tether.core.verdict import Verdict
from tether.logs import get_logger
from tether.observability import Observability
from tether.observability import tracing as t
from tether.observability.metrics import Metrics, first_reason
from tether.service.authorize import Authorizer
from tether.service.effects import EffectService
from tether.service.ports import AuditEntry, DecisionRecord, Store
from tether.service.tasks import OpenedTask, TaskService

log = get_logger("tether.decisions")

#: The decision the store recorded during the current authorize (for its task id).
_recorded: contextvars.ContextVar[DecisionRecord | None] = contextvars.ContextVar(
    "tether_recorded_decision", default=None
)


class TimedStore:
    """``store``, with each decision write timed, traced, and named in the log context.

    Everything else passes through unchanged. ``record_decision`` forwards whatever options the
    store takes (approvals, budget, progress, leases...), so the store may grow new ones.
    """

    __slots__ = ("_metrics", "_store", "_tracer")

    def __init__(self, store: Store, metrics: Metrics, tracer: Tracer) -> None:
        self._store = store
        self._metrics = metrics
        self._tracer = tracer

    def record_decision(
        self, decision: DecisionRecord, audit: AuditEntry, **changes: Any
    ) -> AuditRecord:
        with self._tracer.start_as_current_span(
            t.AUDIT_APPEND, attributes={t.DECISION_ID: decision.decision_id}
        ) as span:
            started = time.perf_counter()
            try:
                record = self._store.record_decision(decision, audit, **changes)
            finally:
                self._metrics.audit_append(time.perf_counter() - started)
            span.set_attribute(t.AUDIT_SEQ, record.seq)
        _recorded.set(decision)
        # From here on, every log line of this request names the decision it made.
        bind_contextvars(decision_id=decision.decision_id)
        if decision.task_id is not None:
            bind_contextvars(task_id=decision.task_id)
        return record

    def __getattr__(self, name: str) -> Any:
        if name in TimedStore.__slots__:  # not set yet: never recurse looking for it
            raise AttributeError(name)
        return getattr(self._store, name)


class ObservedAuthorizer(Authorizer):
    """:class:`Authorizer` whose every verdict is traced, counted and logged in one line."""

    # The dependencies pass through as they are, so the authorizer may gain new ones.
    def __init__(self, observability: Observability, *, store: Store, **deps: Any) -> None:
        super().__init__(
            store=TimedStore(store, observability.metrics, observability.tracer), **deps
        )
        self.__observability = observability

    def authorize(
        self,
        agent: Workload,
        grant_token: str,
        call: Call,
        approval_id: str | None = None,
        **options: Any,
    ) -> Verdict:
        return contextvars.copy_context().run(
            self.__authorize, agent, grant_token, call, approval_id, options
        )

    def __authorize(
        self,
        agent: Workload,
        grant_token: str,
        call: Call,
        approval_id: str | None,
        options: dict[str, Any],
    ) -> Verdict:
        obs = self.__observability
        _recorded.set(None)
        bind_contextvars(agent=agent.id, tool=call.tool, action=call.action.value)
        attributes = {t.AGENT: agent.id, t.TOOL: call.tool, t.ACTION: call.action.value}
        if call.dataset is not None:
            attributes[t.DATASET] = call.dataset
        with obs.tracer.start_as_current_span(t.AUTHORIZE, attributes=attributes) as span:
            _bind_trace(span)
            verdict = super().authorize(agent, grant_token, call, approval_id, **options)
            recorded = _recorded.get()
            reason = first_reason(verdict)
            span.set_attributes(
                {
                    t.DECISION: verdict.decision.value,
                    t.DECISION_ID: verdict.decision_id,
                    t.REASON: reason,
                    t.POLICY_REVISION: verdict.policy_revision,
                }
            )
            if recorded is not None and recorded.task_id is not None:
                span.set_attribute(t.TASK_ID, recorded.task_id)
        obs.metrics.decision(verdict, call.tool)
        bind_contextvars(decision_id=verdict.decision_id)
        log.info("decision", decision=verdict.decision.value, reason=reason)
        return verdict


class ObservedTaskService(TaskService):
    """:class:`TaskService` with opening, delegating and closing a task traced."""

    def __init__(self, observability: Observability, **deps: Any) -> None:
        super().__init__(**deps)
        self.__tracer = observability.tracer

    def open_task(
        self,
        agent: Workload,
        intent: Intent,
        requested: Sequence[Scope],
        ttl_seconds: int | None = None,
        budgets: Budgets | None = None,
    ) -> OpenedTask:
        with self.__tracer.start_as_current_span(
            t.TASK_OPEN,
            attributes={
                t.AGENT: agent.id,
                t.WORKFLOW: intent.workflow,
                "tether.scopes.requested": len(requested),
            },
        ) as span:
            opened = super().open_task(agent, intent, requested, ttl_seconds, budgets)
            span.set_attributes(
                {
                    t.TASK_ID: opened.task.task_id,
                    "tether.scopes.granted": len(opened.grant.scopes),
                    "tether.scopes.refused": len(opened.refused),
                }
            )
        return opened

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
        with self.__tracer.start_as_current_span(
            t.TASK_DELEGATE,
            attributes={
                t.AGENT: parent_agent.id,
                t.TASK_ID: task_id,
                "tether.child.agent": child.id,
            },
        ) as span:
            opened = super().delegate(
                parent_agent, task_id, grant_token, child, requested, ttl_seconds, budgets
            )
            span.set_attributes(
                {
                    "tether.child.task_id": opened.task.task_id,
                    "tether.delegation.depth": opened.grant.depth,
                }
            )
        return opened

    def close_task(self, agent: Workload, task_id: TaskId) -> Task:
        with self.__tracer.start_as_current_span(
            t.TASK_CLOSE, attributes={t.AGENT: agent.id, t.TASK_ID: task_id}
        ) as span:
            task = super().close_task(agent, task_id)
            span.set_attribute("tether.task.state", task.state.value)
        return task


class ObservedEffectService(EffectService):
    """:class:`EffectService` with each reported effect traced (counts, never recipients)."""

    def __init__(self, observability: Observability, **deps: Any) -> None:
        super().__init__(**deps)
        self.__tracer = observability.tracer

    def report(
        self,
        agent: Workload,
        decision_id: DecisionId,
        status: EffectStatus,
        records: int | None = None,
        bytes_: int | None = None,
        recipients: Sequence[str] = (),
    ) -> Effect:
        attributes: dict[str, str | int] = {
            t.AGENT: agent.id,
            t.DECISION_ID: decision_id,
            "tether.effect.status": status.value,
            "tether.effect.recipients": len(recipients),
        }
        if records is not None:
            attributes["tether.effect.records"] = records
        if bytes_ is not None:
            attributes["tether.effect.bytes"] = bytes_
        with self.__tracer.start_as_current_span(t.EFFECT, attributes=attributes):
            return super().report(agent, decision_id, status, records, bytes_, recipients)


def _bind_trace(span: Span) -> None:
    """Put the trace id in the log context, so log lines and traces can be joined."""
    context = span.get_span_context()
    if context.is_valid:
        bind_contextvars(trace_id=format_trace_id(context.trace_id))
