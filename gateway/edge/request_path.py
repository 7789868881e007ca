"""One OpenAI inference request through the gateway, as named steps over one :class:`RequestPlan`.

:meth:`RequestPath.handle` runs, in order: **admit** (a place among the requests in flight, the caller's key
within its limits) -> **decode and limit** (the body validated, per-request caps, tokens reserved) ->
**resolve route** (the key's access; a base model's route, or an adapter version loaded on its base model's
backends; output tokens within the model's context) -> **guard** (input guards over the prompt) ->
**observe** (the prompt handed to drift detection) -> **dispatch** (the client's own bytes forwarded, the
reply passed through, streamed or not). Each step fills slots of the plan that later steps read, the way
httpx's ``Client.send`` hands one request down its chain.

This is the hot path: per request it allocates the plan and what the steps must build (the observation, the
limiter's ticket, the guards' state), and awaits only where a step waits for something.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import suppress
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response
from litestar.response import Stream
from litestar.types import Receive, Scope, Send
from opentelemetry.trace import SpanKind, Tracer

from gateway.adapters.content_routing import ContentRouter
from gateway.adapters.models import AdapterCard, adapter_cards
from gateway.adapters.service import Adapters
from gateway.config import ModelRoute, RequestLimitSettings
from gateway.domain_errors import DomainError
from gateway.drift.watch import DriftWatch
from gateway.edge.guard_work import GuardWork, guard_cost
from gateway.edge.guarding import GuardSet, RequestGuards, responses_input_texts, user_words
from gateway.edge.observe import Observation, RecordSink
from gateway.edge.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ModelCard,
    ModelList,
    ResponsesRequest,
    decode_request,
)
from gateway.errors import ContentFiltered, GuardTimeout, InvalidRequest, ModelNotFound, OpenAIError, from_domain
from gateway.security.auth import Authenticator, RateLimiter, Ticket
from gateway.security.keys import ApiKey
from gateway.upstream.backends import BackendPool
from gateway.upstream.proxy import Upstream, upstream_error
from guards import Guards
from monitor import metrics

OVERHEAD_HEADER = "x-driftgate-overhead-ms"
# Which alias `model: "auto"` chose, and how near the prompt was to its training prompts.
AUTO_ROUTE_HEADER = "x-driftgate-auto-route"
# The id of the request-log record; clients quote it in POST /v1/feedback.
REQUEST_ID_HEADER = "x-request-id"
# The adapter version that answered (e.g. "support@3"), also in the request log's `version`: lineage per answer.
ADAPTER_VERSION_HEADER = "x-driftgate-adapter-version"
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
T = TypeVar("T")
InferenceRequest = ChatCompletionRequest | CompletionRequest | EmbeddingRequest | ResponsesRequest
Audit = Callable[[str, str, str, dict | None], None]


class ClientDisconnected(Exception):
    """The client went away before the backend answered."""


class RequestPlan:
    """What the steps have learnt about one request so far (empty slots are filled by the step that knows)."""

    __slots__ = (
        "path",
        "kind",
        "observation",
        "body",
        "parsed",
        "key",
        "ticket",
        "route",
        "upstream_model",
        "guards",
        "guarded_chars",
        "reply_headers",
    )

    def __init__(self, path: str, kind: type[InferenceRequest], observation: Observation) -> None:
        self.path = path
        self.kind = kind
        self.observation = observation
        self.body = b""  # the bytes to forward: the client's, until a guard or the model swap rewrites them
        self.parsed: InferenceRequest = None  # type: ignore[assignment]  # set by decode and limit
        self.key: ApiKey | None = None  # None while the gateway runs open
        self.ticket: Ticket = None  # type: ignore[assignment]  # set by admit
        self.route: ModelRoute = None  # type: ignore[assignment]  # set by resolve route
        self.upstream_model = ""  # the name the backend knows: a served model name or a LoRA version
        self.guards: RequestGuards | None = None
        self.guarded_chars = 0  # characters of prompt text, for the guards' lane
        self.reply_headers: dict[str, str] = {}  # what a step tells the client beyond the common headers


class RequestPath:
    """The inference routes' machinery in one gateway worker, built by :meth:`gateway.runtime.Gateway.running`
    from the parts it needs."""

    def __init__(
        self,
        *,
        limits: RequestLimitSettings,
        limiter: RateLimiter,
        auth: Authenticator,
        pool: BackendPool,
        adapters: Adapters | None,
        content_router: ContentRouter | None = None,
        guards: GuardSet,
        guard_work: GuardWork,
        drift: DriftWatch | None,
        sink: RecordSink | None,
        tracer: Tracer | None,
        upstream: Upstream,
        audit: Audit,
        started_at: int,
    ) -> None:
        self._limits = limits
        self._limiter = limiter
        self._auth = auth
        self._pool = pool
        self._adapters = adapters
        self._content_router = content_router
        self._guards = guards
        self._guard_work = guard_work
        self._drift = drift
        self._sink = sink
        self._tracer = tracer
        self._upstream = upstream
        self._audit = audit
        self._started_at = started_at

    async def handle(self, request: Request, path: str, kind: type[InferenceRequest]) -> Response | Stream:
        plan = RequestPlan(path, kind, Observation(path, self._tracer, request.headers, self._sink))
        try:
            await self._admit(plan, request)
            await self._decode_and_limit(plan, request)
            await self._resolve_route(plan, request)
            _within_output_tokens(plan.parsed, plan.route.context_tokens)
            await self._guard(plan)
            self._observe(plan)
            return await self._dispatch(plan, request)
        except OpenAIError as exc:
            self._refused(plan, exc)
            raise
        except DomainError as exc:  # the adapter version could not be loaded
            error = from_domain(exc)
            self._refused(plan, error)
            raise error from exc
        except ClientDisconnected:
            plan.observation.finish(499)
            raise
        except BaseException:
            plan.observation.let_go()
            raise

    # The steps, in the order handle runs them.

    async def _admit(self, plan: RequestPlan, request: Request) -> None:
        """A place among the requests in flight (503 beyond ``limits.max_in_flight``), then the key within its
        concurrency cap and requests per minute (429). The place is given back, and the tokens charged at actual
        usage, when the request ends."""
        ticket = plan.ticket = self._limiter.enter(self._limits.max_in_flight)
        observation = plan.observation
        observation.on_end(lambda: ticket.release(_tokens_used(observation, ticket)))
        key = plan.key = await self._auth.key_for(request.headers.get("authorization"))
        if key is not None:
            await ticket.admit(key)

    async def _decode_and_limit(self, plan: RequestPlan, request: Request) -> None:
        """The body as its route's Struct (400 if invalid), within the per-request caps, its tokens reserved."""
        plan.body = await request.body()
        plan.parsed = decode_request(plan.body, plan.kind)
        tokens, plan.guarded_chars = _within_limits(plan.parsed, self._limits, plan.ticket)
        if tokens is not None:
            await plan.ticket.reserve(tokens)

    async def _resolve_route(self, plan: RequestPlan, request: Request) -> None:
        """The backends that answer: a configured model's, or an adapter version's base model's (404 for a name
        nobody serves, or one the key may not use)."""
        model = plan.parsed.model
        if self._content_router is not None and model == self._content_router.name:
            if plan.key is not None:
                plan.observation.key_id = plan.key.id
            await self._route_by_content(plan, request)
            return
        if plan.key is not None:
            plan.observation.key_id = plan.key.id
            if not plan.key.may_use(model):
                raise ModelNotFound.of(model)  # another tenant's model: as if it did not exist
        route = self._pool.route(model)
        if route is not None:
            plan.observation.model = route.name
            plan.route, plan.upstream_model = route, route.upstream_model
        else:
            await self._adapter_route(plan, request, model)
        if plan.kind is EmbeddingRequest and not plan.route.embeddings:
            raise ModelNotFound(f"The model `{plan.route.name}` does not serve embeddings.", param="model")

    async def _route_by_content(self, plan: RequestPlan, request: Request) -> None:
        """``model: "auto"``: the alias whose training prompts sit nearest to the prompt, or the fallback model
        when none is near enough; the choice goes back in ``x-driftgate-auto-route`` (and the reply's ``model``
        names the version that answered)."""
        router = self._content_router
        if plan.kind is EmbeddingRequest:
            raise ModelNotFound(f"`{router.name}` routes generation requests, not embeddings.", param="model")
        started = time.perf_counter()
        text = user_words(plan.path, msgspec.json.decode(plan.body))
        vector = await asyncio.to_thread(router.embed, text)
        key = plan.key
        choice = router.choose(vector, key.may_use if key is not None else lambda alias: True)
        metrics.AUTO_ROUTE_SECONDS.observe(time.perf_counter() - started)
        metrics.AUTO_ROUTES.labels(choice.alias or "fallback").inc()
        plan.reply_headers[AUTO_ROUTE_HEADER] = f"{choice.alias or 'fallback'}; similarity={choice.similarity:.3f}"
        if choice.alias is not None:
            await self._adapter_route(plan, request, choice.alias)
            return
        fallback = router.fallback_model()
        route = self._pool.route(fallback) if fallback is not None else None
        if route is None or (key is not None and not key.may_use(route.name)):
            raise ModelNotFound(
                f"No adapter is near enough to this prompt for `{router.name}`, and no fallback model is open to you.",
                param="model",
            )
        plan.observation.model = route.name
        plan.route, plan.upstream_model = route, route.upstream_model

    async def _adapter_route(self, plan: RequestPlan, request: Request, model: str) -> None:
        """An alias or pinned version: its base model's route and the LoRA name vLLM knows the version by."""
        if self._adapters is None:
            raise ModelNotFound.of(model)
        # Canary stickiness: the caller's own user id, else its API key, else its address.
        caller = (
            plan.parsed.user or request.headers.get("authorization") or (request.client.host if request.client else "")
        )
        resolved = await self._adapters.resolve(model, caller)
        if resolved is None:
            raise ModelNotFound.of(model)
        version, release = resolved
        plan.observation.model = version.alias
        run = version.training_run or {}
        plan.observation.hold(version.name, release, run.get("loop_run") or run.get("job"))
        route = self._pool.route(version.base_model)
        if route is None:
            raise ModelNotFound.of(model)
        plan.route, plan.upstream_model = route, version.name

    async def _guard(self, plan: RequestPlan) -> None:
        """The route's input guards over the prompt, on a guard thread: blocked (400), redacted, or passed as it
        is; past the alias's budget, refused (503) or passed unguarded, as its ``on_timeout`` says."""
        if plan.kind is EmbeddingRequest:
            return
        guards = self._guards.for_model(plan.route.name)
        if guards is None:
            return
        checking = plan.guards = plan.observation.guards = RequestGuards(guards)
        path, body = plan.path, plan.body
        try:
            plan.body = await self._guard_work.run(
                lambda deadline: checking.check_prompt(path, body, deadline),
                guards.config.budget_s,
                "input",
                guard_cost(plan.guarded_chars, body),
            )
        except GuardTimeout:
            if guards.config.on_timeout == "refuse":
                raise

    def _observe(self, plan: RequestPlan) -> None:
        """Hand the prompt (as the guards left it) to drift detection, when its model and version are watched."""
        observation = plan.observation
        if self._drift is not None and self._drift.watches(observation.model, observation.version):
            text = (
                plan.guards.user_text
                if plan.guards is not None
                else user_words(plan.path, msgspec.json.decode(plan.body))
            )
            if not text:  # nothing the user typed, or guards that timed out and passed it unread
                return
            self._drift.submit(observation.model, observation.id, text)

    def _dispatch(self, plan: RequestPlan, request: Request) -> Awaitable[Response | Stream]:
        """Forward to the route's backends under the backend's own model name (not a coroutine itself: the
        forward it picks is awaited directly)."""
        if plan.upstream_model != plan.parsed.model:
            plan.body = _with_model(plan.body, plan.upstream_model)
        if getattr(plan.parsed, "stream", False):
            plan.observation.stream = True
            return self._forward_stream(plan, request)
        return self._forward(plan, request)

    def _refused(self, plan: RequestPlan, error: OpenAIError) -> None:
        observation = plan.observation
        error.headers[REQUEST_ID_HEADER] = observation.id  # a refusal is logged too: the client can quote it
        if isinstance(error, ContentFiltered):
            reasons = [d.entity for d in plan.guards.decisions if d.action == "block"] if plan.guards else []
            self._audit("gateway", "guard.blocked", f"request:{observation.id}", {"stage": "input", "why": reasons})
        observation.finish(error.status_code)

    async def _forward(self, plan: RequestPlan, request: Request) -> Response:
        observation, path, body, model = plan.observation, plan.path, plan.body, plan.route.name
        reply = await _traced_upstream(
            request, observation, lambda headers: self._upstream.post(model, path, body, headers)
        )
        observation.upstream_s = reply.upstream_s
        observation.backend = reply.backend
        if reply.status != 200:
            raise upstream_error(reply.status, reply.body)
        observation.usage_from_body(reply.body)
        answer = await self._checked_answer(plan.guards, path, reply.body)
        overhead_ms = observation.overhead_ms()
        observation.finish(200, overhead_ms)
        headers = {**plan.reply_headers, **_answer_headers(observation, overhead_ms)}
        return Response(answer, media_type="application/json", headers=headers)

    async def _checked_answer(self, guards: RequestGuards | None, path: str, body: bytes) -> bytes:
        """A whole answer through the output guards, on a guard thread within the alias's budget."""
        if guards is None:
            return body
        config = guards.guards.config
        try:
            return await self._guard_work.run(
                lambda deadline: guards.check_answer(path, body, deadline),
                config.budget_s,
                "output",
                guard_cost(len(body), body),
            )
        except GuardTimeout:
            if config.on_timeout == "refuse":
                raise
            return body

    async def _forward_stream(self, plan: RequestPlan, request: Request) -> Stream:
        observation, path, body, model = plan.observation, plan.path, plan.body, plan.route.name
        upstream_stream = await _traced_upstream(
            request, observation, lambda headers: self._upstream.stream(model, path, body, headers)
        )
        observation.upstream_s = upstream_stream.waited_s
        observation.backend = upstream_stream.backend
        overhead_ms = observation.overhead_ms()
        metrics.OVERHEAD.labels(path).observe(overhead_ms / 1000)
        headers = {**_SSE_HEADERS, **plan.reply_headers, **_answer_headers(observation, overhead_ms)}
        chunks = upstream_stream.__aiter__()
        if plan.guards is not None:
            chunks = plan.guards.filter_stream(path, chunks)
        return _ObservedStream(observation, observation.watch_stream(chunks), headers=headers)

    # What the other /v1 routes share with inference.

    @property
    def limits(self) -> RequestLimitSettings:
        return self._limits

    @property
    def guard_work(self) -> GuardWork:
        return self._guard_work

    async def caller_key(self, request: Request) -> ApiKey | None:
        """The caller's API key (None while the gateway runs open), within its requests-per-minute limit."""
        key = await self._auth.key_for(request.headers.get("authorization"))
        if key is not None:
            await self._limiter.check_shared(key)
        return key

    def models(self, key: ApiKey | None) -> ModelList:
        """Base models and adapter aliases (with their pinned versions) that ``key`` may use."""
        cards = [ModelCard(id=route.name, created=self._started_at) for route in self._pool.routes]
        if self._adapters is not None:
            cards.extend(adapter_cards(self._adapters.snapshot))
        if key is not None:
            cards = [card for card in cards if key.may_use(card.id)]
        if self._content_router is not None:  # open to every key: it chooses among the key's own adapters
            cards.append(ModelCard(id=self._content_router.name, created=self._started_at))
        return ModelList(cards)

    def model(self, key: ApiKey | None, name: str) -> ModelCard:
        """One model as ``GET /v1/models`` would list it, or any version a request could pin; 404 for what that
        hides from ``key``."""
        card = self._model_card(name)
        auto = self._content_router is not None and name == self._content_router.name
        if card is None or (key is not None and not auto and not key.may_use(card.id)):
            raise ModelNotFound.of(name)
        return card

    def _model_card(self, name: str) -> ModelCard | None:
        if self._content_router is not None and name == self._content_router.name:
            return ModelCard(id=name, created=self._started_at)
        route = self._pool.route(name)
        if route is not None:
            return ModelCard(id=route.name, created=self._started_at)
        if self._adapters is None:
            return None
        snapshot = self._adapters.snapshot
        listed = next((card for card in adapter_cards(snapshot) if card.id == name), None)
        if listed is not None:
            return listed
        version = snapshot.versions.get(name)
        if version is None or version.stage == "archived" or version.alias not in snapshot.aliases:
            return None
        return AdapterCard(
            id=version.name, created=int(version.created), parent=version.base_model, version=version.name
        )

    def guards_for(self, model: str, version: str | None) -> Guards | None:
        """The guards of the route that answered a logged request (a base model, or an adapter version's base)."""
        route = self._pool.route(model)
        if route is None and self._adapters is not None:
            found = self._adapters.snapshot.versions.get(version or "")
            route = self._pool.route(found.base_model) if found is not None else None
        return self._guards.for_model(route.name) if route is not None else None


def _within_limits(parsed: InferenceRequest, limits: RequestLimitSettings, ticket: Ticket) -> tuple[int | None, int]:
    """Check the per-request caps; the tokens to count against the key's tokens per minute (if it has a limit)
    and the characters of prompt text."""
    _within_fan_out(parsed, limits)
    _within_output_tokens(parsed, limits.max_tokens)
    chars, token_ids = prompt_size(parsed)
    if limits.max_guarded_chars is not None and chars > limits.max_guarded_chars:
        raise InvalidRequest(
            f"The prompt holds {chars} characters of text; at most {limits.max_guarded_chars} per request.",
            param=_prompt_param(parsed),
        )
    if ticket.key is not None and ticket.key.tpm is not None:
        prompt = ticket.prompt_estimate = token_ids + (chars + 3) // 4
        return prompt + _completion_budget(parsed), chars
    return None, chars


def _within_fan_out(parsed: InferenceRequest, limits: RequestLimitSettings) -> None:
    """Counts that multiply the gateway's or the backend's work: messages, prompt items, content parts, tools
    and choices, each refused with a 400 naming its field."""
    messages = getattr(parsed, "messages", None) or ()
    if limits.max_messages is not None and len(messages) > limits.max_messages:
        raise InvalidRequest(f"At most {limits.max_messages} messages per request.", param="messages")
    items = getattr(parsed, "prompt", None)
    if isinstance(parsed, EmbeddingRequest):
        items = parsed.input
    if isinstance(items, list) and limits.max_prompt_items is not None and len(items) > limits.max_prompt_items:
        field = _prompt_param(parsed)
        raise InvalidRequest(f"At most {limits.max_prompt_items} items in `{field}` per request.", param=field)
    if limits.max_content_parts is not None and _content_parts(parsed) > limits.max_content_parts:
        field = "input" if isinstance(parsed, ResponsesRequest) else "messages"
        raise InvalidRequest(f"At most {limits.max_content_parts} content parts per request.", param=field)
    tools = getattr(parsed, "tools", None)
    if tools is not None and limits.max_tools is not None and len(tools) > limits.max_tools:
        raise InvalidRequest(f"At most {limits.max_tools} tools per request.", param="tools")
    n = getattr(parsed, "n", None)
    if n is not None and limits.max_n is not None and n > limits.max_n:
        raise InvalidRequest(f"n may be at most {limits.max_n}.", param="n")


def _within_output_tokens(parsed: InferenceRequest, cap: int | None) -> None:
    if cap is None:
        return
    for field in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        asked = getattr(parsed, field, None)
        if asked is not None and asked > cap:
            raise InvalidRequest(f"{field} may be at most {cap}.", param=field)


def _content_parts(parsed: InferenceRequest) -> int:
    if isinstance(parsed, ChatCompletionRequest):
        return sum(len(m.content) for m in parsed.messages if isinstance(m.content, list))
    if isinstance(parsed, ResponsesRequest) and isinstance(parsed.input, list):
        return len(parsed.input) + sum(
            len(item["content"]) for item in parsed.input if isinstance(item.get("content"), list)
        )
    return 0


def _prompt_param(parsed: InferenceRequest) -> str:
    if isinstance(parsed, ChatCompletionRequest):
        return "messages"
    return "prompt" if isinstance(parsed, CompletionRequest) else "input"


def prompt_size(parsed: InferenceRequest) -> tuple[int, int]:
    """(characters of prompt text, token ids sent as numbers): what the guards read and what a token estimate
    starts from."""
    chars = tokens = 0
    parts: list = []
    if isinstance(parsed, ChatCompletionRequest):
        for message in parsed.messages:
            if isinstance(message.content, str):
                chars += len(message.content)
            elif message.content:
                chars += sum(len(p.get("text") or "") for p in message.content if isinstance(p, dict))
    elif isinstance(parsed, ResponsesRequest):
        chars += len(parsed.instructions or "") + sum(len(text) for text in responses_input_texts(parsed.input))
    else:
        prompt = parsed.input if isinstance(parsed, EmbeddingRequest) else parsed.prompt
        parts = [prompt] if isinstance(prompt, str) else prompt
    for part in parts:
        if isinstance(part, str):
            chars += len(part)
        else:
            tokens += len(part) if isinstance(part, list) else 1
    return chars, tokens


def _completion_budget(parsed: InferenceRequest) -> int:
    asked = (
        getattr(parsed, "max_completion_tokens", None)
        or getattr(parsed, "max_tokens", None)
        or getattr(parsed, "max_output_tokens", None)
        or 0
    )
    return asked * (getattr(parsed, "n", None) or 1)


def _tokens_used(observation: Observation, ticket: Ticket) -> int | None:
    """What the request cost: the backend's usage, else for a stream its prompt estimate plus one per event."""
    if observation.usage is not None:
        return observation.usage.prompt_tokens + observation.usage.completion_tokens
    if observation.stream and observation.stream_events:
        return ticket.prompt_estimate + observation.stream_events
    return None


def _answer_headers(observation: Observation, overhead_ms: float) -> dict[str, str]:
    headers = {OVERHEAD_HEADER: f"{overhead_ms:.3f}", REQUEST_ID_HEADER: observation.id}
    if observation.version is not None:
        headers[ADAPTER_VERSION_HEADER] = observation.version
    return headers


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
