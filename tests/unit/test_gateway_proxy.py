"""The gateway app on a real socket in front of fake upstreams: routing, retries, timeouts, errors, SSE."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from gateway.config import ModelRoute
from tests.conftest import free_port, running_gateway, settings_for

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return error


async def test_body_reaches_the_upstream_byte_for_byte(upstreams) -> None:
    upstream = await upstreams()
    body = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"logprobs":true,"vendor_x":{"a":[1,2]}}'
    async with running_gateway(settings_for(ModelRoute("m", [upstream.url]))) as client:
        response = await client.post("/v1/chat/completions", content=body)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Hello from fake."
    assert float(response.headers["x-driftgate-overhead-ms"]) >= 0
    assert upstream.observed.bodies == [body]


async def test_public_name_is_swapped_for_the_upstream_name_only(upstreams) -> None:
    upstream = await upstreams()
    route = ModelRoute("public", [upstream.url], upstream_name="served-name")
    async with running_gateway(settings_for(route)) as client:
        response = await client.post("/v1/completions", json={"model": "public", "prompt": "x", "seed": 7})
    assert response.status_code == 200
    assert json.loads(upstream.observed.bodies[0]) == {"model": "served-name", "prompt": "x", "seed": 7}
    assert upstream.observed.paths == ["/v1/completions"]


async def test_models_lists_configured_names(upstreams) -> None:
    upstream = await upstreams()
    routes = [ModelRoute("a", [upstream.url]), ModelRoute("b", [upstream.url])]
    async with running_gateway(settings_for(*routes)) as client:
        listing = (await client.get("/v1/models")).json()
    assert listing["object"] == "list"
    assert [card["id"] for card in listing["data"]] == ["a", "b"]
    assert all(card["object"] == "model" for card in listing["data"])


async def test_requests_go_to_the_least_busy_replica(upstreams) -> None:
    slow, fast = await upstreams("slow"), await upstreams("fast")
    slow.behaviour.delay_s = 1.0
    async with running_gateway(settings_for(ModelRoute("m", [slow.url, fast.url]))) as client:
        # Both idle: the first listed replica takes the first request and is busy for a second.
        first = asyncio.create_task(client.post("/v1/chat/completions", json=CHAT))
        while not slow.observed.bodies:
            await asyncio.sleep(0.01)
        others = [await client.post("/v1/chat/completions", json=CHAT) for _ in range(3)]
        assert (await first).json()["choices"][0]["message"]["content"] == "Hello from slow."
    assert [r.json()["choices"][0]["message"]["content"] for r in others] == ["Hello from fast."] * 3
    assert len(slow.observed.bodies) == 1


async def test_refused_connection_is_retried_on_another_replica(upstreams) -> None:
    alive = await upstreams("alive")
    dead_url = f"http://127.0.0.1:{free_port()}"
    # Long health interval: only the failed request itself can teach the pool that `dead` is down.
    settings = settings_for(ModelRoute("m", [dead_url, alive.url]), health_interval_s=60)
    async with running_gateway(settings) as client:
        await client.get("/readyz")
        responses = [await client.post("/v1/chat/completions", json=CHAT) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert len(alive.observed.bodies) == 3


async def test_no_reachable_backend_is_a_fast_503(upstreams) -> None:
    settings = settings_for(ModelRoute("m", [f"http://127.0.0.1:{free_port()}"]))
    async with running_gateway(settings) as client:
        started = time.perf_counter()
        response = await client.post("/v1/chat/completions", json=CHAT)
        elapsed = time.perf_counter() - started
        ready = await client.get("/readyz")
    assert_openai_error(response, 503, "backend_unavailable")
    assert response.headers["retry-after"] == "1"
    assert elapsed < 2
    assert ready.status_code == 503
    assert ready.json() == {"status": "not_ready", "unavailable_models": ["m"]}


async def test_silent_backend_is_a_504(upstreams) -> None:
    upstream = await upstreams()
    upstream.behaviour.delay_s = 3
    async with running_gateway(settings_for(ModelRoute("m", [upstream.url]), read_s=0.3)) as client:
        started = time.perf_counter()
        response = await client.post("/v1/chat/completions", json=CHAT)
    assert_openai_error(response, 504, "upstream_timeout")
    assert time.perf_counter() - started < 2


async def test_backend_errors_keep_their_status_and_message(upstreams) -> None:
    upstream = await upstreams()
    upstream.behaviour.error_status = 400
    upstream.behaviour.error_body = json.dumps(
        {"error": {"message": "max_tokens is too large", "type": "BadRequestError", "param": "max_tokens", "code": 400}}
    ).encode()
    async with running_gateway(settings_for(ModelRoute("m", [upstream.url]))) as client:
        plain = await client.post("/v1/chat/completions", json=CHAT)
        streamed = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    for response in (plain, streamed):
        error = assert_openai_error(response, 400)
        assert error["message"] == "max_tokens is too large"
        assert error["param"] == "max_tokens"


async def test_non_json_backend_error_is_a_502(upstreams) -> None:
    upstream = await upstreams()
    upstream.behaviour.error_status = 500
    upstream.behaviour.error_body = b"Internal Server Error"
    async with running_gateway(settings_for(ModelRoute("m", [upstream.url]))) as client:
        response = await client.post("/v1/chat/completions", json=CHAT)
    assert "Internal Server Error" in assert_openai_error(response, 502, "bad_gateway")["message"]


async def test_stream_passes_through_unchanged(upstreams) -> None:
    upstream = await upstreams()
    async with running_gateway(settings_for(ModelRoute("m", [upstream.url]))) as client:
        async with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as response:
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = raw.split(b"\n\n")
    assert events[-2:] == [b"data: [DONE]", b""]
    contents = [json.loads(e[6:])["choices"][0]["delta"]["content"] for e in events[:-2]]
    assert contents == ["part0 ", "part1 ", "part2 ", ""]


async def test_stream_that_stalls_ends_with_an_error_event(upstreams) -> None:
    upstream = await upstreams()
    upstream.behaviour.stream_gap_s = 3
    async with running_gateway(settings_for(ModelRoute("m", [upstream.url]), read_s=0.3)) as client:
        async with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as response:
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
    last = raw.strip().split(b"\n\n")[-1]
    assert last.startswith(b"data: ")
    assert json.loads(last[6:])["error"]["code"] == "upstream_timeout"


async def test_client_leaving_a_stream_cancels_the_upstream_request(upstreams) -> None:
    upstream = await upstreams()
    upstream.behaviour.stream_gap_s = 0.3
    upstream.behaviour.stream_chunks = 50
    async with running_gateway(settings_for(ModelRoute("m", [upstream.url]))) as client:
        async with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as response:
            async for _ in response.aiter_raw():
                break  # read the first chunk, then hang up
        for _ in range(50):
            if upstream.observed.cancelled:
                break
            await asyncio.sleep(0.1)
    assert upstream.observed.cancelled == 1
    assert upstream.observed.completed == 0


async def test_client_leaving_a_plain_request_cancels_the_upstream_request(upstreams) -> None:
    upstream = await upstreams()
    upstream.behaviour.delay_s = 10
    async with running_gateway(settings_for(ModelRoute("m", [upstream.url]))) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/v1/chat/completions", json=CHAT, timeout=0.5)
        for _ in range(50):
            if upstream.observed.cancelled:
                break
            await asyncio.sleep(0.1)
    assert upstream.observed.cancelled == 1


async def test_backend_back_from_the_dead_is_used_again(upstreams) -> None:
    upstream = await upstreams()
    async with running_gateway(settings_for(ModelRoute("m", [upstream.url]))) as client:
        upstream.behaviour.healthy = False
        await asyncio.sleep(0.6)
        assert (await client.get("/readyz")).status_code == 503
        assert_openai_error(await client.post("/v1/chat/completions", json=CHAT), 503)
        upstream.behaviour.healthy = True
        await asyncio.sleep(0.6)
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_embeddings_only_where_the_model_serves_them(upstreams) -> None:
    upstream = await upstreams()
    routes = [ModelRoute("chat", [upstream.url]), ModelRoute("embed", [upstream.url], embeddings=True)]
    async with running_gateway(settings_for(*routes)) as client:
        refused = await client.post("/v1/embeddings", json={"model": "chat", "input": "x"})
        served = await client.post("/v1/embeddings", json={"model": "embed", "input": ["x"]})
        unknown = await client.post("/v1/embeddings", json={"model": "nope", "input": "x"})
    assert_openai_error(refused, 404, "model_not_found")
    assert served.status_code == 200 and served.json()["data"][0]["embedding"] == [0.1, 0.2]
    assert_openai_error(unknown, 404, "model_not_found")


async def test_bad_requests_never_reach_the_upstream(upstreams) -> None:
    upstream = await upstreams()
    settings = settings_for(ModelRoute("m", [upstream.url]), max_body_bytes=1000)
    async with running_gateway(settings) as client:
        malformed = await client.post("/v1/chat/completions", content=b'{"model": "m", "messages": [')
        invalid = await client.post("/v1/chat/completions", json={"model": "m", "messages": "hi"})
        unknown_model = await client.post("/v1/chat/completions", json={**CHAT, "model": "other"})
        too_big = await client.post("/v1/completions", json={"model": "m", "prompt": "x" * 5000})
        no_route = await client.post("/v1/nothing", json=CHAT)
        wrong_method = await client.get("/v1/chat/completions")
    assert assert_openai_error(malformed, 400, "invalid_json")["type"] == "invalid_request_error"
    assert assert_openai_error(invalid, 400)["param"] == "messages"
    assert assert_openai_error(unknown_model, 404, "model_not_found")["param"] == "model"
    assert_openai_error(too_big, 413)
    assert_openai_error(no_route, 404)
    assert_openai_error(wrong_method, 405)
    assert "POST" in wrong_method.headers["allow"]  # RFC 9110; found by the schema fuzzing
    assert upstream.observed.bodies == []


async def test_healthz_answers_without_backends(upstreams) -> None:
    async with running_gateway(settings_for(ModelRoute("m", [f"http://127.0.0.1:{free_port()}"]))) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_request_caps_are_400s_that_never_reach_the_upstream(upstreams) -> None:
    from gateway.config import RequestLimitSettings

    upstream = await upstreams()
    settings = settings_for(
        ModelRoute("m", [upstream.url]), limits=RequestLimitSettings(max_tokens=100, max_messages=2)
    )
    many = [{"role": "user", "content": "x"}] * 3
    async with running_gateway(settings) as client:
        too_long = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 101})
        too_long_new = await client.post("/v1/chat/completions", json={**CHAT, "max_completion_tokens": 500})
        too_many = await client.post("/v1/chat/completions", json={**CHAT, "messages": many})
        fine = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 100})
    assert assert_openai_error(too_long, 400)["param"] == "max_tokens"
    assert assert_openai_error(too_long_new, 400)["param"] == "max_completion_tokens"
    assert assert_openai_error(too_many, 400)["param"] == "messages"
    assert fine.status_code == 200 and len(upstream.observed.bodies) == 1


async def test_a_stream_whose_error_reply_is_cut_short_gets_a_clean_error() -> None:
    """The backend answers a stream request with a 500 whose body it never finishes: an OpenAI-shaped 503."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line = await reader.readline()
        headers = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (int(h.split(b":")[1]) for h in headers.split(b"\r\n") if h.lower().startswith(b"content-length")), 0
        )
        await reader.readexactly(length)
        if request_line.startswith(b"GET /health"):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        else:
            head = (
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n"
            )
            writer.write(head + b'{"err')
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with running_gateway(settings_for(ModelRoute("m", [f"http://127.0.0.1:{port}"]))) as client:
            streamed = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    finally:
        server.close()
        await server.wait_closed()
    assert_openai_error(streamed, 502, "upstream_disconnected")


async def test_one_dropped_request_does_not_take_its_backend_out_of_rotation() -> None:
    """A request that makes the backend drop its connection gets a 502 saying so; the backend keeps serving
    everyone else (the breaker counts the failure, one is below its threshold)."""
    posts = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal posts
        while request_line := await reader.readline():
            headers = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (int(h.split(b":")[1]) for h in headers.split(b"\r\n") if h.lower().startswith(b"content-length")), 0
            )
            await reader.readexactly(length)
            if request_line.startswith(b"POST"):
                posts += 1
                if posts == 1:  # the first request "crashes" its connection
                    writer.close()
                    return
            body = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body))
            writer.write(body)
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = settings_for(ModelRoute("m", [f"http://127.0.0.1:{port}"]), health_interval_s=60)
    try:
        async with running_gateway(settings) as client:
            dropped = await client.post("/v1/chat/completions", json=CHAT)
            ready = await client.get("/readyz")
            after = [await client.post("/v1/chat/completions", json=CHAT) for _ in range(3)]
    finally:
        server.close()
        await server.wait_closed()
    error = assert_openai_error(dropped, 502, "upstream_disconnected")
    assert "closed the connection" in error["message"]
    assert ready.status_code == 200
    assert [r.status_code for r in after] == [200, 200, 200]
