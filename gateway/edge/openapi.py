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
"""

from __future__ import annotations

import inspect
from functools import cache
from importlib import metadata
from typing import Any, Literal

import msgspec
from litestar import Response, get

from gateway.edge.feedback_routes import FeedbackReceipt, FeedbackRequest
from gateway.edge.health_routes import Readiness
from gateway.edge.request_path import OVERHEAD_HEADER, REQUEST_ID_HEADER
from gateway.edge.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, ModelList
from gateway.errors import CATALOG, ErrorBody, ErrorDetail, codes_by_status

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
    "404": "Unknown model or logged request, or one this key may not use.",
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


def _generation(operation_id: str, summary: str, request: str, reply: str, streams: bool) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": {"$ref": REF.format(name=reply)}}}
    if streams:
        content["text/event-stream"] = {
            # Open API 3.1 has no `itemSchema`: for event streams, `schema` describes each event.
            "schema": {"$ref": REF.format(name="StreamEvent")},
            "description": 'With `"stream": true`: server-sent events of chunks, ending with `data: [DONE]`.',
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


def _version() -> str:
    try:
        return metadata.version("driftgate")
    except metadata.PackageNotFoundError:
        return "0"


@cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a fresh build per process; it depends on no settings)."""
    structs = [
        ChatCompletionRequest,
        CompletionRequest,
        EmbeddingRequest,
        ChatCompletion,
        Completion,
        EmbeddingList,
        ModelList,
        ErrorBody,
        Readiness,
        StreamEvent,
        Health,
        FeedbackRequest,
        FeedbackReceipt,
    ]
    _, components = msgspec.json.schema_components(structs, ref_template=REF)
    for struct in _ALWAYS_COMPLETE:
        schema = components[struct.__name__]
        schema["required"] = list(schema["properties"])
    # The one rule msgspec cannot express: feedback needs a non-null rating or correction (or both).
    components["ErrorCode"] = _error_codes()
    components["ErrorDetail"]["properties"]["code"]["description"] = "One of `ErrorCode`, or the backend's own."
    components["FeedbackRequest"]["anyOf"] = [
        {"required": [field], "properties": {field: {"not": {"type": "null"}}}} for field in ("rating", "correction")
    ]
    paths = {
        "/v1/chat/completions": _generation(
            "createChatCompletion", "Chat completion (streamed or not)", "ChatCompletionRequest", "ChatCompletion", True
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
        "/healthz": _get("healthz", "Liveness: the event loop answers", "ops", {"200": _json("Alive.", "Health")}),
        "/readyz": _get(
            "readyz",
            "Readiness: every configured model has a healthy backend",
            "ops",
            {"200": _json("Ready.", "Readiness"), "503": _json("Some models have no healthy backend.", "Readiness")},
        ),
    }
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


@cache
def _encoded() -> bytes:
    return msgspec.json.encode(document())


@get("/openapi.json", media_type="application/json")
async def openapi_json() -> Response[bytes]:
    """This gateway's OpenAPI 3.1 document."""
    return Response(_encoded(), media_type="application/json")
