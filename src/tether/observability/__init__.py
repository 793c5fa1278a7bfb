"""Operating tether: Prometheus metrics, OpenTelemetry traces, and the context of its log lines.

An entry-point concern: nothing in core, service or the adapters imports this package. The one
place that wires tether (:mod:`tether.runtime`) builds the observed use cases
(:mod:`tether.observability.services`); ``tether serve`` adds ``GET /metrics`` and the request
middleware (:mod:`tether.observability.http`) and, when asked, the OTLP exporter
(:mod:`tether.observability.tracing`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from opentelemetry.trace import Tracer

from tether.observability.metrics import Metrics
from tether.observability.tracing import default_tracer

__all__ = ["Metrics", "Observability"]


@dataclass(frozen=True, slots=True)
class Observability:
    """Where one process's metrics and spans go. The default records metrics for this process
    only and sends spans to the global tracer provider (a no-op unless one was installed)."""

    metrics: Metrics = field(default_factory=Metrics)
    tracer: Tracer = field(default_factory=default_tracer)
