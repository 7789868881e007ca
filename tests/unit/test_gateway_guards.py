"""Guards in the request path, against a fake upstream: what reaches the backend and what reaches the client."""

from __future__ import annotations

import json

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import ModelRoute
from guards import GuardsSettings
from tests.conftest import running_gateway, settings_for

EMAIL, CARD = "jane.doe@example.com", "4111 1111 1111 1111"
TOXIC = "You are a worthless idiot and I hate you, you stupid moron"


def blocked_inputs(metrics: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "driftgate_guard_decisions_total"
        and sample.labels == {"action": "block", "guard": "toxicity", "stage": "input"}
    )


def guarded(*routes: ModelRoute):
    return settings_for(*routes, guards=GuardsSettings())


def chat(content: str, **extra) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": content}], **extra}


async def stream_contents(client: httpx.AsyncClient, body: dict) -> tuple[str, list[dict], bytes]:
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    events = [e[6:] for e in raw.split(b"\n\n") if e.startswith(b"data: {")]
    chunks = [json.loads(e) for e in events]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    return text, chunks, raw


async def test_prompt_pii_is_redacted_before_the_backend(upstreams) -> None:
    upstream = await upstreams()
    async with running_gateway(guarded(ModelRoute("m", [upstream.url]))) as client:
        body = chat(f"Mail {EMAIL} or {EMAIL.upper()}, card {CARD}.", seed=3, logprobs=True)
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    sent = json.loads(upstream.observed.bodies[0])
    assert sent["messages"][0]["content"] == "Mail <EMAIL_1> or <EMAIL_1>, card <CREDIT_CARD_1>."
    assert sent["seed"] == 3 and sent["logprobs"] is True  # the rest of the body is the client's


async def test_content_parts_and_completion_prompts_are_guarded_too(upstreams) -> None:
    upstream = await upstreams()
    async with running_gateway(guarded(ModelRoute("m", [upstream.url]))) as client:
        parts = [{"type": "text", "text": f"reach me at {EMAIL}"}, {"type": "image_url", "image_url": {"url": "x"}}]
        await client.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": parts}]})
        await client.post("/v1/completions", json={"model": "m", "prompt": ["plain", f"card {CARD}"]})
    chat_sent, completion_sent = (json.loads(body) for body in upstream.observed.bodies)
    assert chat_sent["messages"][0]["content"][0]["text"] == "reach me at <EMAIL_1>"
    assert chat_sent["messages"][0]["content"][1] == parts[1]
    assert completion_sent["prompt"] == ["plain", "card <CREDIT_CARD_1>"]


async def test_clean_prompt_is_forwarded_byte_for_byte(upstreams) -> None:
    upstream = await upstreams()
    body = b'{"model":"m",  "messages":[{"role":"user","content":"What is the capital of France?"}]}'
    async with running_gateway(guarded(ModelRoute("m", [upstream.url]))) as client:
        await client.post("/v1/chat/completions", content=body)
    assert upstream.observed.bodies == [body]


async def test_toxic_prompt_is_blocked_and_never_reaches_the_backend(upstreams) -> None:
    upstream = await upstreams()
    async with running_gateway(guarded(ModelRoute("m", [upstream.url]))) as client:
        before = blocked_inputs((await client.get("/metrics")).text)  # counters are process-wide
        response = await client.post("/v1/chat/completions", json=chat(TOXIC))
        after = blocked_inputs((await client.get("/metrics")).text)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "content_filter" and "toxicity" in error["message"]
    assert upstream.observed.bodies == []
    assert after - before == 1


async def test_answer_pii_is_redacted(upstreams) -> None:
    upstream = await upstreams()
    upstream.behaviour.answer = f"Sure, write to {EMAIL}."
    async with running_gateway(guarded(ModelRoute("m", [upstream.url]))) as client:
        response = await client.post("/v1/chat/completions", json=chat("Who do I contact?"))
    assert response.json()["choices"][0]["message"]["content"] == "Sure, write to <EMAIL_1>."


async def test_toxic_answer_is_withheld_with_content_filter(upstreams) -> None:
    upstream = await upstreams()
    upstream.behaviour.answer = TOXIC
    async with running_gateway(guarded(ModelRoute("m", [upstream.url]))) as client:
        response = await client.post("/v1/chat/completions", json=chat("Say something"))
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter" and choice["message"]["content"] == ""


async def test_email_split_across_stream_chunks_arrives_redacted(upstreams) -> None:
    upstream = await upstreams()
    upstream.behaviour.stream_parts = ["You can write to ja", "ne.doe@exam", "ple.com or call", " us. Thanks!"]
    async with running_gateway(guarded(ModelRoute("m", [upstream.url]))) as client:
        text, chunks, raw = await stream_contents(client, chat("contact?", stream=True))
    assert text == "You can write to <EMAIL_1> or call us. Thanks!"
    assert "exam" not in raw.decode()
    assert raw.endswith(b"data: [DONE]\n\n")
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_toxic_stream_ends_with_content_filter(upstreams) -> None:
    upstream = await upstreams()
    words = TOXIC.split(" ")
    upstream.behaviour.stream_parts = [word + " " for word in words] * 3
    async with running_gateway(guarded(ModelRoute("m", [upstream.url]))) as client:
        text, chunks, raw = await stream_contents(client, chat("insult me", stream=True))
    assert chunks[-1]["choices"][0]["finish_reason"] == "content_filter"
    assert raw.endswith(b"data: [DONE]\n\n")
    assert "moron" not in text


async def test_a_model_can_turn_guards_off(upstreams) -> None:
    upstream = await upstreams()
    route = ModelRoute("m", [upstream.url], guards=GuardsSettings(enabled=False))
    async with running_gateway(guarded(route)) as client:
        await client.post("/v1/chat/completions", json=chat(f"mail {EMAIL}"))
    assert json.loads(upstream.observed.bodies[0])["messages"][0]["content"] == f"mail {EMAIL}"
