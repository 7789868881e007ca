"""The official `openai` SDK against `driftgate up`: real vLLM (CPU build), real SmolLM2-135M-Instruct."""

from __future__ import annotations

import signal
import time

import httpx
import openai
import psutil
import pytest

from tests.e2e.conftest import MEANING_MODEL, MODEL, RAW_INPUT_MODEL, Embedded

pytestmark = pytest.mark.e2e
USER = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture
def client(embedded: Embedded) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{embedded.url}/v1", api_key=embedded.key, max_retries=0, timeout=120)


def test_models_lists_the_base_model(client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list()] == [MODEL, RAW_INPUT_MODEL, MEANING_MODEL]


def test_keys_are_enforced(embedded: Embedded) -> None:
    body = {"model": MODEL, "messages": USER, "max_tokens": 2}
    unsigned = httpx.post(f"{embedded.url}/v1/chat/completions", json=body, timeout=30)
    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "invalid_api_key"
    stranger = openai.OpenAI(base_url=f"{embedded.url}/v1", api_key="dg_nope_wrong", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError) as caught:
        stranger.chat.completions.create(**body)
    assert caught.value.status_code == 401


def test_chat_completion(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=12, temperature=0)
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content.strip()
    assert reply.usage.completion_tokens <= 12 and reply.usage.prompt_tokens > 0


def test_chat_stream_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=USER,
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].choices == [] and 0 < chunks[-1].usage.completion_tokens <= 12
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)


def test_stream_is_sse_as_openai_sends_it(embedded: Embedded) -> None:
    body = {"model": MODEL, "messages": USER, "max_tokens": 5, "stream": True}
    with httpx.stream(
        "POST", f"{embedded.url}/v1/chat/completions", json=body, headers=embedded.headers, timeout=120
    ) as response:
        raw = b"".join(response.iter_raw())
    assert response.headers["content-type"].startswith("text/event-stream")
    events = raw.decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(event.startswith("data: {") for event in events[:-2])


def test_completions_plain_and_streamed(client: openai.OpenAI) -> None:
    reply = client.completions.create(model=MODEL, prompt="The sky is", max_tokens=8, temperature=0)
    assert reply.choices[0].text and reply.usage.completion_tokens <= 8
    chunks = client.completions.create(model=MODEL, prompt="The sky is", max_tokens=8, temperature=0, stream=True)
    streamed = "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)
    assert streamed == reply.choices[0].text  # greedy decoding: same text either way


def test_unknown_openai_fields_reach_vllm(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=USER,
        max_tokens=4,
        logprobs=True,
        top_logprobs=2,
        extra_body={"min_tokens": 4, "ignore_eos": True},  # vLLM's own sampling extras
    )
    assert reply.usage.completion_tokens == 4
    assert len(reply.choices[0].logprobs.content[0].top_logprobs) == 2


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=USER)
    assert caught.value.body["code"] == "model_not_found"


def test_invalid_request_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=[])
    assert caught.value.body["param"] == "messages"


def test_vllm_rejection_comes_back_in_openai_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=USER, max_tokens=100_000)
    assert "max" in caught.value.message.lower()


def test_malformed_json_is_400(embedded: Embedded) -> None:
    response = httpx.post(
        f"{embedded.url}/v1/chat/completions", content=b'{"model": ', headers=embedded.headers, timeout=10
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_embeddings_on_a_generation_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model=MODEL, input="hello")


def test_leaving_a_stream_aborts_the_generation_in_vllm(embedded: Embedded) -> None:
    before = generated_tokens(embedded)
    body = {"model": MODEL, "messages": USER, "max_tokens": 1500, "ignore_eos": True, "stream": True}
    with httpx.stream(
        "POST", f"{embedded.url}/v1/chat/completions", json=body, headers=embedded.headers, timeout=120
    ) as response:
        next(response.iter_raw())  # generation has started; now hang up
    # Once the gateway drops the upstream connection vLLM aborts: its token count stops well short of 1,500.
    previous, deadline = -1.0, time.monotonic() + 30
    while (current := generated_tokens(embedded)) != previous and time.monotonic() < deadline:
        previous = current
        time.sleep(1.5)
    assert current == previous, "vLLM kept generating"
    assert current - before < 300


def generated_tokens(embedded: Embedded) -> float:
    """vLLM's own count of tokens it has generated, from its Prometheus metrics."""
    metrics = httpx.get(f"{embedded.vllm_url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("vllm:generation_tokens_total{")
    )


@pytest.mark.kills_vllm
def test_killed_vllm_gives_503_then_up_restarts_it(embedded: Embedded, client: openai.OpenAI) -> None:
    vllm = embedded.vllm_process()
    assert vllm is not None
    engine = vllm.children(recursive=True)
    assert engine, "vLLM runs its engine in child processes"
    vllm.send_signal(signal.SIGKILL)  # the API server crashes; its engine processes are orphaned
    vllm.wait(10)
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=MODEL, messages=USER, max_tokens=4)
    assert caught.value.status_code == 503
    assert time.monotonic() - started < 5  # a clean error, not a hang
    assert httpx.get(f"{embedded.url}/readyz", timeout=5).status_code == 503
    embedded.wait_ready(timeout_s=300)
    assert embedded.vllm_process().pid != vllm.pid
    assert not any(process.is_running() and process.status() != psutil.STATUS_ZOMBIE for process in engine), (
        "the crashed server's engine processes were left running"
    )
    reply = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=4)
    assert reply.choices[0].message.content


@pytest.mark.kills_vllm
def test_ctrl_c_stops_gateway_and_vllm(embedded: Embedded) -> None:
    vllm = embedded.vllm_process()
    assert vllm is not None
    embedded.process.send_signal(signal.SIGINT)
    assert embedded.process.wait(90) == 0
    vllm.wait(10)  # raises if vLLM outlived `up`
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{embedded.url}/healthz", timeout=2)
