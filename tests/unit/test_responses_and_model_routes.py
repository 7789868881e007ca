"""``GET /v1/models/{id}`` and ``POST /v1/responses`` through the real app, keys enforced, with the openai SDK."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import AdaptersSettings, ModelRoute, RequestLimitSettings, state_url
from gateway.loop.dataset import sample_from_log
from gateway.security.keys import KeyStore
from guards import GuardsSettings
from monitor.request_log import RequestLogSettings
from monitor.request_log_store import RequestLogStore
from tests.conftest import running_gateway, settings_for
from tests.unit.adapters.conftest import BASE, write_adapter

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # a model name with a slash: the path keeps it whole
EMAIL = "jane.doe@example.com"
TOXIC = "You are a worthless idiot and I hate you, you stupid moron"


def requests_total(metrics: str, labels: dict[str, str]) -> float:
    """``driftgate_requests_total`` for ``labels`` (metrics are process-wide: tests compare before and after)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "driftgate_requests_total" and sample.labels == labels
    )


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def sdk(client: httpx.AsyncClient, token: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{client.base_url}/v1", api_key=token, max_retries=0)


def keyed(tmp_path: Path, *routes: ModelRoute, **kwargs) -> tuple:
    """Settings with adapters on, and keys: admin, inference (every model), and one limited to `helpdesk`."""
    adapters = AdaptersSettings(url=f"sqlite:///{tmp_path / 'registry.db'}", poll_s=0.1, reconcile_s=0.2)
    settings = settings_for(*routes, home=str(tmp_path), adapters=adapters, **kwargs)
    keys = KeyStore(state_url(settings))
    tokens = {scope: keys.create(scope, scope)[1] for scope in ("admin", "inference")}
    tokens["limited"] = keys.create("tenant", "inference", adapters=["helpdesk"])[1]
    keys.close()
    return settings, tokens


async def with_helpdesk_alias(client: httpx.AsyncClient, tmp_path: Path, admin: str) -> None:
    """`helpdesk@1` in production, `helpdesk@2` a candidate (pinnable, not listed)."""
    for name in ("one", "two"):
        body = {"alias": "helpdesk", "weights": write_adapter(tmp_path / name), "base_model": BASE}
        assert (await client.post("/admin/adapters/", json=body, headers=bearer(admin))).status_code == 201
    promoted = await client.post("/admin/adapters/helpdesk/promote", json={"version": 1}, headers=bearer(admin))
    assert promoted.status_code == 200


async def test_models_retrieve_answers_what_the_list_shows_the_key(tmp_path: Path, upstreams) -> None:
    fake = await upstreams(BASE)
    settings, tokens = keyed(tmp_path, ModelRoute(BASE, [fake.url]), ModelRoute(HUB_ID, [fake.url]))
    async with running_gateway(settings) as client:
        await with_helpdesk_alias(client, tmp_path, tokens["admin"])
        full, limited = sdk(client, tokens["inference"]), sdk(client, tokens["limited"])
        base, hub, alias, pinned = [await full.models.retrieve(m) for m in (BASE, HUB_ID, "helpdesk", "helpdesk@2")]
        listed = {model.id async for model in full.models.list()}
        own, own_pinned = await limited.models.retrieve("helpdesk"), await limited.models.retrieve("helpdesk@1")
        errors = {}
        for name, caller, model in (
            ("unknown", full, "nope"),
            ("unknown_version", full, "helpdesk@9"),
            ("hidden_base", limited, BASE),
            ("hidden_hub", limited, HUB_ID),
        ):
            with pytest.raises(openai.NotFoundError) as caught:
                await caller.models.retrieve(model)
            errors[name] = caught.value
        anonymous = await client.get(f"/v1/models/{BASE}")
    assert (base.id, base.object, base.owned_by) == (BASE, "model", "driftgate")
    assert hub.id == HUB_ID
    assert (alias.id, alias.parent, alias.version) == ("helpdesk", BASE, "helpdesk@1")
    assert (pinned.id, pinned.version) == ("helpdesk@2", "helpdesk@2")
    assert {BASE, HUB_ID, "helpdesk", "helpdesk@1"} <= listed  # every listed model is retrievable as well
    assert own.id == "helpdesk" and own_pinned.id == "helpdesk@1"
    for error in errors.values():
        assert error.status_code == 404 and error.code == "model_not_found" and error.param == "model"
    # Another tenant's model is refused exactly like one that does not exist.
    assert str(errors["hidden_base"]).replace(BASE, "X") == str(errors["unknown"]).replace("nope", "X")
    assert anonymous.status_code == 401


async def test_responses_pass_through_streamed_or_not(tmp_path: Path, upstreams) -> None:
    fake = await upstreams(BASE)
    fake.behaviour.stream_parts = ["Hel", "lo ", "there."]
    limits = RequestLimitSettings(max_tokens=64)
    settings, tokens = keyed(tmp_path, ModelRoute(BASE, [fake.url]), limits=limits)
    async with running_gateway(settings) as client:
        await with_helpdesk_alias(client, tmp_path, tokens["admin"])
        full, limited = sdk(client, tokens["inference"]), sdk(client, tokens["limited"])
        before = (await client.get("/metrics")).text
        raw = await full.responses.with_raw_response.create(
            model=BASE,
            input="Say hello.",
            max_output_tokens=16,
            extra_body={"vllm_xargs": {"seed": 3}, "reasoning": {"effort": "low"}},
        )
        reply = raw.parse()
        stream = await full.responses.create(model=BASE, input=[{"role": "user", "content": "Hi"}], stream=True)
        events = [event async for event in stream]
        on_adapter = await limited.responses.create(model="helpdesk", input="Hi")
        with pytest.raises(openai.NotFoundError) as hidden:
            await limited.responses.create(model=BASE, input="Hi")
        with pytest.raises(openai.BadRequestError) as too_long:
            await full.responses.create(model=BASE, input="Hi", max_output_tokens=65)
        with pytest.raises(openai.BadRequestError) as no_input:
            await full.responses.create(model=BASE, input=None)  # type: ignore[arg-type]
        anonymous = await client.post("/v1/responses", json={"model": BASE, "input": "Hi"})
        after = (await client.get("/metrics")).text
    assert reply.output_text == f"Hello from {BASE}." and reply.usage.output_tokens == 3
    assert raw.headers["x-request-id"] and float(raw.headers["x-driftgate-overhead-ms"]) >= 0
    assert set(fake.observed.paths) == {"/v1/responses"}
    sent = [json.loads(body) for body in fake.observed.bodies]
    assert sent[0]["vllm_xargs"] == {"seed": 3} and sent[0]["reasoning"] == {"effort": "low"}  # unknown fields too
    assert sent[0]["max_output_tokens"] == 16 and sent[0]["model"] == BASE
    assert [event.type for event in events if event.type.endswith(".delta")] == ["response.output_text.delta"] * 3
    assert events[-1].type == "response.completed" and events[-1].response.output_text == "Hello there."
    assert on_adapter.output_text and sent[2]["model"] == "helpdesk@1"  # the alias went out as its LoRA name
    assert hidden.value.code == "model_not_found" and anonymous.status_code == 401
    assert too_long.value.param == "max_output_tokens" and no_input.value.param == "input"
    assert len(sent) == 3  # refused requests never reached the backend
    for model, count in ((BASE, 2), ("helpdesk", 1)):
        labels = {"model": model, "route": "/v1/responses", "status": "200"}
        assert requests_total(after, labels) - requests_total(before, labels) == count


async def test_responses_go_through_the_guards(tmp_path: Path, upstreams) -> None:
    fake = await upstreams(BASE)
    settings, tokens = keyed(tmp_path, ModelRoute(BASE, [fake.url]), guards=GuardsSettings())
    headers = bearer(tokens["inference"])
    async with running_gateway(settings) as client:
        full = sdk(client, tokens["inference"])
        fake.behaviour.answer = f"Sure, write to {EMAIL}."
        redacted = await full.responses.create(
            model=BASE,
            instructions="Be brief.",
            input=[{"role": "user", "content": [{"type": "input_text", "text": f"Mail {EMAIL} please"}]}],
        )
        fake.behaviour.stream_parts = ["You can write to ja", "ne.doe@exam", "ple.com or call", " us."]
        async with client.stream(
            "POST", "/v1/responses", json={"model": BASE, "input": "contact?", "stream": True}, headers=headers
        ) as response:
            streamed = b"".join([chunk async for chunk in response.aiter_raw()])
        fake.behaviour.stream_parts = [word + " " for word in TOXIC.split(" ")] * 3
        async with client.stream(
            "POST", "/v1/responses", json={"model": BASE, "input": "insult me", "stream": True}, headers=headers
        ) as response:
            toxic_stream = b"".join([chunk async for chunk in response.aiter_raw()])
        blocked = await client.post("/v1/responses", json={"model": BASE, "input": TOXIC}, headers=headers)
    sent = json.loads(fake.observed.bodies[0])
    assert sent["input"][0]["content"][0]["text"] == "Mail <EMAIL_1> please"
    assert redacted.output_text == "Sure, write to <EMAIL_1>."
    events = [json.loads(event.split(b"data: ", 1)[1]) for event in streamed.split(b"\n\n") if b"data: " in event]
    deltas = "".join(event["delta"] for event in events if event["type"] == "response.output_text.delta")
    assert deltas == "You can write to <EMAIL_1> or call us." and b"exam" not in streamed
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == deltas
    toxic_events = [json.loads(e.split(b"data: ", 1)[1]) for e in toxic_stream.split(b"\n\n") if b"data: " in e]
    assert toxic_events[-1]["type"] == "response.incomplete"
    assert toxic_events[-1]["response"]["incomplete_details"] == {"reason": "content_filter"}
    assert b"moron" not in toxic_stream
    assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "content_filter"
    assert blocked.json()["error"]["param"] == "input" and len(fake.observed.bodies) == 3


async def test_responses_are_logged_as_chat_with_usage_and_train_like_chat(tmp_path: Path, upstreams) -> None:
    fake = await upstreams(BASE)
    fake.behaviour.answer = f"Write to {EMAIL}"
    log = RequestLogSettings(url=f"sqlite:///{tmp_path / 'log.db'}", max_delay_s=0.05)
    settings, tokens = keyed(tmp_path, ModelRoute(BASE, [fake.url]), guards=GuardsSettings(), request_log=log)
    async with running_gateway(settings) as client:
        full = sdk(client, tokens["inference"])
        plain = await full.responses.with_raw_response.create(
            model=BASE,
            instructions="Be brief.",
            input=[
                {"role": "user", "content": f"I am {EMAIL}"},
                {"type": "function_call_output", "call_id": "c1", "output": "{}"},  # no text for the log
            ],
        )
        stream = await full.responses.with_raw_response.create(model=BASE, input="hello", stream=True)
        async for _ in stream.parse():
            pass
    store = RequestLogStore(f"sqlite:///{tmp_path / 'log.db'}")
    record = store.get(plain.headers["x-request-id"])
    streamed = store.get(stream.headers["x-request-id"])
    store.close()
    assert record.route == "/v1/responses" and record.key_id is not None
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "I am <EMAIL_1>"}]
    assert json.loads(record.prompt) == conversation
    assert record.completion == "Write to <EMAIL_1>"
    assert (record.prompt_tokens, record.completion_tokens) == (7, 3)  # input_tokens / output_tokens
    assert streamed.stream and (streamed.prompt_tokens, streamed.completion_tokens) == (7, 3)
    assert json.loads(streamed.prompt) == [{"role": "user", "content": "hello"}]
    assert sample_from_log(record, "Sure.") == {"messages": [*conversation, {"role": "assistant", "content": "Sure."}]}
