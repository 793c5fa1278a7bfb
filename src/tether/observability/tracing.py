"""OpenTelemetry traces of the use cases, and the OTLP exporter ``tether serve`` can start.

tether itself depends on ``opentelemetry-api`` only. Without an endpoint its spans go to the
tracer provider the embedding process installed, or nowhere (the API's no-op). With one
(``tether serve --otlp-endpoint URL`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``), the SDK and the OTLP/HTTP
exporter of the ``otel`` extra export them in batches; the exporter's other ``OTEL_*`` settings
(headers, timeout, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``) apply as usual.

The spans, and the attributes they carry::

    tether.task.open       tether.agent tether.workflow tether.task_id
                           tether.scopes.requested tether.scopes.granted tether.scopes.refused
    tether.task.delegate   tether.agent tether.task_id (the parent) tether.child.agent
                           tether.child.task_id tether.delegation.depth
    tether.task.close      tether.agent tether.task_id tether.task.state
    tether.authorize       tether.agent tether.tool tether.action tether.dataset
                           tether.decision tether.decision_id tether.reason tether.task_id
                           tether.policy_revision
      tether.audit.append  tether.decision_id tether.audit.seq
    tether.effect          tether.agent tether.decision_id tether.effect.status
                           tether.effect.records tether.effect.bytes tether.effect.recipients

A span never carries a token (SVID, grant, minted credential), an argument value, a recipient, a
purpose or a reason's message: only ids, names, codes and counts. A caller's W3C ``traceparent``
makes these spans children of its own (see :mod:`tether.observability.http`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.trace import (
    NoOpTracer,
    NoOpTracerProvider,
    ProxyTracer,
    ProxyTracerProvider,
    Tracer,
)

from tether import __version__
from tether.core.errors import ConfigurationError

INSTRUMENTATION = "tether"

# Span names.
TASK_OPEN = "tether.task.open"
TASK_DELEGATE = "tether.task.delegate"
TASK_CLOSE = "tether.task.close"
AUTHORIZE = "tether.authorize"
AUDIT_APPEND = "tether.audit.append"
EFFECT = "tether.effect"

# Attribute keys.
AGENT = "tether.agent"
TOOL = "tether.tool"
ACTION = "tether.action"
DATASET = "tether.dataset"
DECISION = "tether.decision"
DECISION_ID = "tether.decision_id"
REASON = "tether.reason"
TASK_ID = "tether.task_id"
POLICY_REVISION = "tether.policy_revision"
WORKFLOW = "tether.workflow"
AUDIT_SEQ = "tether.audit.seq"


def exports(tracer: Tracer) -> bool:
    """Whether spans started on ``tracer`` go anywhere. ``False`` for the API's no-op tracer,
    and for the global tracer while no provider is installed (it finds one the moment the
    embedding process installs it, and this says ``True`` from then on); ``True`` for any
    other tracer. A hot path asks this first and starts no span object nobody receives."""
    if isinstance(tracer, NoOpTracer):
        return False
    if isinstance(tracer, ProxyTracer):
        provider = trace.get_tracer_provider()
        return not isinstance(provider, ProxyTracerProvider | NoOpTracerProvider)
    return True


class ExportGate:
    """:func:`exports` for a hot path: once a tracer exports it always will (a global provider is
    installed once), and while it does not, asking again costs a clock read; the provider is
    looked for again at most every ``recheck_seconds``, so one installed later is picked up
    within that."""

    def __init__(
        self,
        tracer: Tracer,
        *,
        recheck_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tracer = tracer
        self._every = recheck_seconds
        self._clock = clock
        self._open = exports(tracer)
        self._next = clock() + recheck_seconds

    def __call__(self) -> bool:
        if self._open:
            return True
        now = self._clock()
        if now < self._next:
            return False
        self._next = now + self._every
        self._open = exports(self._tracer)
        return self._open


def default_tracer() -> Tracer:
    """A tracer on the process's global provider: a no-op unless the embedding process set one."""
    return trace.get_tracer(INSTRUMENTATION, __version__)


@dataclass(frozen=True, slots=True)
class Tracing:
    """A tracer, and how to flush and stop what exports its spans."""

    tracer: Tracer
    shutdown: Callable[[], None]


def traces_url(endpoint: str, environ: Mapping[str, str]) -> str:
    """Where OTLP/HTTP traces go: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` as it is, else the base
    ``endpoint`` with ``/v1/traces`` appended (the OTLP exporter specification)."""
    url = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or (endpoint.rstrip("/") + "/v1/traces")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            "the OTLP endpoint must be an http:// or https:// URL, e.g. http://localhost:4318"
        )
    return url


def otlp_tracing(endpoint: str, environ: Mapping[str, str]) -> Tracing:
    """Export spans to the OTLP/HTTP collector at ``endpoint`` (a base URL). Needs the ``otel``
    extra; without it, a ``ConfigurationError`` says what to install."""
    url = traces_url(endpoint, environ)
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigurationError(
            "exporting traces needs the OpenTelemetry SDK: pip install 'tether[otel]'"
        ) from None
    resource = Resource.create({SERVICE_VERSION: __version__})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "tether"}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    return Tracing(provider.get_tracer(INSTRUMENTATION, __version__), provider.shutdown)


def no_export() -> Tracing:
    return Tracing(default_tracer(), lambda: None)
