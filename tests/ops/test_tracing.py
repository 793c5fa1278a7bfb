"""OpenTelemetry spans of task open, authorize and effect: recorded by the SDK's in-memory
exporter behind a real server, and exported over OTLP/HTTP by a real ``tether serve``."""

from __future__ import annotations

import gzip
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from ops_support import (
    CRM_READ,
    READ_CRM,
    observed_runtime,
    observed_server,
    open_task,
    serve_process,
    svid_for,
)

from tether.observability import Observability
from tether.runtime import Runtime
from tether.service.clock import ManualClock


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def runtime(tmp_path: Path, clock: ManualClock, spans: InMemorySpanExporter) -> Iterator[Runtime]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    rt = observed_runtime(
        tmp_path / "data", clock, Observability(tracer=provider.get_tracer("test"))
    )
    yield rt
    rt.close()
    provider.shutdown()


@pytest.fixture
def base_url(runtime: Runtime) -> Iterator[str]:
    with observed_server(runtime) as url:
        yield url


@pytest.fixture
def svid(runtime: Runtime, clock: ManualClock) -> str:
    return svid_for(runtime.config.data_dir, "analyst", clock.now())


def post(
    base_url: str, path: str, svid: str, body: dict[str, object], **headers: str
) -> httpx.Response:
    return httpx.post(
        f"{base_url}{path}",
        json=body,
        headers={"Authorization": f"Bearer {svid}", **headers},
        timeout=30,
    )


def named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.name == name]


def test_task_open_authorize_and_effect_are_spans_with_the_decision(
    base_url: str, svid: str, spans: InMemorySpanExporter
) -> None:
    opened = open_task(base_url, svid)
    verdict = post(base_url, "/v1/authorize", svid, {"grant": opened["grant"], **READ_CRM}).json()
    effect = post(
        base_url,
        "/v1/effects",
        svid,
        {"decision_id": verdict["decision_id"], "status": "ok", "records": 3},
    )
    assert effect.status_code == 201, effect.text

    (task_open,) = named(spans, "tether.task.open")
    assert task_open.attributes is not None
    assert task_open.attributes["tether.task_id"] == opened["task_id"]
    assert task_open.attributes["tether.workflow"] == "support-triage"
    assert task_open.attributes["tether.scopes.granted"] == 1

    (decided,) = named(spans, "tether.authorize")
    assert decided.attributes is not None
    assert decided.attributes["tether.decision"] == "allow"
    assert decided.attributes["tether.tool"] == "crm.query"
    assert decided.attributes["tether.decision_id"] == verdict["decision_id"]
    assert decided.attributes["tether.task_id"] == opened["task_id"]
    assert decided.attributes["tether.agent"] == "spiffe://tether.local/agent/analyst"

    (append,) = named(spans, "tether.audit.append")
    assert append.parent is not None and decided.context is not None
    assert append.parent.span_id == decided.context.span_id
    assert append.attributes is not None
    assert append.attributes["tether.decision_id"] == verdict["decision_id"]

    (reported,) = named(spans, "tether.effect")
    assert reported.attributes is not None
    assert reported.attributes["tether.decision_id"] == verdict["decision_id"]
    assert reported.attributes["tether.effect.records"] == 3


def test_a_deny_span_names_its_reason(
    base_url: str, svid: str, spans: InMemorySpanExporter
) -> None:
    grant = open_task(base_url, svid)["grant"]
    verdict = post(
        base_url,
        "/v1/authorize",
        svid,
        {"grant": grant, "tool": "crm.query", "action": "read", "dataset": "payroll"},
    ).json()

    (decided,) = named(spans, "tether.authorize")
    assert decided.attributes is not None
    assert decided.attributes["tether.decision"] == "deny"
    assert decided.attributes["tether.reason"] == "dataset_not_in_scope"
    assert decided.attributes["tether.decision_id"] == verdict["decision_id"]


def test_spans_never_carry_tokens_or_argument_values(
    base_url: str, svid: str, spans: InMemorySpanExporter
) -> None:
    opened = open_task(base_url, svid, CRM_READ)
    secret_arg = "c-918273645"
    verdict = post(
        base_url,
        "/v1/authorize",
        svid,
        {"grant": opened["grant"], **READ_CRM, "args": {"customer": secret_arg}},
    ).json()
    assert verdict["decision"] == "allow"

    values = [
        str(v) for span in spans.get_finished_spans() for v in (span.attributes or {}).values()
    ]
    assert values
    for secret in (svid, str(opened["grant"]), secret_arg):
        assert not any(secret in v for v in values)


def test_a_callers_traceparent_makes_tethers_spans_its_children(
    base_url: str, svid: str, spans: InMemorySpanExporter
) -> None:
    grant = open_task(base_url, svid)["grant"]
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    post(
        base_url,
        "/v1/authorize",
        svid,
        {"grant": grant, **READ_CRM},
        traceparent=f"00-{trace_id}-{parent_id}-01",
    )

    (decided,) = named(spans, "tether.authorize")
    assert decided.context is not None and decided.parent is not None
    assert decided.context.trace_id == int(trace_id, 16)
    assert decided.parent.span_id == int(parent_id, 16)
    assert decided.parent.is_remote


class _Collector(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP trace receiver: keeps every export request it is sent."""

    received: list[ExportTraceServiceRequest]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        if self.path == "/v1/traces":
            self.received.append(request)
        self.send_response(200 if self.path == "/v1/traces" else 404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    received: list[ExportTraceServiceRequest] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_serve_exports_spans_to_an_otlp_endpoint(
    tmp_path: Path, collector: tuple[str, list[ExportTraceServiceRequest]]
) -> None:
    endpoint, received = collector
    data_dir = tmp_path / "data"
    with serve_process(data_dir, "--otlp-endpoint", endpoint) as server:
        svid = svid_for(data_dir, "analyst")
        grant = open_task(server.base_url, svid)["grant"]
        verdict = post(server.base_url, "/v1/authorize", svid, {"grant": grant, **READ_CRM}).json()
        server.stop()  # SIGTERM: the graceful shutdown flushes the batch of spans

    exported = {
        span.name: {a.key: a.value.string_value for a in span.attributes}
        for request in received
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    }
    assert exported["tether.authorize"]["tether.decision_id"] == verdict["decision_id"]
    assert exported["tether.authorize"]["tether.decision"] == "allow"
    assert "tether.task.open" in exported
    services = {
        a.value.string_value
        for request in received
        for resource in request.resource_spans
        for a in resource.resource.attributes
        if a.key == "service.name"
    }
    assert services == {"tether"}


def test_the_otel_environment_exports_tethers_spans_and_no_http_framework_spans(
    tmp_path: Path, collector: tuple[str, list[ExportTraceServiceRequest]]
) -> None:
    # tether's spans are the documented set (tether.observability.tracing). The HTTP framework,
    # asked through the environment, would read the same OTEL_* variables, install exporters of
    # its own and add a span for every request (the hot path's too) unless tether turns it off.
    endpoint, received = collector
    data_dir = tmp_path / "data"
    environment = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "FASTAPI_OTEL_AUTO_CONFIGURE": "true"}
    with serve_process(data_dir, env=environment) as server:
        svid = svid_for(data_dir, "analyst")
        grant = open_task(server.base_url, svid)["grant"]
        verdict = post(server.base_url, "/v1/authorize", svid, {"grant": grant, **READ_CRM}).json()
        assert verdict["decision"] == "allow", verdict
        server.stop()

    names = {
        span.name
        for request in received
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    }
    assert {"tether.task.open", "tether.authorize"} <= names
    assert {name for name in names if not name.startswith("tether.")} == set()


def test_serve_refuses_an_otlp_endpoint_that_is_not_http(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tether", "serve", "-d", str(tmp_path / "data")],
        env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://collector:4318"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "the OTLP endpoint must be an http:// or https:// URL" in result.stderr
