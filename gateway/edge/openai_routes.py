"""The OpenAI-compatible routes: validate at the edge, forward the client's own bytes, pass replies through.

Each inference route is one call of :meth:`~gateway.edge.request_path.RequestPath.handle` with its path and
request Struct; the steps live there. ``request_path`` comes by dependency injection (:mod:`gateway.providers`).
"""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.response import Stream

from gateway.edge.request_path import RequestPath
from gateway.edge.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, ModelList


@post("/v1/chat/completions", status_code=200)
async def chat_completions(request: Request, request_path: NamedDependency[RequestPath]) -> Response | Stream:
    return await request_path.handle(request, "/v1/chat/completions", ChatCompletionRequest)


@post("/v1/completions", status_code=200)
async def completions(request: Request, request_path: NamedDependency[RequestPath]) -> Response | Stream:
    return await request_path.handle(request, "/v1/completions", CompletionRequest)


@post("/v1/embeddings", status_code=200)
async def embeddings(request: Request, request_path: NamedDependency[RequestPath]) -> Response:
    return await request_path.handle(request, "/v1/embeddings", EmbeddingRequest)


@get("/v1/models")
async def list_models(request: Request, request_path: NamedDependency[RequestPath]) -> ModelList:
    return request_path.models(await request_path.caller_key(request))
