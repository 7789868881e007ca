"""A fake vLLM OpenAI server for unit tests: canned answers, with knobs for delays, stalls and failures.

Runs in-process (``FakeUpstream``) or as its own process (``python -m tests.fake_upstream --port N``),
so supervision tests can kill it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Behaviour:
    """What the fake does; tests change these between requests."""

    healthy: bool = True
    # Seconds /health takes to answer (a busy server).
    health_delay_s: float = 0.0
    delay_s: float = 0.0
    # Seconds to wait before each stream chunk after the first.
    stream_gap_s: float = 0.0
    stream_chunks: int = 3
    error_status: int | None = None
    error_body: bytes = b""
    # What the model "says": the whole answer, or the content of each stream chunk.
    answer: str | None = None
    stream_parts: list[str] | None = None
    # LoRA adapters: paths whose load fails as vLLM fails on broken weights, and seconds a load takes.
    broken_adapter_paths: set[str] = field(default_factory=set)
    lora_load_s: float = 0.0
    # Refuse a load beyond this many adapters, as a backend out of LoRA slots would (None: no limit).
    max_loras: int | None = None


@dataclass
class Observed:
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    cancelled: int = 0
    completed: int = 0
    # LoRA name -> path, as vLLM's runtime LoRA API holds them; and every load/unload call, in order.
    loras: dict[str, str] = field(default_factory=dict)
    lora_calls: list[tuple[str, str]] = field(default_factory=list)


def chat_completion(model: str, text: str = "Hello from the fake upstream.") -> dict:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11},
    }


def stream_chunk(model: str, content: str, finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def response_object(model: str, text: str, status: str = "completed") -> dict:
    """A Responses API answer as vLLM sends it (the fields the openai SDK reads)."""
    message = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    return {
        "id": "resp_fake",
        "object": "response",
        "created_at": int(time.time()),
        "model": model,
        "status": status,
        "output": [message] if status == "completed" else [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 7,
            "output_tokens": 3,
            "total_tokens": 10,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }


def response_events(model: str, parts: list[str]) -> list[bytes]:
    """A streamed Responses API answer as vLLM sends it: ``event: TYPE`` and ``data: {...}`` per event."""
    text = "".join(parts)
    started = {**response_object(model, "", status="in_progress"), "usage": None}
    done = response_object(model, text)
    part = {"type": "output_text", "text": text, "annotations": []}
    where = {"item_id": "msg_fake", "output_index": 0, "content_index": 0}
    events = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {"type": "response.output_item.added", "output_index": 0, "item": {**done["output"][0], "content": []}},
        {"type": "response.content_part.added", **where, "part": {**part, "text": ""}},
        *({"type": "response.output_text.delta", **where, "delta": delta, "logprobs": []} for delta in parts),
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": done["output"][0]},
        {"type": "response.completed", "response": done},
    ]
    return [
        f"event: {event['type']}\ndata: {json.dumps({**event, 'sequence_number': number})}\n\n".encode()
        for number, event in enumerate(events)
    ]


class FakeUpstream:
    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.behaviour = Behaviour()
        self.observed = Observed()
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_post("/v1/chat/completions", self._generate)
        app.router.add_post("/v1/completions", self._generate)
        app.router.add_post("/v1/responses", self._generate)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/load_lora_adapter", self._load_lora)
        app.router.add_post("/v1/unload_lora_adapter", self._unload_lora)
        return app

    async def start(self, port: int = 0) -> FakeUpstream:
        # handler_cancellation: a client that disconnects cancels the handler, which is how tests see
        # that the gateway dropped an upstream request.
        self._runner = web.AppRunner(self.app(), handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _health(self, _: web.Request) -> web.Response:
        await asyncio.sleep(self.behaviour.health_delay_s)
        return web.Response(status=200 if self.behaviour.healthy else 503)

    async def _models(self, _: web.Request) -> web.Response:
        cards = [{"id": self.name, "object": "model", "parent": None}]
        cards += [
            {"id": name, "object": "model", "root": path, "parent": self.name}
            for name, path in self.observed.loras.items()
        ]
        return web.json_response({"object": "list", "data": cards})

    async def _load_lora(self, request: web.Request) -> web.Response:
        body = await request.json()
        name, path = body["lora_name"], body["lora_path"]
        self.observed.lora_calls.append(("load", name))
        await asyncio.sleep(self.behaviour.lora_load_s)
        if name in self.observed.loras:
            return web.json_response(
                {"error": {"message": f"The lora adapter '{name}' has already been loaded."}}, status=400
            )
        if self.behaviour.max_loras is not None and len(self.observed.loras) >= self.behaviour.max_loras:
            return web.json_response({"error": {"message": "no free LoRA slot"}}, status=400)
        if path in self.behaviour.broken_adapter_paths:
            return web.json_response({"error": {"message": f"cannot load weights from {path}"}}, status=500)
        self.observed.loras[name] = path
        return web.Response(text=f"Success: LoRA adapter '{name}' added successfully.")

    async def _unload_lora(self, request: web.Request) -> web.Response:
        name = (await request.json())["lora_name"]
        self.observed.lora_calls.append(("unload", name))
        if self.observed.loras.pop(name, None) is None:
            return web.json_response({"error": {"message": f"The lora adapter '{name}' cannot be found."}}, status=404)
        return web.Response(text=f"Success: LoRA adapter '{name}' removed successfully.")

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.observed.bodies.append(body)
        self.observed.paths.append(request.path)
        model = json.loads(body)["model"]
        return web.json_response(
            {
                "object": "list",
                "model": model,
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        )

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.observed.bodies.append(body)
        self.observed.headers.append({key.lower(): value for key, value in request.headers.items()})
        self.observed.paths.append(request.path)
        behaviour = self.behaviour
        try:
            if behaviour.delay_s:
                await asyncio.sleep(behaviour.delay_s)
            if behaviour.error_status is not None:
                return web.Response(
                    status=behaviour.error_status, body=behaviour.error_body, content_type="application/json"
                )
            document = json.loads(body)
            model = document["model"]
            if model != self.name and "@" in model and model not in self.observed.loras:
                return web.json_response({"error": {"message": f"The model `{model}` does not exist."}}, status=404)
            responses_api = request.path == "/v1/responses"
            if not document.get("stream"):
                self.observed.completed += 1
                answer = behaviour.answer or f"Hello from {self.name}."
                return web.json_response(
                    response_object(model, answer) if responses_api else chat_completion(model, answer)
                )
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            parts = behaviour.stream_parts or [f"part{index} " for index in range(behaviour.stream_chunks)]
            if responses_api:
                for event in response_events(model, parts):
                    await response.write(event)
                await response.write_eof()
                self.observed.completed += 1
                return response
            for index, part in enumerate(parts):
                if index:
                    await asyncio.sleep(behaviour.stream_gap_s)
                await response.write(stream_chunk(model, part))
            await response.write(stream_chunk(model, "", finish="stop"))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            self.observed.completed += 1
            return response
        except asyncio.CancelledError:
            self.observed.cancelled += 1
            raise


async def _main(port: int) -> None:
    upstream = await FakeUpstream().start(port)
    print(f"fake upstream on {upstream.url}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(_main(parser.parse_args().port))
