"""The OpenAI-compatible routes: validate at the edge, forward the client's own bytes, pass replies through."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from contextlib import suppress
from typing import TypeVar

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.response import Stream

from gateway import errors
from gateway.proxy import upstream_error
from gateway.runtime import Gateway
from gateway.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ModelCard,
    ModelList,
    decode_request,
)

OVERHEAD_HEADER = "x-driftgate-overhead-ms"
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client went away before the backend answered."""


@post("/v1/chat/completions", status_code=200)
async def chat_completions(request: Request, state: State) -> Response | Stream:
    body = await request.body()
    parsed = decode_request(body, ChatCompletionRequest)
    return await _forward(request, state.gateway, parsed.model, "/v1/chat/completions", body, parsed.stream)


@post("/v1/completions", status_code=200)
async def completions(request: Request, state: State) -> Response | Stream:
    body = await request.body()
    parsed = decode_request(body, CompletionRequest)
    return await _forward(request, state.gateway, parsed.model, "/v1/completions", body, parsed.stream)


@post("/v1/embeddings", status_code=200)
async def embeddings(request: Request, state: State) -> Response:
    body = await request.body()
    parsed = decode_request(body, EmbeddingRequest)
    gateway: Gateway = state.gateway
    route = gateway.pool.route(parsed.model)
    if route is not None and not route.embeddings:
        raise errors.OpenAIError(
            404,
            f"The model `{parsed.model}` does not serve embeddings.",
            param="model",
            code="model_not_found",
        )
    return await _forward(request, gateway, parsed.model, "/v1/embeddings", body, stream=False)


@get("/v1/models")
async def list_models(state: State) -> ModelList:
    gateway: Gateway = state.gateway
    return ModelList([ModelCard(id=route.name, created=gateway.started_at) for route in gateway.pool.routes])


async def _forward(
    request: Request, gateway: Gateway, model: str, path: str, body: bytes, stream: bool
) -> Response | Stream:
    started = time.perf_counter()
    route = gateway.pool.route(model)
    if route is None:
        raise errors.model_not_found(model)
    if route.upstream_model != model:
        body = _with_model(body, route.upstream_model)
    if stream:
        upstream_stream = await _unless_disconnected(request, gateway.upstream.stream(model, path, body))
        overhead_ms = (time.perf_counter() - started - upstream_stream.waited_s) * 1000
        headers = {**_SSE_HEADERS, OVERHEAD_HEADER: f"{overhead_ms:.3f}"}
        return Stream(upstream_stream, media_type="text/event-stream", headers=headers)
    reply = await _unless_disconnected(request, gateway.upstream.post(model, path, body))
    if reply.status != 200:
        raise upstream_error(reply.status, reply.body)
    overhead_ms = (time.perf_counter() - started - reply.upstream_s) * 1000
    return Response(reply.body, media_type="application/json", headers={OVERHEAD_HEADER: f"{overhead_ms:.3f}"})


def _with_model(body: bytes, upstream_model: str) -> bytes:
    """Swap the public model name for the backend's, keeping every other field as the client sent it."""
    document = msgspec.json.decode(body)
    document["model"] = upstream_model
    return msgspec.json.encode(document)


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Run ``work`` but cancel it (and so the upstream request) if the client disconnects first.

    ASGI servers do not cancel a handler when its client leaves; the only signal is an
    ``http.disconnect`` message on ``receive`` once the body has been read.
    """
    work_task = asyncio.ensure_future(work)
    watch_task = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait((work_task, watch_task), return_when=asyncio.FIRST_COMPLETED)
        if work_task in done:
            return work_task.result()
        work_task.cancel()
        with suppress(asyncio.CancelledError):
            await work_task
        raise ClientDisconnected
    finally:
        work_task.cancel()
        watch_task.cancel()


async def _wait_for_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def client_disconnected_handler(_: Request, __: ClientDisconnected) -> Response:
    # Nobody reads this reply; 499 is nginx's convention for "client closed request" in logs.
    return Response(b"", status_code=499)
