"""A streamed request gives back everything it holds (its in-flight place, its key's concurrency slot, its
backend lease) exactly once, however its client leaves: as the upstream answers, before the response
headers can be sent, or in the middle of the body; under uvicorn and under granian (`driftgate serve`)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import ModelRoute, state_url
from gateway.runtime import Gateway
from gateway.security.keys import KeyStore
from tests.conftest import free_port, running_gateway, settings_for
from tests.fake_upstream import FakeUpstream, stream_chunk
from tests.unit.test_cli_serve import serve_process, write_config

STREAM = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
BODY = json.dumps(STREAM).encode()
REQUESTS = "driftgate_requests_total"


def raw_request(token: str | None = None) -> bytes:
    auth = f"authorization: Bearer {token}\r\n".encode() if token else b""
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    return head + auth + b"content-length: %d\r\n\r\n" % len(BODY) + BODY


def held(gateway: Gateway) -> tuple[int, int]:
    return gateway.limiter.in_flight, sum(backend.outstanding for backend in gateway.pool.backends)


async def released(gateway: Gateway, within_s: float = 2.0) -> tuple[int, int]:
    deadline = time.monotonic() + within_s
    while held(gateway) != (0, 0) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return held(gateway)


def answered(status: str) -> float:
    labels = {"route": "/v1/chat/completions", "model": "m", "status": status}
    return REGISTRY.get_sample_value(REQUESTS, labels) or 0.0


async def test_client_leaving_as_the_upstream_answers_releases_everything(tmp_path: Path, upstreams) -> None:
    upstream = await upstreams()
    upstream.behaviour.stream_chunks = 2
    upstream.behaviour.stream_gap_s = 5
    settings = settings_for(ModelRoute("m", [upstream.url]), home=str(tmp_path))
    keys = KeyStore(state_url(settings))
    _, token = keys.create("one-at-a-time", "inference", max_concurrent=1)
    keys.close()
    async with running_gateway(settings) as client:
        gateway: Gateway = client.app.state.gateway  # type: ignore[attr-defined]
        port = int(client.base_url.port or 0)
        open_stream = gateway.upstream.stream
        # The client resets its connection a few event-loop turns after the backend's answer reaches the
        # gateway: from "before the handler returns its Stream" to "while the first chunk is sent".
        for turns in range(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)

            async def leave(turns: int = turns, writer: asyncio.StreamWriter = writer) -> None:
                for _ in range(turns):
                    await asyncio.sleep(0)
                writer.transport.abort()

            async def stream_then_leave(*args, leave: Callable = leave):
                answer = await open_stream(*args)
                asyncio.ensure_future(leave())
                return answer

            gateway.upstream.stream = stream_then_leave  # type: ignore[method-assign]
            writer.write(raw_request(token))
            await writer.drain()
            assert await released(gateway) == (0, 0), f"held after the client left {turns} turns in"
        gateway.upstream.stream = open_stream  # type: ignore[method-assign]
        # The key's only concurrency slot is free again.
        async with client.stream(
            "POST", "/v1/chat/completions", json=STREAM, headers={"authorization": f"Bearer {token}"}
        ) as response:
            assert response.status_code == 200
            await response.aiter_raw().__anext__()


class ClientGone(OSError):
    """What a server following ASGI spec 2.4 raises from ``send`` once the client has left."""


async def call_leaving_after(app, sends: int) -> None:
    """Run one streamed request through the ASGI app; ``send`` raises after ``sends`` messages went out."""
    body_sent = False
    sent = 0

    async def receive() -> dict:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": BODY, "more_body": False}
        await asyncio.sleep(3600)  # the disconnect is seen by send, not here
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        nonlocal sent
        if sent >= sends:
            raise ClientGone("client left")
        sent += 1

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    try:
        await app(scope, receive, send)
    except Exception:  # noqa: S110 - how the framework reports a send that failed is not the point here
        pass


async def test_stream_whose_headers_cannot_be_sent_releases_everything(upstreams) -> None:
    """The body never starts, so the chunks' own cleanup never runs: the response's end must do it."""
    upstream = await upstreams()
    upstream.behaviour.stream_gap_s = 5
    async with running_gateway(settings_for(ModelRoute("m", [upstream.url]))) as client:
        gateway: Gateway = client.app.state.gateway  # type: ignore[attr-defined]
        before = answered("499"), answered("200")
        await call_leaving_after(client.app, sends=0)  # type: ignore[attr-defined]
        assert held(gateway) == (0, 0)
        # Counted once, as a request its client closed.
        assert (answered("499"), answered("200")) == (before[0] + 1, before[1])


async def test_stream_cut_while_a_chunk_is_sent_releases_everything_at_once(upstreams) -> None:
    """A chunk's send fails: the chunks are left at a yield, and are closed then, not when collected."""
    upstream = await upstreams()
    upstream.behaviour.stream_chunks = 4
    upstream.behaviour.stream_gap_s = 5
    async with running_gateway(settings_for(ModelRoute("m", [upstream.url]))) as client:
        gateway: Gateway = client.app.state.gateway  # type: ignore[attr-defined]
        before = answered("499"), answered("200")
        await call_leaving_after(client.app, sends=2)  # type: ignore[attr-defined]  # headers, first chunk
        assert held(gateway) == (0, 0)
        assert (answered("499"), answered("200")) == (before[0], before[1] + 1)
        for _ in range(50):
            if upstream.observed.cancelled:
                break
            await asyncio.sleep(0.05)
        assert upstream.observed.cancelled == 1


class AnsweringUpstream(FakeUpstream):
    """Calls ``on_answer`` as it starts its streamed answer, then holds the stream open."""

    on_answer: Callable[[], None] | None = None

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        if self.on_answer is not None:
            self.on_answer()
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(stream_chunk("m", "first"))
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.observed.cancelled += 1
            raise
        return response


def gauge(text: str, name: str) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


async def test_under_granian_clients_leaving_around_the_answer_leave_nothing_held(tmp_path: Path) -> None:
    upstream = await AnsweringUpstream().start()
    port = free_port()
    try:
        async with serve_process(write_config(tmp_path, upstream.url), port) as client:
            request = raw_request()
            # The client closes (every other time with a reset) 0 to 3 ms after the upstream starts answering.
            delays_us = [delay for delay in range(0, 3000, 100) for _ in range(2)]
            for attempt, delay_us in enumerate(delays_us):
                sock = socket.create_connection(("127.0.0.1", port))
                answering = threading.Event()

                def close(sock: socket.socket = sock, answering: threading.Event = answering, **when) -> None:
                    answering.wait(5)
                    end = time.perf_counter() + when["delay_us"] / 1e6
                    while time.perf_counter() < end:
                        pass
                    if when["reset"]:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    sock.close()

                upstream.on_answer = answering.set
                closer = threading.Thread(target=close, kwargs={"delay_us": delay_us, "reset": attempt % 2 == 1})
                closer.start()
                sock.sendall(request)
                await asyncio.to_thread(closer.join)
            for _ in range(100):
                text = (await client.get("/metrics")).text
                counts = [
                    gauge(text, "driftgate_in_flight_requests"),
                    gauge(text, "driftgate_backend_outstanding_requests"),
                ]
                if counts == [0, 0] and upstream.observed.cancelled == len(delays_us):
                    break
                await asyncio.sleep(0.05)
            assert counts == [0, 0]
            assert upstream.observed.cancelled == len(delays_us)
            assert gauge(text, REQUESTS) == len(delays_us)  # each counted once
    finally:
        await upstream.stop()
