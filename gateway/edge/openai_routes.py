"""The OpenAI-compatible routes: validate at the edge, forward the client's own bytes, pass replies through."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import suppress
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.response import Stream
from litestar.types import Receive, Scope, Send
from opentelemetry.trace import SpanKind

from gateway import errors
from gateway.adapters.models import adapter_cards
from gateway.config import ModelRoute, RequestLimits
from gateway.domain_errors import DomainError
from gateway.edge.guarding import RequestGuards, user_words
from gateway.edge.observe import Observation
from gateway.edge.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ModelCard,
    ModelList,
    decode_request,
)
from gateway.errors import ContentFiltered, InvalidRequest, ModelNotFound, OpenAIError
from gateway.runtime import Gateway
from gateway.security.auth import Ticket
from gateway.security.keys import ApiKey
from gateway.upstream.proxy import upstream_error
from monitor import metrics

OVERHEAD_HEADER = "x-driftgate-overhead-ms"
# The id of the request-log record; clients quote it in POST /v1/feedback.
REQUEST_ID_HEADER = "x-request-id"
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client went away before the backend answered."""


@post("/v1/chat/completions", status_code=200)
async def chat_completions(request: Request, state: State) -> Response | Stream:
    return await _handle(request, state.gateway, "/v1/chat/completions", ChatCompletionRequest)


@post("/v1/completions", status_code=200)
async def completions(request: Request, state: State) -> Response | Stream:
    return await _handle(request, state.gateway, "/v1/completions", CompletionRequest)


@post("/v1/embeddings", status_code=200)
async def embeddings(request: Request, state: State) -> Response:
    return await _handle(request, state.gateway, "/v1/embeddings", EmbeddingRequest)


@get("/v1/models")
async def list_models(request: Request, state: State) -> ModelList:
    gateway: Gateway = state.gateway
    key = await caller_key(request, gateway)
    cards = [ModelCard(id=route.name, created=gateway.started_at) for route in gateway.pool.routes]
    if gateway.adapters is not None:
        cards.extend(adapter_cards(gateway.adapters.snapshot))
    if key is not None:
        cards = [card for card in cards if key.may_use(card.id)]
    return ModelList(cards)


async def _handle(
    request: Request,
    gateway: Gateway,
    path: str,
    kind: type[ChatCompletionRequest] | type[CompletionRequest] | type[EmbeddingRequest],
) -> Response | Stream:
    sink = gateway.request_log.submit if gateway.request_log is not None else None
    observation = Observation(path, gateway.tracer, request.headers, sink)
    try:
        key, ticket = await _admitted(request, gateway, observation)
        body = await request.body()
        parsed = decode_request(body, kind)
        tokens = _within_limits(parsed, gateway.settings.limits, ticket)
        if tokens is not None:
            await ticket.reserve(tokens)
        if key is not None:
            observation.key_id = key.id
            if not key.may_use(parsed.model):
                raise ModelNotFound.of(parsed.model)  # another tenant's model: as if it did not exist
        route = gateway.pool.route(parsed.model)
        if route is not None:
            observation.model = route.name
            upstream_model = route.upstream_model
        else:
            route, upstream_model = await _adapter_route(request, gateway, parsed, observation)
        if kind is EmbeddingRequest and not route.embeddings:
            raise ModelNotFound(f"The model `{route.name}` does not serve embeddings.", param="model")
        guards = gateway.guards.for_model(route.name) if kind is not EmbeddingRequest else None
        request_guards = RequestGuards(guards) if guards is not None else None
        if request_guards is not None:
            observation.guards = request_guards
            body = request_guards.check_prompt(path, body)
        if gateway.drift is not None and gateway.drift.watches(observation.model, observation.version):
            text = (
                request_guards.user_text if request_guards is not None else user_words(path, msgspec.json.decode(body))
            )
            gateway.drift.submit(observation.model, observation.id, text)
        if upstream_model != parsed.model:
            body = _with_model(body, upstream_model)
        if getattr(parsed, "stream", False):
            observation.stream = True
            return await _forward_stream(request, gateway, observation, request_guards, route.name, path, body)
        return await _forward(request, gateway, observation, request_guards, route.name, path, body)
    except OpenAIError as exc:
        if isinstance(exc, ContentFiltered):
            reasons = (
                [d.entity for d in observation.guards.decisions if d.action == "block"] if observation.guards else []
            )
            gateway.record("gateway", "guard.blocked", f"request:{observation.id}", {"stage": "input", "why": reasons})
        observation.finish(exc.status_code)
        raise
    except DomainError as exc:  # loading the adapter version failed
        error = errors.from_domain(exc)
        observation.finish(error.status_code)
        raise error from exc
    except ClientDisconnected:
        observation.finish(499)
        raise
    except BaseException:
        observation.let_go()
        raise


def _within_limits(
    parsed: ChatCompletionRequest | CompletionRequest | EmbeddingRequest, limits: RequestLimits, ticket: Ticket
) -> int | None:
    """Check the per-request caps; the tokens to count against the key's tokens per minute, if it has a limit."""
    if limits.max_messages is not None and len(getattr(parsed, "messages", ())) > limits.max_messages:
        raise InvalidRequest(f"At most {limits.max_messages} messages per request.", param="messages")
    if limits.max_tokens is not None:
        for field in ("max_tokens", "max_completion_tokens"):
            asked = getattr(parsed, field, None)
            if asked is not None and asked > limits.max_tokens:
                raise InvalidRequest(f"{field} may be at most {limits.max_tokens}.", param=field)
    if ticket.key is not None and ticket.key.tpm is not None:
        prompt = estimate_prompt_tokens(parsed)
        ticket.prompt_estimate = prompt
        return prompt + _completion_budget(parsed)
    return None


def estimate_prompt_tokens(parsed: ChatCompletionRequest | CompletionRequest | EmbeddingRequest) -> int:
    """Prompt characters / 4 (token ids count one each): a tokenizer-free estimate, corrected by actual usage."""
    chars = tokens = 0
    parts: list = []
    if isinstance(parsed, ChatCompletionRequest):
        for message in parsed.messages:
            if isinstance(message.content, str):
                chars += len(message.content)
            elif message.content:
                chars += sum(len(p.get("text") or "") for p in message.content if isinstance(p, dict))
    else:
        prompt = parsed.input if isinstance(parsed, EmbeddingRequest) else parsed.prompt
        parts = [prompt] if isinstance(prompt, str) else prompt
    for part in parts:
        if isinstance(part, str):
            chars += len(part)
        else:
            tokens += len(part) if isinstance(part, list) else 1
    return tokens + (chars + 3) // 4


def _completion_budget(parsed: ChatCompletionRequest | CompletionRequest | EmbeddingRequest) -> int:
    asked = getattr(parsed, "max_completion_tokens", None) or getattr(parsed, "max_tokens", None) or 0
    return asked * (getattr(parsed, "n", None) or 1)


async def caller_key(request: Request, gateway: Gateway) -> ApiKey | None:
    """The caller's API key (None while the gateway runs open), within its requests-per-minute limit."""
    if gateway.auth is None:
        return None
    key = await gateway.auth.key_for(request.headers.get("authorization"))
    if key is not None:
        await gateway.limiter.check_shared(key)
    return key


async def _admitted(request: Request, gateway: Gateway, observation: Observation) -> tuple[ApiKey | None, Ticket]:
    """An inference request's place among those in flight (503 beyond ``limits.max_in_flight``), then its key
    within the key's concurrency cap and requests per minute (429). The place is given back, and the tokens
    charged at actual usage, when the request ends."""
    ticket = gateway.limiter.enter(gateway.settings.limits.max_in_flight)
    observation.on_end(lambda: ticket.release(_tokens_used(observation, ticket)))
    if gateway.auth is None:
        return None, ticket
    key = await gateway.auth.key_for(request.headers.get("authorization"))
    if key is not None:
        await ticket.admit(key)
    return key, ticket


def _tokens_used(observation: Observation, ticket: Ticket) -> int | None:
    """What the request cost: the backend's usage, else for a stream its prompt estimate plus one per event."""
    if observation.usage is not None:
        return observation.usage.prompt_tokens + observation.usage.completion_tokens
    if observation.stream and observation.stream_events:
        return ticket.prompt_estimate + observation.stream_events
    return None


async def _adapter_route(
    request: Request,
    gateway: Gateway,
    parsed: ChatCompletionRequest | CompletionRequest | EmbeddingRequest,
    observation: Observation,
) -> tuple[ModelRoute, str]:
    """An alias or pinned version: its base model's route and the LoRA name vLLM knows the version by."""
    if gateway.adapters is None:
        raise ModelNotFound.of(parsed.model)
    # Canary stickiness: the caller's own user id, else its API key, else its address.
    caller = parsed.user or request.headers.get("authorization") or (request.client.host if request.client else "")
    resolved = await gateway.adapters.resolve(parsed.model, caller)
    if resolved is None:
        raise ModelNotFound.of(parsed.model)
    version, release = resolved
    observation.model = version.alias
    observation.hold(version.name, release)
    route = gateway.pool.route(version.base_model)
    if route is None:
        raise ModelNotFound.of(parsed.model)
    return route, version.name


async def _forward(
    request: Request,
    gateway: Gateway,
    observation: Observation,
    request_guards: RequestGuards | None,
    model: str,
    path: str,
    body: bytes,
) -> Response:
    reply = await _traced_upstream(
        request, observation, lambda headers: gateway.upstream.post(model, path, body, headers)
    )
    observation.upstream_s = reply.upstream_s
    observation.backend = reply.backend
    if reply.status != 200:
        raise upstream_error(reply.status, reply.body)
    observation.usage_from_body(reply.body)
    answer = request_guards.check_answer(path, reply.body) if request_guards is not None else reply.body
    overhead_ms = observation.overhead_ms()
    observation.finish(200, overhead_ms)
    headers = {OVERHEAD_HEADER: f"{overhead_ms:.3f}", REQUEST_ID_HEADER: observation.id}
    return Response(answer, media_type="application/json", headers=headers)


async def _forward_stream(
    request: Request,
    gateway: Gateway,
    observation: Observation,
    request_guards: RequestGuards | None,
    model: str,
    path: str,
    body: bytes,
) -> Stream:
    upstream_stream = await _traced_upstream(
        request, observation, lambda headers: gateway.upstream.stream(model, path, body, headers)
    )
    observation.upstream_s = upstream_stream.waited_s
    observation.backend = upstream_stream.backend
    overhead_ms = observation.overhead_ms()
    metrics.OVERHEAD.labels(path).observe(overhead_ms / 1000)
    headers = {**_SSE_HEADERS, OVERHEAD_HEADER: f"{overhead_ms:.3f}", REQUEST_ID_HEADER: observation.id}
    chunks = upstream_stream.__aiter__()
    if request_guards is not None:
        chunks = request_guards.filter_stream(path, chunks)
    return _ObservedStream(observation, observation.watch_stream(chunks), headers=headers)


class _ObservedStream(Stream):
    """A stream that ends its request however its response ends.

    The chunks' own ``finally`` finishes the observation (in-flight place, key concurrency, adapter version) and
    gives the backend back, but only once they are iterated: if the body never starts (the server's ``send``
    raised on the headers because the client had left, or the response task was cancelled first) a generator
    that never ran has nothing to clean up. Finishing is idempotent, so this adds no second count.
    """

    __slots__ = ("_chunks", "_observation")

    def __init__(self, observation: Observation, chunks: AsyncGenerator[bytes, None], headers: dict[str, str]) -> None:
        super().__init__(chunks, media_type="text/event-stream", headers=headers)
        self._observation = observation
        self._chunks = chunks

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        return _Ending(super().to_asgi_response(*args, **kwargs), self._end)

    async def _end(self) -> None:
        try:
            await self._chunks.aclose()  # one left at a yield finishes now, not when collected
        finally:
            self._observation.finish(499)  # a no-op unless the stream never started


class _Ending:
    """An ASGI response followed, whatever happens to it, by ``end``."""

    __slots__ = ("_end", "_response")

    def __init__(self, response: Callable[[Scope, Receive, Send], Awaitable[None]], end: Callable[[], Awaitable[None]]):
        self._response = response
        self._end = end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._response(scope, receive, send)
        finally:
            await self._end()


async def _traced_upstream(
    request: Request, observation: Observation, call: Callable[[dict[str, str]], Awaitable[T]]
) -> T:
    """The backend call inside an ``upstream`` span (its context goes to vLLM), cancelled if the client leaves."""
    span = observation.child("upstream", SpanKind.CLIENT)
    try:
        return await _unless_disconnected(request, call(observation.upstream_headers(span)))
    finally:
        if span is not None:
            span.end()


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
