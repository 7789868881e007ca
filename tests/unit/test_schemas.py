import msgspec
import pytest

from gateway.edge.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, decode_request
from gateway.errors import OpenAIError


def error_of(body: bytes, kind=ChatCompletionRequest) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        decode_request(body, kind)
    assert caught.value.status_code == 400
    return caught.value


def test_valid_chat_request_ignores_unknown_fields() -> None:
    parsed = decode_request(
        b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true, "guided_json": {}}',
        ChatCompletionRequest,
    )
    assert parsed.model == "m" and parsed.stream is True


def test_content_parts_and_null_assistant_content_are_accepted() -> None:
    body = (
        b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]},'
        b'{"role": "assistant", "content": null, "tool_calls": []}]}'
    )
    assert len(decode_request(body, ChatCompletionRequest).messages) == 2


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"messages": [{"role": "user", "content": "hi"}]}', None),
        (b'{"model": "m", "messages": []}', "messages"),
        (b'{"model": "m", "messages": [{"role": "wizard", "content": "hi"}]}', "messages[0].role"),
        (b'{"model": "m", "messages": [{"role": "user", "content": 5}]}', "messages[0].content"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', "max_tokens"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 9}', "temperature"),
        (b"[1, 2]", None),
    ],
)
def test_invalid_chat_requests_name_the_bad_field(body: bytes, param: str | None) -> None:
    error = error_of(body)
    assert error.body.error.type == "invalid_request_error"
    assert error.body.error.param == param


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b'{"model": "m",}'])
def test_malformed_json_is_invalid_json(body: bytes) -> None:
    error = error_of(body)
    assert error.body.error.code == "invalid_json"
    assert "JSON" in error.body.error.message


def test_integral_floats_are_integers_as_in_json_schema() -> None:
    # Found by the schema fuzzing: `"n": 2.0` is a valid JSON Schema integer (and vLLM takes it).
    body = b'{"model": "m", "prompt": [1.0, [2.0]], "max_tokens": 16.0, "n": 2.0, "temperature": 1.0}'
    parsed = decode_request(body, CompletionRequest)
    assert (parsed.max_tokens, parsed.n, parsed.prompt, parsed.temperature) == (16, 2, [1, [2]], 1.0)
    assert error_of(b'{"model": "m", "prompt": "x", "n": 2.5}', CompletionRequest).body.error.param == "n"
    assert error_of(b'{"model": "m", "prompt": "x", "n": 0.0}', CompletionRequest).body.error.param == "n"


def test_any_struct_decodes_with_the_same_error_shape() -> None:
    # Other routes (/v1/feedback) validate their own Structs through decode_request: not a KeyError (500).
    class Vote(msgspec.Struct):
        rating: int

    assert decode_request(b'{"rating": 1.0}', Vote) == Vote(1)
    assert error_of(b'{"rating": "up"}', Vote).body.error.param == "rating"


def test_deeply_nested_json_is_a_400_not_a_crash() -> None:
    # Found by the schema fuzzing: msgspec hit Python's recursion limit inside an unknown field (a 500).
    nested = b"[" * 100_000 + b"]" * 100_000
    error = error_of(b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "x": ' + nested + b"}")
    assert error.body.error.code == "invalid_json"


@pytest.mark.parametrize("prompt", ['"text"', '["a", "b"]', "[1, 2, 3]", "[[1, 2], [3]]"])
def test_completion_prompt_shapes(prompt: str) -> None:
    body = b'{"model": "m", "prompt": ' + prompt.encode() + b"}"
    assert decode_request(body, CompletionRequest).model == "m"


def test_embedding_input_is_required() -> None:
    assert error_of(b'{"model": "m"}', EmbeddingRequest).body.error.message.startswith("Invalid request")
