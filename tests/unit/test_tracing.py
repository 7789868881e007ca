"""Span trees of real requests, caught by an in-memory exporter."""

from __future__ import annotations

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.config import ModelRoute
from monitor.tracing import Tracing, TracingSettings, gen_ai_attributes
from tests.conftest import running_gateway, settings_for
from tests.unit.adapters.conftest import BASE, adapter_settings, write_adapter

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{CLIENT_TRACE}-b7ad6b7169203331-01"


def tracing() -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return Tracing(TracingSettings(enabled=True), exporter), exporter


async def test_plain_request_span_tree_and_propagation(upstreams) -> None:
    upstream = await upstreams()
    traced, exporter = tracing()
    async with running_gateway(settings_for(ModelRoute("m", [upstream.url])), traced) as client:
        response = await client.post("/v1/chat/completions", json=CHAT, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"POST /v1/chat/completions", "upstream"}
    server, upstream_span = spans["POST /v1/chat/completions"], spans["upstream"]
    # The client's trace is joined, not restarted.
    assert format(server.context.trace_id, "032x") == CLIENT_TRACE
    assert format(server.parent.span_id, "016x") == "b7ad6b7169203331"
    assert upstream_span.parent.span_id == server.context.span_id
    assert server.kind == SpanKind.SERVER and upstream_span.kind == SpanKind.CLIENT
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["gen_ai.usage.output_tokens"] == 6
    # vLLM receives a traceparent naming the upstream span, so its own spans hang under it.
    sent = upstream.observed.headers[0]["traceparent"]
    assert sent == f"00-{CLIENT_TRACE}-{upstream_span.context.span_id:016x}-01"


async def test_stream_has_a_stream_span_and_errors_are_recorded(upstreams) -> None:
    upstream = await upstreams()
    traced, exporter = tracing()
    async with running_gateway(settings_for(ModelRoute("m", [upstream.url])), traced) as client:
        async with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as response:
            async for _ in response.aiter_raw():
                pass
        missing = await client.post("/v1/chat/completions", json={**CHAT, "model": "nope"})
    assert missing.status_code == 404
    spans = exporter.get_finished_spans()
    streamed = [s for s in spans if s.context.trace_id == next(x for x in spans if x.name == "stream").context.trace_id]
    by_name = {span.name: span for span in streamed}
    assert set(by_name) == {"POST /v1/chat/completions", "upstream", "stream"}
    root = by_name["POST /v1/chat/completions"]
    assert by_name["stream"].parent.span_id == root.context.span_id
    assert root.end_time >= by_name["stream"].end_time  # the request span covers the whole stream
    failed = [s for s in spans if s.attributes.get("http.response.status_code") == 404]
    assert len(failed) == 1 and failed[0].attributes["gen_ai.request.model"] == "unknown"


async def test_no_tracing_sends_no_traceparent(upstreams) -> None:
    upstream = await upstreams()
    async with running_gateway(settings_for(ModelRoute("m", [upstream.url]))) as client:
        await client.post("/v1/chat/completions", json=CHAT)
    assert "traceparent" not in upstream.observed.headers[0]


async def test_request_spans_follow_the_genai_semantic_conventions(upstreams) -> None:
    upstream = await upstreams()
    traced, exporter = tracing()
    async with running_gateway(settings_for(ModelRoute("m", [upstream.url])), traced) as client:
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
        async with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as response:
            async for _ in response.aiter_raw():
                pass
    unary, streamed = [span for span in exporter.get_finished_spans() if span.name.startswith("POST")]
    for span in (unary, streamed):
        assert span.attributes["gen_ai.operation.name"] == "chat"
        assert span.attributes["gen_ai.provider.name"] == "vllm"
        assert span.attributes["gen_ai.request.model"] == "m"
        assert span.attributes["gen_ai.response.model"] == "m"  # what the backend says answered
        assert span.attributes["gen_ai.response.finish_reasons"] == ("stop",)
        assert "driftgate.adapter.version" not in span.attributes  # the base model answered
    assert unary.attributes["gen_ai.usage.input_tokens"] > 0 and unary.attributes["gen_ai.usage.output_tokens"] == 6


def test_each_openai_route_names_its_genai_operation() -> None:
    assert gen_ai_attributes("/v1/embeddings", "m")["gen_ai.operation.name"] == "embeddings"
    assert gen_ai_attributes("/v1/completions", "m")["gen_ai.operation.name"] == "text_completion"
    assert gen_ai_attributes("/v1/responses", "m")["gen_ai.operation.name"] == "chat"
    assert "gen_ai.operation.name" not in gen_ai_attributes("/v1/moderations", "m")  # not a GenAI operation


async def test_the_adapter_version_that_answered_is_on_the_span(tmp_path, upstreams) -> None:
    upstream = await upstreams()
    traced, exporter = tracing()
    async with running_gateway(adapter_settings(tmp_path, upstream.url), traced) as client:
        body = {
            "alias": "support",
            "weights": write_adapter(tmp_path / "v1"),
            "base_model": BASE,
            "training_run": {"loop_run": "20261127-052301-3edac4"},
        }
        assert (await client.post("/admin/adapters/", json=body)).status_code == 201
        assert (await client.post("/admin/adapters/support/promote", json={"version": 1})).status_code == 200
        chat = {**CHAT, "model": "support"}
        assert (await client.post("/v1/chat/completions", json=chat)).status_code == 200
    (span,) = [span for span in exporter.get_finished_spans() if span.name == "POST /v1/chat/completions"]
    assert span.attributes["driftgate.adapter.version"] == "support@1"
    assert span.attributes["driftgate.training.run"] == "20261127-052301-3edac4"
    assert span.attributes["gen_ai.request.model"] == "support"
    assert span.attributes["gen_ai.response.model"] == "support@1"  # vLLM names the LoRA that answered


def _exporter_endpoint(traced: Tracing) -> str:
    (processor,) = traced.provider._active_span_processor._span_processors
    return processor.span_exporter._endpoint


def test_the_standard_otel_environment_is_respected(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-eu")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector.example:4318/v1/traces")
    traced = Tracing(TracingSettings(enabled=True))
    try:
        resource = traced.provider.resource.attributes
        assert resource["service.name"] == "gateway-eu" and resource["deployment.environment"] == "staging"
        assert _exporter_endpoint(traced) == "http://collector.example:4318/v1/traces"
    finally:
        traced.shutdown()
    # What the config file says wins over the environment.
    configured = Tracing(TracingSettings(enabled=True, service_name="edge", endpoint="http://otel:4318/v1/traces"))
    try:
        assert configured.provider.resource.attributes["service.name"] == "edge"
        assert _exporter_endpoint(configured) == "http://otel:4318/v1/traces"
    finally:
        configured.shutdown()
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    assert (
        Tracing(TracingSettings(enabled=True), InMemorySpanExporter()).provider.resource.attributes["service.name"]
        == "driftgate"
    )
