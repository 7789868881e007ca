"""The OpenAI-compatible routes: validate at the edge, forward the client's own bytes, pass replies through.

Each inference route is one call of :meth:`~gateway.edge.request_path.RequestPath.handle` with its path and
request Struct; the steps live there. ``request_path`` comes by dependency injection (:mod:`gateway.providers`).
"""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Stream

from gateway.edge import schemas
from gateway.edge.request_path import RequestPath


@post("/v1/chat/completions", status_code=200)
async def chat_completions(request: Request, request_path: NamedDependency[RequestPath]) -> Response | Stream:
    return await request_path.handle(request, "/v1/chat/completions", schemas.ChatCompletionRequest)


@post("/v1/completions", status_code=200)
async def completions(request: Request, request_path: NamedDependency[RequestPath]) -> Response | Stream:
    return await request_path.handle(request, "/v1/completions", schemas.CompletionRequest)


@post("/v1/embeddings", status_code=200)
async def embeddings(request: Request, request_path: NamedDependency[RequestPath]) -> Response:
    return await request_path.handle(request, "/v1/embeddings", schemas.EmbeddingRequest)


@get("/v1/models")
async def list_models(request: Request, request_path: NamedDependency[RequestPath]) -> schemas.ModelList:
    return request_path.models(await request_path.caller_key(request))


@post("/v1/responses", status_code=200)
async def responses(request: Request, request_path: NamedDependency[RequestPath]) -> Response | Stream:
    """The Responses API (the openai Agents SDK's default), passed through to vLLM like chat completions."""
    return await request_path.handle(request, "/v1/responses", schemas.ResponsesRequest)


@get("/v1/models/{model:path}")
async def retrieve_model(
    model: FromPath[str], request: Request, request_path: NamedDependency[RequestPath]
) -> schemas.ModelCard:
    """One model (base model, alias or pinned version) as ``GET /v1/models`` lists it; 404 for what that hides."""
    key = await request_path.caller_key(request)
    # A `path` parameter (Hub ids hold slashes) comes with its leading slash.
    return request_path.model(key, model.lstrip("/"))
