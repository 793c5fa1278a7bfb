"""The decision observer on the hot path: no span object while no trace is exported, the full
span when one is; the counters either way. Real runtime (SQLite, Cedar), decided through
``enforce_async`` on an event loop as ``POST /v1/authorize`` decides."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracer, Span
from ops_support import CRM_READ, observed_runtime
from prometheus_client.parser import text_string_to_metric_families

from support import INTENT
from tether.core.identity import Workload
from tether.core.scope import ActionKind, Scope
from tether.core.task import Intent
from tether.core.verdict import Decision, Verdict
from tether.observability import Observability
from tether.observability.tracing import default_tracer, exports
from tether.runtime import Runtime
from tether.service.clock import ManualClock
from tether.service.enforce import CallRequest

ANALYST = Workload.from_spiffe_id("spiffe://tether.local/agent/analyst")


class CountingTracer(NoOpTracer):
    """The API's no-op tracer (what a process without an exporter has), counting the spans
    asked of it."""

    def __init__(self) -> None:
        self.started = 0

    def start_span(self, *args: Any, **kwargs: Any) -> Span:
        self.started += 1
        return super().start_span(*args, **kwargs)


def grant(runtime: Runtime) -> str:
    opened = runtime.tasks.open_task(
        ANALYST, Intent(**INTENT), [Scope.from_json(CRM_READ)], ttl_seconds=600
    )
    return opened.token


def decide(runtime: Runtime, dataset: str, token: str | None = None) -> Verdict:
    request = CallRequest("crm.query", ActionKind.READ, dataset, {})
    token = token if token is not None else grant(runtime)
    return asyncio.run(runtime.authorizer.enforce_async(ANALYST, token, request))


def samples(runtime: Runtime) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = runtime.observability.metrics.exposition().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def untraced(tmp_path: Path, clock: ManualClock) -> Iterator[tuple[Runtime, CountingTracer]]:
    tracer = CountingTracer()
    runtime = observed_runtime(tmp_path / "data", clock, Observability(tracer=tracer))
    yield runtime, tracer
    runtime.close()


@pytest.fixture
def traced(tmp_path: Path, clock: ManualClock) -> Iterator[tuple[Runtime, InMemorySpanExporter]]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = provider.get_tracer("test")
    runtime = observed_runtime(tmp_path / "data", clock, Observability(tracer=tracer))
    yield runtime, spans
    runtime.close()
    provider.shutdown()


def test_without_an_exporter_a_decision_starts_no_span_and_is_still_counted(
    untraced: tuple[Runtime, CountingTracer],
) -> None:
    runtime, tracer = untraced
    token = grant(runtime)
    before = tracer.started
    verdict = decide(runtime, "crm", token)
    assert verdict.decision is Decision.ALLOW, verdict.reasons

    assert tracer.started == before
    found = samples(runtime)
    allowed = frozenset({("decision", "allow"), ("tool", "crm.query"), ("reason", "")})
    assert found[("tether_decisions_total", allowed)] == 1
    assert found[("tether_audit_append_seconds_count", frozenset())] == 1


def test_with_an_exporter_the_decision_span_carries_the_call_and_the_verdict(
    traced: tuple[Runtime, InMemorySpanExporter],
) -> None:
    runtime, spans = traced
    allowed = decide(runtime, "crm")
    denied = decide(runtime, "payroll")
    assert allowed.decision is Decision.ALLOW and denied.decision is Decision.DENY

    finished = spans.get_finished_spans()
    decided = [s for s in finished if s.name == "tether.authorize"]
    assert [dict(s.attributes or {})["tether.decision_id"] for s in decided] == [
        allowed.decision_id,
        denied.decision_id,
    ]
    first = dict(decided[0].attributes or {})
    assert first["tether.agent"] == ANALYST.id
    assert first["tether.tool"] == "crm.query"
    assert first["tether.action"] == "read"
    assert first["tether.dataset"] == "crm"
    assert first["tether.decision"] == "allow"
    assert first["tether.reason"] == ""
    assert first["tether.policy_revision"] == allowed.policy_revision
    assert str(first["tether.task_id"]).startswith("tsk_")
    second = dict(decided[1].attributes or {})
    assert second["tether.decision"] == "deny"
    assert second["tether.reason"] == "dataset_not_in_scope"

    appends = [s for s in finished if s.name == "tether.audit.append"]
    assert [dict(s.attributes or {})["tether.decision_id"] for s in appends] == [
        allowed.decision_id,
        denied.decision_id,
    ]
    for append, parent in zip(appends, decided, strict=True):
        assert append.parent is not None and parent.context is not None
        assert append.parent.span_id == parent.context.span_id
    counted = samples(runtime)
    deny = frozenset(
        {("decision", "deny"), ("tool", "crm.query"), ("reason", "dataset_not_in_scope")}
    )
    assert counted[("tether_decisions_total", deny)] == 1


def test_the_global_tracer_exports_only_once_a_provider_is_installed() -> None:
    # No test installs a global provider (it can be set once per process): without one, the
    # global tracer exports nothing; an SDK tracer always does.
    assert not exports(default_tracer())
    assert not exports(NoOpTracer())
    assert exports(TracerProvider().get_tracer("test"))
