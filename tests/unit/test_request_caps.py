"""Per-request caps on everything that fans out: each refused early with a 400 naming its field, nothing sent
upstream; a request just within every cap passes."""

from __future__ import annotations

import pytest

from gateway.config import ModelRoute, RequestLimitSettings
from tests.conftest import running_gateway, settings_for
from tests.unit.test_gateway_proxy import assert_openai_error

LIMITS = RequestLimitSettings(
    max_tokens=1000,
    max_messages=4,
    max_prompt_items=8,
    max_content_parts=6,
    max_tools=3,
    max_n=2,
    max_guarded_chars=400,
)
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
PART = {"type": "text", "text": "x"}


def chat(**extra: object) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}


# (path, body, the field the 400 must name): one past each cap, on each endpoint it applies to.
OVER = [
    ("/v1/completions", {"model": "m", "prompt": ["a"] * 9}, "prompt"),
    ("/v1/completions", {"model": "m", "prompt": [[1, 2]] * 9}, "prompt"),
    ("/v1/embeddings", {"model": "m", "input": ["a"] * 9}, "input"),
    ("/v1/chat/completions", chat(messages=[{"role": "user", "content": "x"}] * 5), "messages"),
    ("/v1/chat/completions", chat(messages=[{"role": "user", "content": [PART] * 7}]), "messages"),
    ("/v1/chat/completions", chat(tools=[TOOL] * 4), "tools"),
    ("/v1/chat/completions", chat(n=3), "n"),
    ("/v1/completions", {"model": "m", "prompt": "x", "n": 1000}, "n"),
    ("/v1/chat/completions", chat(max_tokens=10**15), "max_tokens"),
    ("/v1/chat/completions", chat(max_completion_tokens=1001), "max_completion_tokens"),
    ("/v1/responses", {"model": "m", "input": "x", "max_output_tokens": 1001}, "max_output_tokens"),
    ("/v1/responses", {"model": "m", "input": [{"role": "user", "content": [PART] * 6}]}, "input"),
    ("/v1/responses", {"model": "m", "input": "x", "tools": [TOOL] * 4}, "tools"),
    ("/v1/chat/completions", chat(messages=[{"role": "user", "content": "x" * 401}]), "messages"),
    ("/v1/completions", {"model": "m", "prompt": ["x" * 100] * 5}, "prompt"),
    ("/v1/responses", {"model": "m", "input": "x" * 300, "instructions": "y" * 101}, "input"),
]


@pytest.mark.parametrize(("path", "body", "field"), OVER)
async def test_each_cap_is_a_400_naming_its_field(upstreams, path: str, body: dict, field: str) -> None:
    upstream = await upstreams()
    route = ModelRoute("m", [upstream.url], embeddings=True)
    async with running_gateway(settings_for(route, limits=LIMITS)) as client:
        response = await client.post(path, json=body)
    assert assert_openai_error(response, 400)["param"] == field
    assert upstream.observed.bodies == []


async def test_a_request_at_every_cap_passes(upstreams) -> None:
    upstream = await upstreams()
    at_caps = chat(
        messages=[{"role": "user", "content": [PART] * 3}, {"role": "user", "content": [PART] * 3}],
        tools=[TOOL] * 3,
        n=2,
        max_tokens=1000,
    )
    async with running_gateway(settings_for(ModelRoute("m", [upstream.url]), limits=LIMITS)) as client:
        responses = [
            await client.post("/v1/chat/completions", json=at_caps),
            await client.post("/v1/completions", json={"model": "m", "prompt": ["x" * 50] * 8}),
        ]
    assert [r.status_code for r in responses] == [200, 200]


async def test_output_tokens_are_capped_at_the_models_context(upstreams) -> None:
    upstream = await upstreams()
    route = ModelRoute("m", [upstream.url], context_tokens=2048)
    async with running_gateway(settings_for(route)) as client:
        over = await client.post("/v1/chat/completions", json=chat(max_tokens=2049))
        within = await client.post("/v1/chat/completions", json=chat(max_tokens=2048))
    assert "2048" in assert_openai_error(over, 400)["message"]
    assert within.status_code == 200


async def test_default_caps_refuse_the_worst_case_bodies(upstreams) -> None:
    """With no limits configured, the defaults a platform team would choose still stop the fan-out."""
    upstream = await upstreams()
    async with running_gateway(settings_for(ModelRoute("m", [upstream.url]))) as client:
        items = await client.post("/v1/completions", json={"model": "m", "prompt": ["a"] * 100_000})
        many = await client.post("/v1/chat/completions", json=chat(n=1000))
        huge = await client.post("/v1/chat/completions", json=chat(max_tokens=10**18))
    assert assert_openai_error(items, 400)["param"] == "prompt"
    assert assert_openai_error(many, 400)["param"] == "n"
    assert assert_openai_error(huge, 400)["param"] == "max_tokens"
    assert upstream.observed.bodies == []
