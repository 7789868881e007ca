"""The gateway's OpenAPI 3.1 document at ``GET /openapi.json``, built from the msgspec Structs of the edge.

Why a route of our own and not Litestar's OpenAPI plugin: the OpenAI handlers take the raw ``Request``
and decode its bytes with msgspec themselves (fast, and unknown fields still reach vLLM untouched), so
Litestar sees no body parameter to describe. Making the plugin describe them would mean overriding every
operation by hand (``operation_class``/``responses=``), and Litestar would translate the Structs with its
own schema generator, which can disagree with what msgspec actually accepts. Here the request schemas
come from ``msgspec.json.schema_components`` over the very types ``decode_request`` validates against,
so the document cannot drift from the validator; it is built once per process and served as bytes, and
``openapi_config`` stays ``None`` (no schema work at start, no extra UI routes).

The 200 bodies of the generation routes are vLLM's own replies, passed through: the Structs below that
describe them are documentation only (the fields every OpenAI-compatible server sends; more may come).

Every other route (``/admin/*``, ``/v1/models/{model}``, ops, ``/docs``) is generated from the app's own route
table: its path and path parameters from the route, its query parameters from the handler's signature, its
success status and body schema from the handler's return type. What a handler's signature cannot say (the
Struct it decodes its body into, its errors, a summary) is the :data:`OPERATIONS` entry of its function;
:func:`undocumented` lists routes without one (``tests/unit/test_openapi.py`` fails on any).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import Any, Literal, get_args, get_origin

import msgspec
from litestar import Litestar, Request, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import QueryParameter
from litestar.routes import HTTPRoute

from gateway.adapters import routes as adapter_routes
from gateway.adapters.merging import MergeRequest
from gateway.adapters.models import CanaryRequest, PromoteRequest, RegisterRequest
from gateway.config import RequestLimitSettings
from gateway.drift.routes import drift_state
from gateway.edge import docs_routes, schemas
from gateway.edge.feedback_routes import FeedbackReceipt, FeedbackRequest
from gateway.edge.health_routes import Readiness, prometheus_metrics
from gateway.edge.moderations_routes import ModerationList, ModerationRequest
from gateway.edge.openai_routes import retrieve_model
from gateway.edge.request_path import OVERHEAD_HEADER, REQUEST_ID_HEADER
from gateway.errors import CATALOG, ErrorBody, ErrorDetail, codes_by_status
from gateway.loop import routes as loop_routes
from gateway.loop.controller import IncomingPayload
from gateway.security import key_routes
from gateway.security.key_routes import CreateKeyRequest
from training.config import TrainSpec

REF = "#/components/schemas/{name}"


class ChatCompletion(msgspec.Struct):
    """A chat completion as the backend (vLLM) returned it; fields beyond these pass through as well."""

    id: str
    object: str
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: dict[str, Any] | None = None


class Completion(ChatCompletion):
    """A text completion as the backend (vLLM) returned it; fields beyond these pass through as well."""


class ResponseObject(msgspec.Struct):
    """A Responses API answer as the backend (vLLM) returned it; fields beyond these pass through as well.

    ``status`` is ``incomplete`` with ``incomplete_details.reason`` ``content_filter`` when an output guard
    stopped it.
    """

    id: str
    object: str
    created_at: int
    model: str
    status: str
    output: list[dict[str, Any]]
    usage: dict[str, Any] | None = None
    incomplete_details: dict[str, Any] | None = None


class Model(schemas.ModelCard, kw_only=True):
    """A base model, or an adapter alias or version (then with its base model and the version answering now)."""

    parent: str | None = None
    version: str | None = None


class EmbeddingList(msgspec.Struct):
    """Embeddings as the backend returned them; fields beyond these pass through as well."""

    object: str
    data: list[dict[str, Any]]
    model: str
    usage: dict[str, Any] | None = None


class StreamEvent(msgspec.Struct):
    """One server-sent event of a streamed reply: a JSON chunk as the backend sent it, or ``[DONE]`` last.

    A stream that fails after it started ends with an event whose data is an ``ErrorBody``.
    """

    data: str


class Health(msgspec.Struct):
    status: Literal["ok"]


# Structs the gateway encodes itself: msgspec writes every field (defaults included), so all are required.
_ALWAYS_COMPLETE = (ErrorBody, ErrorDetail, Readiness, Health, FeedbackReceipt)
_ERRORS = {
    "400": "Invalid request: malformed JSON, a field of the wrong type, over a limit, or blocked by a guard.",
    "401": "Missing or unknown API key (only when the gateway has keys).",
    "403": "The key is not admin-scoped.",
    "404": "Unknown model, alias, version, job, run, key or logged request, one this key may not use, or a"
    " feature that is off in this gateway.",
    "409": "The move conflicts with the current state (an archived version, a run not awaiting approval ...).",
    "413": "Request body over the gateway's `max_body_bytes`.",
    "429": "Rate limit of this key reached; see Retry-After.",
    "500": "Unexpected gateway error.",
    "502": "The backend answered something the gateway could not pass on.",
    "503": "No backend for this model is reachable; see Retry-After.",
    "504": "The backend did not answer in time.",
}


def _error_responses(*statuses: str) -> dict[str, Any]:
    """Error responses in OpenAI's shape; ``x-error-codes`` lists the catalog's codes each status can carry."""
    error = {"application/json": {"schema": {"$ref": REF.format(name="ErrorBody")}}}
    codes = codes_by_status()
    return {
        status: {"description": _ERRORS[status], "content": error, "x-error-codes": codes.get(int(status), [])}
        for status in statuses
    }


def _markdown(docstring: str) -> str:
    return " ".join(inspect.cleandoc(docstring).split()).replace("``", "`")


def _error_codes() -> dict[str, Any]:
    """Every ``error.code`` the gateway sends itself, with its status, type and meaning (``gateway.errors``)."""
    return {
        "type": "string",
        "description": "The codes of the gateway's own errors. An error the backend answered keeps the backend's"
        " code, so `ErrorDetail.code` may carry others.",
        "oneOf": [
            {"const": error.code, "description": f"{error.status_code} {error.type}: {_markdown(error.__doc__ or '')}"}
            for error in CATALOG
            if error.code is not None
        ],
    }


_CHUNK_STREAM = 'With `"stream": true`: server-sent events of chunks, ending with `data: [DONE]`.'


def _generation(
    operation_id: str, summary: str, request: str, reply: str, streams: bool, stream: str = _CHUNK_STREAM
) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": {"$ref": REF.format(name=reply)}}}
    if streams:
        content["text/event-stream"] = {
            # Open API 3.1 has no `itemSchema`: for event streams, `schema` describes each event.
            "schema": {"$ref": REF.format(name="StreamEvent"), "description": stream},
        }
    headers = {
        REQUEST_ID_HEADER: {
            "description": "The request-log id of this request (quote it in feedback).",
            "schema": {"type": "string"},
        },
        OVERHEAD_HEADER: {
            "description": "Milliseconds spent in the gateway itself, the backend's time excluded.",
            "schema": {"type": "string"},
        },
    }
    return {
        "post": {
            "operationId": operation_id,
            "summary": summary,
            "tags": ["openai"],
            "security": [{}, {"bearerAuth": []}],
            "requestBody": {
                "required": True,
                "description": "Fields not listed here are forwarded to the backend unchanged.",
                "content": {"application/json": {"schema": {"$ref": REF.format(name=request)}}},
            },
            "responses": {
                "200": {"description": "The backend's answer.", "headers": headers, "content": content},
                **_error_responses("400", "401", "404", "413", "429", "500", "502", "503", "504"),
            },
        }
    }


def _get(operation_id: str, summary: str, tag: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"get": {"operationId": operation_id, "summary": summary, "tags": [tag], "responses": responses, **extra}}


def _json(description: str, name: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": REF.format(name=name)}}}}


@dataclass(frozen=True)
class Operation:
    """What a route's handler signature does not say about it."""

    summary: str
    tag: str
    errors: tuple[str, ...] = ()
    # The Struct the handler decodes its body into (``decode_request``): the document's request body.
    body: type | None = None
    # A success body that is not JSON: its media type (described as a string).
    media_type: str | None = None
    # The success body's Struct when the return annotation is narrower than what is sent.
    response: type | None = None


_ADMIN = ("401", "403", "500")
_ADAPTER_MOVE = (*_ADMIN, "400", "404", "409", "413", "502")
OPERATIONS: dict[Callable[..., Any], Operation] = {
    retrieve_model.fn: Operation(
        "One model (base model, adapter alias or pinned version) this caller may use",
        "openai",
        ("401", "404", "429"),
        response=Model,
    ),
    adapter_routes.list_adapters.fn: Operation("Every adapter alias and its versions", "adapters", (*_ADMIN, "404")),
    adapter_routes.register.fn: Operation(
        "Register a new version of an alias (a peft LoRA directory that vLLM can read)",
        "adapters",
        (*_ADMIN, "400", "404", "413"),
        body=RegisterRequest,
    ),
    adapter_routes.show.fn: Operation("One alias and its versions", "adapters", (*_ADMIN, "404")),
    adapter_routes.version_lineage.fn: Operation(
        "A version's lineage: training run, data hashes, drift event and parent, back to the first version",
        "adapters",
        (*_ADMIN, "404"),
    ),
    adapter_routes.promote.fn: Operation(
        "Make a version the alias's production version (loaded on every backend first)",
        "adapters",
        _ADAPTER_MOVE,
        body=PromoteRequest,
    ),
    adapter_routes.canary.fn: Operation(
        "Send a sticky share of the alias's callers to a candidate version", "adapters", _ADAPTER_MOVE, CanaryRequest
    ),
    adapter_routes.merge.fn: Operation(
        "Combine registered versions (peft add_weighted_adapter) into a new candidate version of the alias",
        "adapters",
        (*_ADMIN, "400", "404", "413"),
        MergeRequest,
    ),
    adapter_routes.rollback.fn: Operation(
        "Return the alias to its previous production version", "adapters", (*_ADMIN, "404", "409", "502")
    ),
    adapter_routes.retire.fn: Operation(
        "Remove an alias (its versions are archived)", "adapters", (*_ADMIN, "404", "409")
    ),
    loop_routes.list_jobs.fn: Operation("Training jobs on this machine", "training", _ADMIN),
    loop_routes.start_job.fn: Operation(
        "Start a training job", "training", (*_ADMIN, "400", "409", "413"), body=TrainSpec
    ),
    loop_routes.show_job.fn: Operation("One training job", "training", (*_ADMIN, "404")),
    loop_routes.job_logs.fn: Operation("A training job's log", "training", (*_ADMIN, "404")),
    loop_routes.cancel_job.fn: Operation("Cancel a training job", "training", (*_ADMIN, "404")),
    loop_routes.receive_alerts.fn: Operation(
        "Alertmanager's webhook: confirmed drift starts closed-loop runs",
        "loop",
        (*_ADMIN, "400", "404", "413"),
        body=IncomingPayload,
    ),
    loop_routes.list_runs.fn: Operation("Closed-loop runs, newest first", "loop", (*_ADMIN, "404")),
    loop_routes.show_run.fn: Operation("One closed-loop run and its timeline", "loop", (*_ADMIN, "404")),
    loop_routes.approve_run.fn: Operation(
        "Approve a run that waits for a person (policy `approval: manual`)", "loop", (*_ADMIN, "404", "409")
    ),
    key_routes.list_keys.fn: Operation("API keys (never their tokens)", "keys", _ADMIN),
    key_routes.create_key.fn: Operation(
        "Create an API key; its token is in this response only", "keys", (*_ADMIN, "400", "413"), CreateKeyRequest
    ),
    key_routes.revoke_key.fn: Operation("Revoke an API key", "keys", (*_ADMIN, "404")),
    drift_state.fn: Operation("Drift state of every watched model and recent events", "drift", _ADMIN),
    prometheus_metrics.fn: Operation(
        "Prometheus metrics (`driftgate_` prefix, every worker merged)", "ops", media_type="text/plain"
    ),
    docs_routes.api_docs.fn: Operation("This API as an interactive page (Swagger UI)", "ops", media_type="text/html"),
    docs_routes.api_docs_asset.fn: Operation(
        "A script, stylesheet or image of the API page", "ops", ("404",), media_type="application/octet-stream"
    ),
}
_ADMIN_TAGS = {"adapters", "training", "loop", "keys", "drift"}
_SKIPPED_METHODS = {"OPTIONS", "HEAD"}


def _handlers(app: Litestar) -> Iterator[tuple[HTTPRoute, str, HTTPRouteHandler]]:
    """Every (route, method, handler) the app serves, Litestar's automatic OPTIONS and HEAD aside, and the pages
    marked ``include_in_schema=False`` (the operator console's HTML: a browser's, not an API client's)."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for method, entry in route.route_handler_map.items():
            handler = entry[0] if isinstance(entry, tuple) else entry
            if method not in _SKIPPED_METHODS and handler.resolve_include_in_schema():
                yield route, method, handler


def undocumented(app: Litestar) -> list[str]:
    """``METHOD path`` of every route with neither a hand-written entry nor an :data:`OPERATIONS` entry."""
    return [
        f"{method} {route.path_format}"
        for route, method, handler in _handlers(app)
        if method.lower() not in _hand_written().get(route.path_format, {}) and handler.fn not in OPERATIONS
    ]


def _success_type(handler: HTTPRouteHandler) -> Any:
    """What a handler answers with: its return type, or X of ``Response[X]``."""
    returned = handler.parsed_fn_signature.return_type.annotation
    if get_origin(returned) is Response:
        (returned,) = get_args(returned)
    return returned


def _schema(kind: Any) -> dict[str, Any]:
    if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
        return {"$ref": REF.format(name=kind.__name__)}
    return msgspec.json.schema(kind)


def _operation_id(handler: HTTPRouteHandler) -> str:
    first, *rest = handler.fn.__name__.split("_")
    return first + "".join(word.title() for word in rest)


def _generated(route: HTTPRoute, method: str, handler: HTTPRouteHandler) -> dict[str, Any]:
    """One operation from the route table, completed by the handler's :data:`OPERATIONS` entry."""
    described = OPERATIONS.get(handler.fn) or Operation(
        (handler.fn.__doc__ or handler.fn.__name__).strip().splitlines()[0], "undocumented"
    )
    if described.media_type is not None:
        content = {described.media_type: {"schema": {"type": "string"}}}
    else:
        content = {"application/json": {"schema": _schema(described.response or _success_type(handler))}}
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in route.path_parameters
    ]
    for name, field in handler.parsed_fn_signature.parameters.items():
        if isinstance(field.kwarg_definition, QueryParameter):
            parameters.append({"name": name, "in": "query", "required": False, "schema": _schema(field.annotation)})
    operation: dict[str, Any] = {
        "operationId": _operation_id(handler),
        "summary": described.summary,
        "tags": [described.tag],
        "responses": {
            str(handler.status_code): {"description": "Done.", "content": content},
            **_error_responses(*sorted(set(described.errors))),
        },
    }
    if described.tag != "ops":  # probes, metrics and the API page answer without a key
        operation["security"] = [{}, {"bearerAuth": []}]
    if described.tag in _ADMIN_TAGS:
        operation["description"] = "Needs an admin-scoped key once the gateway has keys."
    if parameters:
        operation["parameters"] = parameters
    if described.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(name=described.body.__name__)}}},
        }
    return operation


def _generated_types(app: Litestar) -> list[Any]:
    """The Structs that generated operations refer to, for the document's components."""
    found: list[Any] = []
    for _, _, handler in _handlers(app):
        described = OPERATIONS.get(handler.fn)
        if described is not None:
            found += [kind for kind in (described.body, described.response) if kind is not None]
        returned = _success_type(handler)
        if isinstance(returned, type) and issubclass(returned, msgspec.Struct):
            found.append(returned)
    return found


def _version() -> str:
    try:
        return metadata.version("driftgate")
    except metadata.PackageNotFoundError:
        return "0"


def document(app: Litestar) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``'s routes, with its per-request caps as schema bounds."""
    structs = [
        schemas.ChatCompletionRequest,
        schemas.CompletionRequest,
        schemas.EmbeddingRequest,
        schemas.ResponsesRequest,
        ChatCompletion,
        Completion,
        EmbeddingList,
        ResponseObject,
        schemas.ModelList,
        ErrorBody,
        Readiness,
        StreamEvent,
        Health,
        FeedbackRequest,
        FeedbackReceipt,
        ModerationRequest,
        ModerationList,
        *_generated_types(app),
    ]
    _, components = msgspec.json.schema_components(list(dict.fromkeys(structs)), ref_template=REF)
    for struct in _ALWAYS_COMPLETE:
        schema = components[struct.__name__]
        schema["required"] = list(schema["properties"])
    # The one rule msgspec cannot express: feedback needs a non-null rating or correction (or both).
    components["ErrorCode"] = _error_codes()
    components["ErrorDetail"]["properties"]["code"]["description"] = "One of `ErrorCode`, or the backend's own."
    _with_caps(components, _limits(app))
    components["FeedbackRequest"]["anyOf"] = [
        {"required": [field], "properties": {field: {"not": {"type": "null"}}}} for field in ("rating", "correction")
    ]
    paths = _hand_written()
    for route, method, handler in _handlers(app):
        if method.lower() not in paths.get(route.path_format, {}):
            paths.setdefault(route.path_format, {})[method.lower()] = _generated(route, method, handler)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "driftgate",
            "version": _version(),
            "description": "OpenAI-compatible LLM gateway. Every error has OpenAI's shape (`ErrorBody`).",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "A driftgate key (`dg_...`)."}
            },
        },
    }


def _limits(app: Litestar) -> RequestLimitSettings:
    """The running gateway's per-request caps (the defaults for an app that is not serving)."""
    gateway = app.state.get("gateway")
    return gateway.settings.limits if gateway is not None else RequestLimitSettings()


# Which cap bounds which field: (schema, field, keyword, limits attribute).
_CAPPED_FIELDS = (
    ("ChatCompletionRequest", "messages", "maxItems", "max_messages"),
    ("ChatCompletionRequest", "tools", "maxItems", "max_tools"),
    ("ChatCompletionRequest", "n", "maximum", "max_n"),
    ("ChatCompletionRequest", "max_tokens", "maximum", "max_tokens"),
    ("ChatCompletionRequest", "max_completion_tokens", "maximum", "max_tokens"),
    ("CompletionRequest", "prompt", "maxItems", "max_prompt_items"),
    ("CompletionRequest", "n", "maximum", "max_n"),
    ("CompletionRequest", "max_tokens", "maximum", "max_tokens"),
    ("EmbeddingRequest", "input", "maxItems", "max_prompt_items"),
    ("ResponsesRequest", "input", "maxItems", "max_content_parts"),
    ("ResponsesRequest", "tools", "maxItems", "max_tools"),
    ("ResponsesRequest", "max_output_tokens", "maximum", "max_tokens"),
)


def _with_caps(components: dict[str, Any], limits: RequestLimitSettings) -> None:
    """The per-request caps as schema bounds, so a client (or a fuzzer) knows what is refused with a 400.
    The totals (content parts over all messages, guarded characters) and a model's context length have no
    JSON Schema form; docs/reliability.md lists them."""
    for schema, field, keyword, attribute in _CAPPED_FIELDS:
        cap = getattr(limits, attribute)
        if cap is None:
            continue
        node = components[schema]["properties"][field]
        wanted = "array" if keyword == "maxItems" else "integer"
        for option in node.get("anyOf", [node]):
            if option.get("type") == wanted:
                option[keyword] = cap


def _hand_written() -> dict[str, Any]:
    """The routes whose handlers read raw bytes (so their signatures describe nothing), and a few more."""
    paths = {
        "/v1/chat/completions": _generation(
            "createChatCompletion",
            "Chat completion (streamed or not)",
            "ChatCompletionRequest",
            "ChatCompletion",
            True,
        ),
        "/v1/completions": _generation(
            "createCompletion", "Text completion (streamed or not)", "CompletionRequest", "Completion", True
        ),
        "/v1/embeddings": _generation(
            "createEmbedding",
            "Embeddings (models routed with `embeddings: true`)",
            "EmbeddingRequest",
            "EmbeddingList",
            False,
        ),
        "/v1/responses": _generation(
            "createResponse",
            "Responses API (streamed or not): the openai Agents SDK's default",
            "ResponsesRequest",
            "ResponseObject",
            True,
            'With `"stream": true`: server-sent events, each `event: TYPE` then `data: {...}`, from'
            " `response.created` to `response.completed` (or `response.incomplete`).",
        ),
        "/v1/models": _get(
            "listModels",
            "Base models and adapter aliases this caller may use",
            "openai",
            {"200": _json("The models.", "ModelList"), **_error_responses("401", "429")},
            security=[{}, {"bearerAuth": []}],
        ),
        "/v1/feedback": {
            "post": {
                "operationId": "createFeedback",
                "summary": "A rating or corrected answer for a logged request (quote its x-request-id)",
                "tags": ["feedback"],
                "security": [{}, {"bearerAuth": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": REF.format(name="FeedbackRequest")}}},
                },
                "responses": {
                    "201": _json("Stored.", "FeedbackReceipt"),
                    **_error_responses("400", "401", "404", "413", "429", "500"),
                },
            }
        },
        "/v1/moderations": {
            "post": {
                "operationId": "createModeration",
                "summary": "Moderation in OpenAI's shape, scored by the gateway's input guards",
                "tags": ["openai"],
                "security": [{}, {"bearerAuth": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": REF.format(name="ModerationRequest")}}},
                },
                "responses": {
                    "200": _json("One result per input text.", "ModerationList"),
                    **_error_responses("400", "401", "404", "413", "429", "500"),
                },
            }
        },
        "/healthz": _get("healthz", "Liveness: the event loop answers", "ops", {"200": _json("Alive.", "Health")}),
        "/readyz": _get(
            "readyz",
            "Readiness: every configured model has a healthy backend",
            "ops",
            {"200": _json("Ready.", "Readiness"), "503": _json("Some models have no healthy backend.", "Readiness")},
        ),
        "/openapi.json": _get(
            "openapi",
            "This document (OpenAPI 3.1)",
            "ops",
            {"200": {"description": "The document.", "content": {"application/json": {"schema": {"type": "object"}}}}},
        ),
    }
    return paths


@cache
def _encoded(app: Litestar) -> bytes:
    return msgspec.json.encode(document(app))


@get("/openapi.json", media_type="application/json")
async def openapi_json(request: Request) -> Response[bytes]:
    """This gateway's OpenAPI 3.1 document."""
    return Response(_encoded(request.app), media_type="application/json")
