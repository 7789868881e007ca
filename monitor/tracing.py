"""OpenTelemetry tracing: off unless configured, then one OTLP exporter per gateway worker.

The provider is held here rather than installed globally, so a process can build more than one (tests,
several apps) and code that never asked for tracing pays nothing: callers check for ``None``.

The standard environment is respected where the config says nothing: ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` (the resource), ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_HEADERS``, ``..._TIMEOUT`` and ``..._COMPRESSION`` (the exporter reads them itself). Request
spans carry the OpenTelemetry GenAI semantic conventions (:func:`gen_ai_attributes`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import msgspec
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio
from opentelemetry.trace import Tracer


class TracingSettings(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool = False
    # OTLP over HTTP/protobuf, e.g. http://otel-collector:4318/v1/traces; None: the OTEL_EXPORTER_OTLP_* variables
    # (else the exporter's default, http://localhost:4318/v1/traces).
    endpoint: str | None = None
    # None: OTEL_SERVICE_NAME, else "driftgate".
    service_name: str | None = None
    # Share of new traces kept; a sampled parent from the client is always followed.
    sample_ratio: float = 1.0


class Tracing:
    """A tracer and the provider that exports its spans."""

    def __init__(self, settings: TracingSettings, exporter: SpanExporter | None = None) -> None:
        service = settings.service_name or os.environ.get("OTEL_SERVICE_NAME") or "driftgate"
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": service}),  # merged with OTEL_RESOURCE_ATTRIBUTES
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


# The GenAI operation each OpenAI route performs (OpenTelemetry's gen_ai.operation.name values).
GEN_AI_OPERATIONS = {
    "/v1/chat/completions": "chat",
    "/v1/responses": "chat",
    "/v1/completions": "text_completion",
    "/v1/embeddings": "embeddings",
}
# What serves every configured model: vLLM's OpenAI-compatible server (gen_ai.provider.name).
PROVIDER = "vllm"


def gen_ai_attributes(
    route: str,
    request_model: str,
    *,
    response_model: str | None = None,
    finish_reasons: Sequence[str] = (),
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    adapter_version: str | None = None,
    training_run: str | None = None,
) -> dict[str, str | int | Sequence[str]]:
    """A request span's GenAI semantic-convention attributes, plus the adapter version that answered and the
    training run (loop run or job) that made it."""
    attributes: dict[str, str | int | Sequence[str]] = {
        "gen_ai.provider.name": PROVIDER,
        "gen_ai.request.model": request_model,
    }
    operation = GEN_AI_OPERATIONS.get(route)
    if operation is not None:
        attributes["gen_ai.operation.name"] = operation
    if response_model:
        attributes["gen_ai.response.model"] = response_model
    if finish_reasons:
        attributes["gen_ai.response.finish_reasons"] = tuple(finish_reasons)
    if input_tokens is not None:
        attributes["gen_ai.usage.input_tokens"] = input_tokens
    if output_tokens is not None:
        attributes["gen_ai.usage.output_tokens"] = output_tokens
    if adapter_version is not None:
        attributes["driftgate.adapter.version"] = adapter_version
    if training_run is not None:
        attributes["driftgate.training.run"] = training_run
    return attributes


def from_settings(settings: TracingSettings) -> Tracing | None:
    return Tracing(settings) if settings.enabled else None
