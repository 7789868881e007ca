"""Limits in the request path of the real gateway over a fake upstream: per-key concurrency (released by
finished streams, failed requests and clients that leave), tokens per minute, and the in-flight cap."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import ModelRoute, RequestLimitSettings, state_url
from gateway.security.keys import KeyStore
from tests.conftest import running_gateway, settings_for

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
STREAM = {**CHAT, "stream": True}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def assert_openai_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code
    assert int(response.headers["retry-after"]) >= 1


async def sample(client: httpx.AsyncClient, name: str, labels: dict[str, str] | None = None) -> float:
    text = (await client.get("/metrics")).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and (labels is None or s.labels == labels)
    )


async def test_concurrency_cap_is_released_by_streams_errors_and_departures(tmp_path: Path, upstreams) -> None:
    upstream = await upstreams()
    upstream.behaviour.stream_gap_s = 0.2
    upstream.behaviour.stream_chunks = 5
    settings = settings_for(ModelRoute("m", [upstream.url]), home=str(tmp_path))
    keys = KeyStore(state_url(settings))
    _, token = keys.create("one-at-a-time", "inference", max_concurrent=1)
    _, other = keys.create("other", "inference")
    keys.close()
    async with running_gateway(settings) as client:
        # The gauge is process-wide: other tests in this process may have left tickets held.
        in_flight_before = await sample(client, "driftgate_in_flight_requests")
        # A stream holds the key's only slot from its first byte to its last.
        async with client.stream("POST", "/v1/chat/completions", json=STREAM, headers=bearer(token)) as first:
            chunks = first.aiter_raw()
            await chunks.__anext__()
            second = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(token))
            assert_openai_error(second, 429, "rate_limit_exceeded")
            assert second.json()["error"]["type"] == "rate_limit_error"
            # Other keys are not affected.
            assert (await client.post("/v1/chat/completions", json=CHAT, headers=bearer(other))).status_code == 200
            rest = b"".join([chunk async for chunk in chunks])
        assert rest.endswith(b"data: [DONE]\n\n")
        assert (await client.post("/v1/chat/completions", json=CHAT, headers=bearer(token))).status_code == 200

        # A client that leaves mid-stream gives its slot back.
        async with client.stream("POST", "/v1/chat/completions", json=STREAM, headers=bearer(token)) as left:
            await left.aiter_raw().__anext__()
        await asyncio.sleep(0.3)
        assert (await client.post("/v1/chat/completions", json=CHAT, headers=bearer(token))).status_code == 200

        # So does one that gives up on a plain request before the backend answers.
        upstream.behaviour.delay_s = 2
        try:
            await client.post("/v1/chat/completions", json=CHAT, headers=bearer(token), timeout=0.3)
        except httpx.ReadTimeout:
            pass
        await asyncio.sleep(0.3)
        upstream.behaviour.delay_s = 0
        assert (await client.post("/v1/chat/completions", json=CHAT, headers=bearer(token))).status_code == 200

        # And a request the backend fails.
        upstream.behaviour.error_status, upstream.behaviour.error_body = 500, b'{"error": {"message": "boom"}}'
        assert (await client.post("/v1/chat/completions", json=CHAT, headers=bearer(token))).status_code == 500
        upstream.behaviour.error_status = None
        assert (await client.post("/v1/chat/completions", json=CHAT, headers=bearer(token))).status_code == 200
        assert await sample(client, "driftgate_in_flight_requests") == in_flight_before
        assert await sample(client, "driftgate_rejected_requests_total", {"reason": "concurrency"}) >= 1


async def test_tokens_per_minute_estimate_first_then_charge_actual_usage(tmp_path: Path, upstreams) -> None:
    upstream = await upstreams()  # every answer reports 11 tokens of usage
    settings = settings_for(ModelRoute("m", [upstream.url]), home=str(tmp_path))
    keys = KeyStore(state_url(settings))
    _, token = keys.create("tpm", "inference", tpm=70)
    keys.close()
    asks_50 = {**CHAT, "max_tokens": 50}  # estimate: 1 prompt token ("hi" / 4, rounded up) + 50
    async with running_gateway(settings) as client:
        too_big = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 100}, headers=bearer(token))
        statuses = [
            (await client.post("/v1/chat/completions", json=asks_50, headers=bearer(token))).status_code
            for _ in range(2)
        ]
        # The two answers used 11 tokens each: 22 + 51 > 70.
        third = await client.post("/v1/chat/completions", json=asks_50, headers=bearer(token))
        # Charging the estimate alone would already have refused the second (51 + 51 > 70).
        small = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 40}, headers=bearer(token))
    assert_openai_error(too_big, 429, "rate_limit_exceeded")
    assert "70 tokens per minute" in too_big.json()["error"]["message"]
    assert statuses == [200, 200]
    assert_openai_error(third, 429, "rate_limit_exceeded")
    assert 1 <= int(third.headers["retry-after"]) <= 60
    assert small.status_code == 200  # 22 + 41 <= 70
    assert upstream.observed.completed == 3


async def test_beyond_max_in_flight_is_a_fast_503_not_a_queue(upstreams) -> None:
    upstream = await upstreams()
    upstream.behaviour.delay_s = 3.0
    settings = settings_for(ModelRoute("m", [upstream.url]), limits=RequestLimitSettings(max_in_flight=3))
    async with running_gateway(settings) as client:
        rejected_before = await sample(client, "driftgate_rejected_requests_total", {"reason": "overloaded"})
        in_flight_before = await sample(client, "driftgate_in_flight_requests")  # process-wide, as above

        async def timed() -> tuple[httpx.Response, float]:
            started = time.perf_counter()
            response = await client.post("/v1/chat/completions", json=CHAT)
            return response, time.perf_counter() - started

        results = await asyncio.gather(*(timed() for _ in range(10)))
        served = [elapsed for response, elapsed in results if response.status_code == 200]
        refused = [(response, elapsed) for response, elapsed in results if response.status_code != 200]
        assert len(served) == 3 and len(refused) == 7
        for response, elapsed in refused:
            assert_openai_error(response, 503, "server_overloaded")
            # Refused at once, not after waiting for a place (a bound loose enough for a loaded CI machine).
            assert elapsed < min(served) / 2
        rejected = await sample(client, "driftgate_rejected_requests_total", {"reason": "overloaded"})
        assert rejected - rejected_before == 7
        # Places come back when requests end; health and metrics routes never count.
        assert await sample(client, "driftgate_in_flight_requests") == in_flight_before
        upstream.behaviour.delay_s = 0
        again = await asyncio.gather(*(client.post("/v1/chat/completions", json=CHAT) for _ in range(3)))
        assert [r.status_code for r in again] == [200, 200, 200]
