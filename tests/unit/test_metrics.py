"""/metrics as Prometheus reads it, after real traffic through the gateway."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gateway.config import ModelRoute
from tests.conftest import running_gateway, settings_for

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


async def test_traffic_shows_up_in_metrics(upstreams) -> None:
    upstream, doomed = await upstreams(), await upstreams("doomed")
    dead = doomed.url
    async with running_gateway(settings_for(ModelRoute("m", [dead, upstream.url]), health_interval_s=60)) as client:
        await doomed.stop()  # healthy at the start-up check, refusing connections from now on
        before = (await client.get("/metrics")).text
        await client.post("/v1/chat/completions", json=CHAT)
        await client.post("/v1/chat/completions", json=CHAT)
        async with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as response:
            async for _ in response.aiter_raw():
                pass
        await client.post("/v1/chat/completions", json={**CHAT, "model": "someone-elses-model"})
        await client.post("/v1/chat/completions", content=b"{")
        response = await client.get("/metrics")
    after = response.text
    assert response.headers["content-type"].startswith("text/plain")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/v1/chat/completions"
    assert delta("driftgate_requests_total", route=route, model="m", status="200") == 3
    # Client-chosen names never become label values.
    assert delta("driftgate_requests_total", route=route, model="unknown", status="404") == 1
    assert delta("driftgate_requests_total", route=route, model="unknown", status="400") == 1
    assert delta("driftgate_request_duration_seconds_count", route=route, model="m", stream="true") == 1
    assert delta("driftgate_time_to_first_token_seconds_count", model="m") == 1
    assert delta("driftgate_tokens_total", model="m", direction="prompt") == 10  # 5 per plain answer
    assert delta("driftgate_tokens_total", model="m", direction="completion") == 12
    assert delta("driftgate_overhead_seconds_count", route=route) == 3
    assert delta("driftgate_upstream_errors_total", backend=dead, kind="connect") == 1
    assert delta("driftgate_upstream_retries_total", backend=dead) == 1
    assert value(after, "driftgate_backend_up", backend=dead) == 0
    assert value(after, "driftgate_backend_up", backend=upstream.url) == 1
    assert value(after, "driftgate_backend_outstanding_requests", backend=upstream.url) == 0
