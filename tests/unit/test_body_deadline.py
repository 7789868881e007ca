"""A body sent too slowly ends with a 408 and gives its place among the requests in flight back."""

from __future__ import annotations

import asyncio
import json
import time

from gateway.config import BodyReadSettings, ModelRoute, RequestLimitSettings
from tests.conftest import free_port, running_gateway, settings_for

BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()


async def trickle(port: int, body: bytes, every_s: float, path: str = "/v1/chat/completions") -> tuple[bytes, float]:
    """Send headers at once, then the body one byte every ``every_s``; the reply's status line and when it came."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.perf_counter()
    writer.write(
        f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n".encode()
    )
    reply = asyncio.ensure_future(reader.readline())
    try:
        for byte in body:
            if reply.done():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every_s)
        status = await asyncio.wait_for(reply, 10)
        return status, time.perf_counter() - started
    finally:
        reply.cancel()
        writer.close()


async def test_a_body_trickling_below_the_minimum_rate_is_a_408_and_frees_its_place(upstreams) -> None:
    upstream = await upstreams()
    port = free_port()
    settings = settings_for(
        ModelRoute("m", [upstream.url]),
        body_read=BodyReadSettings(timeout_s=30, min_bytes_per_s=20, grace_s=0.5),
        limits=RequestLimitSettings(max_in_flight=1),
    )
    async with running_gateway(settings, port=port) as client:
        status, after_s = await trickle(port, BODY, every_s=0.2)
        ordinary = await client.post("/v1/chat/completions", content=BODY)
    assert status.startswith(b"HTTP/1.1 408")
    assert after_s < 3  # the grace period plus a few bytes' allowance, not the whole body's 15 s
    assert ordinary.status_code == 200  # its one place in flight was given back
    assert upstream.observed.bodies == [BODY]


async def test_the_whole_body_has_a_deadline_however_fast_it_starts(upstreams) -> None:
    upstream = await upstreams()
    port = free_port()
    settings = settings_for(
        ModelRoute("m", [upstream.url]), body_read=BodyReadSettings(timeout_s=1, min_bytes_per_s=0, grace_s=0)
    )
    async with running_gateway(settings, port=port) as client:
        status, after_s = await trickle(port, BODY, every_s=0.05)
        response = await client.post("/v1/chat/completions", content=BODY)
    assert status.startswith(b"HTTP/1.1 408") and after_s < 2
    assert response.status_code == 200


async def test_a_body_at_a_steady_rate_is_read(upstreams) -> None:
    upstream = await upstreams()
    port = free_port()
    settings = settings_for(
        ModelRoute("m", [upstream.url]), body_read=BodyReadSettings(timeout_s=30, min_bytes_per_s=20, grace_s=0.5)
    )
    async with running_gateway(settings, port=port):
        status, _ = await trickle(port, BODY, every_s=0.002)
    assert status.startswith(b"HTTP/1.1 200")
