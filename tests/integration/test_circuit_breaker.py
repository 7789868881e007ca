"""A backend that hangs, in front of the real gateway on real sockets: timeouts open its breaker, traffic
moves to the healthy replica (or fails fast without one), and it comes back once it answers again."""

from __future__ import annotations

import asyncio
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import BreakerSettings, ModelRoute
from tests.conftest import running_gateway, settings_for

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def circuit_gauge(client: httpx.AsyncClient, backend: str) -> float:
    text = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "driftgate_backend_circuit_open" and sample.labels == {"model": "m", "backend": backend}:
                return sample.value
    raise AssertionError("no driftgate_backend_circuit_open sample")


async def timed_post(client: httpx.AsyncClient, body: dict = CHAT) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = await client.post("/v1/chat/completions", json=body)
    return response, time.perf_counter() - started


async def test_hung_replica_is_cut_off_and_comes_back(upstreams) -> None:
    hung, good = await upstreams("hung"), await upstreams("good")
    hung.behaviour.delay_s = 30  # accepts, then never answers; /health still says 200
    settings = settings_for(
        ModelRoute("m", [hung.url, good.url]), read_s=0.3, breaker=BreakerSettings(failures=2, cooldown_s=1.5)
    )
    async with running_gateway(settings) as client:
        # Both replicas idle: the first listed gets the request, times out, and again.
        timeouts = [await timed_post(client) for _ in range(2)]
        assert [r.status_code for r, _ in timeouts] == [504, 504]
        assert await circuit_gauge(client, hung.url) == 1
        # Breaker open: everything goes to the healthy replica at once.
        served = [await timed_post(client) for _ in range(10)]
        assert [r.status_code for r, _ in served] == [200] * 10
        assert all(r.json()["choices"][0]["message"]["content"] == "Hello from good." for r, _ in served)
        assert max(elapsed for _, elapsed in served) < 0.25
        assert (await client.get("/readyz")).status_code == 200

        hung.behaviour.delay_s = 0  # the backend returns
        await asyncio.sleep(1.6)
        probe, _ = await timed_post(client)  # half-open: this request is the probe
        assert probe.status_code == 200 and probe.json()["choices"][0]["message"]["content"] == "Hello from hung."
        assert await circuit_gauge(client, hung.url) == 0
        answered_by_hung = hung.observed.completed
        # Back in rotation: concurrent requests spread over both replicas again.
        await asyncio.gather(*(client.post("/v1/chat/completions", json=CHAT) for _ in range(10)))
        assert hung.observed.completed > answered_by_hung


async def test_without_a_healthy_replica_requests_fail_fast_until_the_probe_succeeds(upstreams) -> None:
    hung = await upstreams("hung")
    hung.behaviour.delay_s = 30
    settings = settings_for(
        ModelRoute("m", [hung.url]), read_s=0.3, breaker=BreakerSettings(failures=2, cooldown_s=1.0)
    )
    async with running_gateway(settings) as client:
        assert [(await timed_post(client))[0].status_code for _ in range(2)] == [504, 504]
        fast, elapsed = await timed_post(client)
        assert elapsed < 0.1
        assert fast.status_code == 503 and fast.json()["error"]["code"] == "backend_unavailable"
        assert set(fast.json()["error"]) == {"message", "type", "param", "code"}
        assert int(fast.headers["retry-after"]) == 1
        assert (await client.get("/readyz")).json()["unavailable_models"] == ["m"]

        await asyncio.sleep(1.1)
        # Half-open, still hanging: one probe waits out the timeout, everyone else is refused at once.
        probe = asyncio.create_task(timed_post(client))
        await asyncio.sleep(0.1)
        during, during_elapsed = await timed_post(client)
        assert during.status_code == 503 and during_elapsed < 0.1
        assert (await probe)[0].status_code == 504
        # The failed probe opened it for a whole new cooldown.
        assert (await timed_post(client))[0].status_code == 503

        hung.behaviour.delay_s = 0
        await asyncio.sleep(1.1)
        recovered = [(await timed_post(client))[0].status_code for _ in range(3)]
        assert recovered == [200, 200, 200]
        assert (await client.get("/readyz")).status_code == 200


async def test_a_stalled_stream_counts_against_the_breaker(upstreams) -> None:
    stalls = await upstreams("stalls")
    stalls.behaviour.stream_gap_s = 5  # first chunk, then silence
    settings = settings_for(
        ModelRoute("m", [stalls.url]), read_s=0.3, breaker=BreakerSettings(failures=2, cooldown_s=30)
    )
    async with running_gateway(settings) as client:
        for _ in range(2):
            async with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as response:
                raw = b"".join([chunk async for chunk in response.aiter_raw()])
            assert b'"code":"upstream_timeout"' in raw
        refused, elapsed = await timed_post(client, {**CHAT, "stream": True})
    assert refused.status_code == 503 and elapsed < 0.1
    assert 29 <= int(refused.headers["retry-after"]) <= 30


async def test_a_backend_that_refused_connections_is_closed_by_its_health_check(upstreams) -> None:
    upstream = await upstreams("flaky")
    port = upstream.port
    settings = settings_for(
        ModelRoute("m", [upstream.url]), health_interval_s=0.1, breaker=BreakerSettings(failures=1, cooldown_s=60)
    )
    async with running_gateway(settings) as client:
        await upstream.stop()
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 503
        assert await circuit_gauge(client, upstream.url) == 1
        await upstream.start(port)  # back on the same address, long before the cooldown ends
        for _ in range(50):
            if await circuit_gauge(client, upstream.url) == 0:
                break
            await asyncio.sleep(0.1)
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
