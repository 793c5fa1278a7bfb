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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.trace import Tracer

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
