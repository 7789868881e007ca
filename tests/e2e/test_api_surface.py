"""The openai SDK's newer calls against `driftgate up` (real vLLM, SmolLM2-135M-Instruct): models.retrieve,
the Responses API, and tool calling through the embedded server's tool-call parser."""

from __future__ import annotations

import json

import openai
import pytest

from tests.e2e.conftest import MODEL, Embedded

pytestmark = pytest.mark.e2e
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city's name."}},
            "required": ["city"],
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris right now? Use the tool."}]


@pytest.fixture
def client(embedded: Embedded) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{embedded.url}/v1", api_key=embedded.key, max_retries=0, timeout=120)


def test_models_retrieve(client: openai.OpenAI) -> None:
    model = client.models.retrieve(MODEL)
    assert (model.id, model.object) == (MODEL, "model")
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("no-such-model")
    assert missing.value.code == "model_not_found"


def test_responses_create_plain_and_streamed(client: openai.OpenAI) -> None:
    reply = client.responses.create(model=MODEL, input="Name three colours.", max_output_tokens=16, temperature=0)
    assert reply.status in ("completed", "incomplete") and reply.output_text.strip()
    assert 0 < reply.usage.output_tokens <= 16 and reply.usage.input_tokens > 0
    events = list(
        client.responses.create(
            model=MODEL,
            input=[{"role": "user", "content": "Name three colours."}],
            instructions="Answer briefly.",
            max_output_tokens=16,
            temperature=0,
            stream=True,
        )
    )
    assert events[0].type == "response.created" and events[-1].type in ("response.completed", "response.incomplete")
    streamed = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert streamed.strip() and events[-1].response.output_text == streamed


def test_tools_with_auto_choice_are_accepted(client: openai.OpenAI) -> None:
    """vLLM answers 400 here without --enable-auto-tool-choice and a parser; a 135M model may or may not call."""
    reply = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="auto", max_tokens=48, temperature=0
    )
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length", "tool_calls")
    for call in choice.message.tool_calls or ():
        assert call.function.name == "get_weather" and isinstance(json.loads(call.function.arguments), dict)
    assert choice.message.tool_calls or choice.message.content is not None


def test_a_named_tool_is_called_with_json_arguments(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=48,
        temperature=0,
    )
    (call,) = reply.choices[0].message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
