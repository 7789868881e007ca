"""OpenTelemetry tracing: off unless configured, then one OTLP exporter per gateway worker.

The provider is held here rather than installed globally, so a process can build more than one (tests,
several apps) and code that never asked for tracing pays nothing: callers check for ``None``.
"""

from __future__ import annotations

import msgspec
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio
from opentelemetry.trace import Tracer


class TracingSettings(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool = False
    # OTLP over HTTP/protobuf, e.g. http://otel-collector:4318/v1/traces
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    service_name: str = "driftgate"
    # Share of new traces kept; a sampled parent from the client is always followed.
    sample_ratio: float = 1.0


class Tracing:
    """A tracer and the provider that exports its spans."""

    def __init__(self, settings: TracingSettings, exporter: SpanExporter | None = None) -> None:
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name}),
            sampler=ParentBasedTraceIdRatio(settings.sample_ratio),
        )
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.endpoint)))
        else:
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        self.tracer: Tracer = self.provider.get_tracer("driftgate")

    def shutdown(self) -> None:
        """Export what is buffered; called when the worker stops."""
        self.provider.shutdown()


def from_settings(settings: TracingSettings) -> Tracing | None:
    return Tracing(settings) if settings.enabled else None
