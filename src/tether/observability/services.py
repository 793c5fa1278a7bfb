"""The use cases, observed: decisions through the authorizer's observer port, task and effect
use cases wrapped; each one traced, decisions counted and logged, decision writes timed.

:class:`DecisionTelemetry` is the authorizer's :class:`~tether.service.observer.DecisionObserver`;
the task and effect services are wrapped, built by :func:`tether.runtime.open_runtime` in their
place. Every entry point (HTTP, AuthZEN, the MCP gateway, the egress proxy) is observed alike and
the service package knows nothing of OpenTelemetry, Prometheus or structlog. Observing only reads
what went in and what came out.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanContext, format_trace_id
from structlog.contextvars import bind_contextvars, reset_contextvars

from tether.core.budget import Budgets
from tether.core.call import Call
from tether.core.effect import Effect, EffectStatus
from tether.core.identity import Workload
from tether.core.ids import DecisionId, TaskId
from tether.core.scope import Scope
from tether.core.task import Intent, Task
from tether.core.verdict import Verdict
from tether.logs import enabled as logs_enabled
from tether.logs import get_logger
from tether.observability import Observability
from tether.observability import tracing as t
from tether.observability.metrics import first_reason
from tether.service.effects import EffectService
from tether.service.observer import DecisionWatch
from tether.service.ports import DecisionRecord, ObservedRows
from tether.service.tasks import OpenedTask, TaskService

log = get_logger("tether.decisions")


class _Telemetry:
    """One decision, watched: its span (``None`` when no trace is exported), its log context,
    the timing of its write."""

    def __init__(self, observability: Observability, span: Span | None, tool: str) -> None:
        self._obs = observability
        self._span = span
        self._tool = tool
        self._tokens: list[Mapping[str, contextvars.Token[Any]]] = []
        self._task_id: str | None = None
        self._bound_decision = False

    def bind(self, **values: Any) -> None:
        self._tokens.append(bind_contextvars(**values))

    def unbind(self) -> None:
        # Undo our bindings newest first, so the caller's own context comes back as it was.
        for tokens in reversed(self._tokens):
            reset_contextvars(**tokens)
        self._tokens.clear()

    @contextmanager
    def writing(self, decision: DecisionRecord) -> Iterator[None]:
        started = time.perf_counter()
        try:
            if self._span is None:
                yield
            else:
                with self._obs.tracer.start_as_current_span(
                    t.AUDIT_APPEND, attributes={t.DECISION_ID: decision.decision_id}
                ):
                    yield
        finally:
            self._obs.metrics.audit_append(time.perf_counter() - started)

    def written(self, decision: DecisionRecord, seq: int) -> None:
        if self._span is not None:
            trace.get_current_span().set_attribute(t.AUDIT_SEQ, seq)
        self._task_id = decision.task_id
        # From here on, every log line of this request names the decision it made.
        if decision.task_id is not None:
            self.bind(decision_id=decision.decision_id, task_id=decision.task_id)
        else:
            self.bind(decision_id=decision.decision_id)
        self._bound_decision = True

    def answered(self, verdict: Verdict) -> None:
        reason = first_reason(verdict)
        span = self._span
        if span is not None:
            span.set_attributes(
                {
                    t.DECISION: verdict.decision.value,
                    t.DECISION_ID: verdict.decision_id,
                    t.REASON: reason,
                    t.POLICY_REVISION: verdict.policy_revision,
                }
            )
            if self._task_id is not None:
                span.set_attribute(t.TASK_ID, self._task_id)
        self._obs.metrics.decision(verdict, self._tool, reason)
        if not self._bound_decision:
            self.bind(decision_id=verdict.decision_id)  # an unrecorded verdict has one too
        if logs_enabled(logging.INFO):
            log.info("decision", decision=verdict.decision.value, reason=reason)


class DecisionTelemetry:
    """The :class:`~tether.service.observer.DecisionObserver` of a running tether: every
    decision traced (a span with the call and the verdict), counted, logged in one line, and
    its durable write timed. What it binds for its log lines ends with the decision.

    Decisions are the hot path, so nothing is made that nobody receives: no span object while
    the tracer exports nothing (:class:`~tether.observability.tracing.ExportGate`; a caller's
    trace id still joins the log context), the counter's children bound once, and the log line
    built only when its level is written."""

    def __init__(self, observability: Observability) -> None:
        self._obs = observability
        self._exports = t.ExportGate(observability.tracer)

    @contextmanager
    def watch(self, agent: Workload, call: Call) -> Iterator[DecisionWatch]:
        if not self._exports():
            telemetry = _Telemetry(self._obs, None, call.tool)
            self._bind_call(telemetry, agent, call, trace.get_current_span().get_span_context())
            try:
                yield telemetry
            finally:
                telemetry.unbind()
            return
        attributes = {t.AGENT: agent.id, t.TOOL: call.tool, t.ACTION: call.action.value}
        if call.dataset is not None:
            attributes[t.DATASET] = call.dataset
        with self._obs.tracer.start_as_current_span(t.AUTHORIZE, attributes=attributes) as span:
            telemetry = _Telemetry(self._obs, span, call.tool)
            self._bind_call(telemetry, agent, call, span.get_span_context())
            try:
                yield telemetry
            finally:
                telemetry.unbind()

    @staticmethod
    def _bind_call(
        telemetry: _Telemetry, agent: Workload, call: Call, context: SpanContext
    ) -> None:
        if context.is_valid:
            # The trace id in the log context, so log lines and traces can be joined.
            telemetry.bind(
                agent=agent.id,
                tool=call.tool,
                action=call.action.value,
                trace_id=format_trace_id(context.trace_id),
            )
        else:
            telemetry.bind(agent=agent.id, tool=call.tool, action=call.action.value)


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
        request: str | None = None,
    ) -> OpenedTask:
        with self.__tracer.start_as_current_span(
            t.TASK_OPEN,
            attributes={
                t.AGENT: agent.id,
                t.WORKFLOW: intent.workflow,
                "tether.scopes.requested": len(requested),
            },
        ) as span:
            opened = super().open_task(agent, intent, requested, ttl_seconds, budgets, request)
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
        observed: ObservedRows | None = None,
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
            return super().report(agent, decision_id, status, records, bytes_, recipients, observed)
