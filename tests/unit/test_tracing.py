"""Span trees of real requests, caught by an in-memory exporter."""

from __future__ import annotations

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.config import ModelRoute
from monitor.tracing import Tracing, TracingSettings
from tests.conftest import running_gateway, settings_for

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
