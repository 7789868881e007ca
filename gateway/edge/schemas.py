"""msgspec Structs for the OpenAI-compatible HTTP edge.

Requests are validated against these types, but the body sent upstream is the client's own JSON: fields
that are not declared here (``logprobs``, ``guided_json``, vLLM's extras ...) reach vLLM untouched.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta

from gateway.errors import InvalidJson, InvalidRequest

PositiveInt = Annotated[int, Meta(ge=1)]
Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
# msgspec allows one array type per union, so a prompt is a string or a list whose items are strings,
# token ids or lists of token ids; vLLM rejects mixtures with its own 400.
PromptInput = str | list[str | int | list[int]]


class StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class ChatMessage(msgspec.Struct):
    role: Role
    # A string, a list of content parts, or null for an assistant turn made of tool calls.
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(msgspec.Struct):
    model: str
    messages: Annotated[list[ChatMessage], Meta(min_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    n: PositiveInt | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    user: str | None = None
    tools: list[dict[str, Any]] | None = None


class CompletionRequest(msgspec.Struct):
    model: str
    prompt: PromptInput
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: PositiveInt | None = None
    n: PositiveInt | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    user: str | None = None


class EmbeddingRequest(msgspec.Struct):
    model: str
    input: PromptInput
    encoding_format: Literal["float", "base64"] | None = None
    user: str | None = None


class ResponsesRequest(msgspec.Struct):
    """``POST /v1/responses``: what the gateway reads; the rest (tools, reasoning, text format ...) goes to vLLM.

    ``input`` is a string or a list of input items (messages with string or part-list content, tool
    outputs ...); items are checked by vLLM, the gateway reads only the text of message items.
    """

    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    stream: bool = False
    max_output_tokens: PositiveInt | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    user: str | None = None
    tools: list[dict[str, Any]] | None = None


class ModelCard(msgspec.Struct):
    id: str
    created: int
    owned_by: str = "driftgate"
    object: str = "model"


class ModelList(msgspec.Struct):
    data: list[ModelCard]
    object: str = "list"


RequestT = TypeVar("RequestT", bound=msgspec.Struct)

_DECODERS: dict[type, msgspec.json.Decoder] = {
    kind: msgspec.json.Decoder(kind)
    for kind in (ChatCompletionRequest, CompletionRequest, EmbeddingRequest, ResponsesRequest)
}
_PATH = re.compile(r" - at `\$\.?(?P<param>[^`]*)`$")


def decode_request(body: bytes, kind: type[RequestT]) -> RequestT:
    """Validate ``body`` as ``kind``, turning any problem into an OpenAI-shaped 400."""
    if not body:
        raise InvalidJson("The request body is empty; send a JSON object.")
    try:
        decoder = _DECODERS.get(kind) or _DECODERS.setdefault(kind, msgspec.json.Decoder(kind))
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        if "got `float`" in str(exc) and (lenient := _with_integral_floats(body, kind)) is not None:
            return lenient
        message = str(exc)
        match = _PATH.search(message)
        param = match["param"] or None if match else None
        raise InvalidRequest(f"Invalid request: {message}", param=param) from exc
    except msgspec.DecodeError as exc:
        raise _malformed_json(exc) from exc
    except RecursionError as exc:  # msgspec recurses per nesting level, even inside fields it skips
        raise InvalidJson("The JSON body is nested too deeply.") from exc


def _with_integral_floats(body: bytes, kind: type[RequestT]) -> RequestT | None:
    """``kind`` from ``body`` with ``5.0`` read as ``5``, or None if it is still invalid.

    JSON (and JSON Schema, so the OpenAPI document) does not tell ``5.0`` from ``5``, and vLLM accepts
    either for its integer fields; msgspec's strict decoder does not. Only on the error path: the raw body
    is forwarded anyway.
    """
    try:
        return msgspec.convert(_integral_floats_as_ints(msgspec.json.decode(body)), kind)
    except (msgspec.ValidationError, RecursionError):
        return None


def _integral_floats_as_ints(value: Any) -> Any:
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, list):
        return [_integral_floats_as_ints(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral_floats_as_ints(item) for key, item in value.items()}
    return value


def _malformed_json(exc: msgspec.DecodeError) -> InvalidJson:
    return InvalidJson(
        f"We could not parse the JSON body of your request ({exc}). The OpenAI API expects a JSON payload."
    )
