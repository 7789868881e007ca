"""A fast fake OpenAI upstream for load tests: canned bytes, nothing computed per request (chat, streamed
or not; completions and responses, not streamed).

It stands in for vLLM so that the benchmark measures the gateway, not generation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Awaitable, Callable

from aiohttp import web

STREAM_CHUNKS = 16
ANSWER = "The quick brown fox jumps over the lazy dog."


def _answer(answer_id: str, kind: str, choice: dict) -> bytes:
    """A whole (not streamed) chat or text completion with one choice."""
    usage = {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}
    document = {"id": answer_id, "object": kind, "created": 0, "model": "bench-model", "choices": [choice]}
    return json.dumps({**document, "usage": usage}).encode()


def _events(stream_id: str = "chatcmpl-bench") -> list[bytes]:
    events = []
    for index in range(STREAM_CHUNKS):
        chunk = {
            "id": stream_id,
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "bench-model",
            "choices": [{"index": 0, "delta": {"content": f"tok{index} "}, "finish_reason": None}],
        }
        events.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    final = {
        "id": stream_id,
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "bench-model",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    }
    events.append(b"data: " + json.dumps(final).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def _response() -> bytes:
    message = {
        "type": "message",
        "id": "msg-bench",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": ANSWER, "annotations": []}],
    }
    return json.dumps(
        {
            "id": "resp-bench",
            "object": "response",
            "created_at": 0,
            "status": "completed",
            "model": "bench-model",
            "output": [message],
            "usage": {"input_tokens": 20, "output_tokens": 10, "total_tokens": 30},
        }
    ).encode()


COMPLETION = _answer(
    "chatcmpl-bench",
    "chat.completion",
    {"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"},
)
TEXT_COMPLETION = _answer("cmpl-bench", "text_completion", {"index": 0, "text": ANSWER, "finish_reason": "stop"})
STREAM, RESPONSE = b"".join(_events()), _response()
# Fault tests: streams paced this many seconds per event, with this process's pid in their id.
CHUNK_DELAY_S = 0.0


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    if b'"stream":true' not in body.replace(b" ", b""):
        return web.Response(body=COMPLETION, content_type="application/json")
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    if CHUNK_DELAY_S:
        for event in _events(f"chatcmpl-{os.getpid()}"):
            await response.write(event)
            await asyncio.sleep(CHUNK_DELAY_S)
    else:
        await response.write(STREAM)
    await response.write_eof()
    return response


def canned(body: bytes) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler answering every request with ``body`` (non-streamed endpoints other than chat)."""

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="application/json")

    return answer


async def health(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def models(_: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "bench-model", "object": "model"}]})


def main() -> None:
    parser = argparse.ArgumentParser()
    global CHUNK_DELAY_S
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="Pace streams (fault tests).")
    arguments = parser.parse_args()
    port, CHUNK_DELAY_S = arguments.port, arguments.chunk_delay_ms / 1000
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", canned(TEXT_COMPLETION))
    app.router.add_post("/v1/responses", canned(RESPONSE))
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
