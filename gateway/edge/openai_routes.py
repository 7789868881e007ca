"""The OpenAI-compatible routes: validate at the edge, forward the client's own bytes, pass replies through.

Each inference route is one call of :meth:`~gateway.edge.request_path.RequestPath.handle` with its path and
request Struct; the steps live there.
"""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.response import Stream

from gateway.edge.request_path import RequestPath
from gateway.edge.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, ModelList


@post("/v1/chat/completions", status_code=200)
async def chat_completions(request: Request, state: State) -> Response | Stream:
    return await _path(state).handle(request, "/v1/chat/completions", ChatCompletionRequest)


@post("/v1/completions", status_code=200)
async def completions(request: Request, state: State) -> Response | Stream:
    return await _path(state).handle(request, "/v1/completions", CompletionRequest)


@post("/v1/embeddings", status_code=200)
async def embeddings(request: Request, state: State) -> Response:
    return await _path(state).handle(request, "/v1/embeddings", EmbeddingRequest)


@get("/v1/models")
async def list_models(request: Request, state: State) -> ModelList:
    path = _path(state)
    return path.models(await path.caller_key(request))


def _path(state: State) -> RequestPath:
    return state.gateway.request_path
