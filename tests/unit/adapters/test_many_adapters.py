"""More adapters than LoRA slots: twelve aliases on a backend with two slots, concurrent traffic across all of
them, keys enforced. Cold versions load on demand, idle ones are evicted, requests wait for a slot instead of
failing, and the backend never holds more than its slots (the fake refuses a third load, as a full vLLM would)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gateway.config import state_url
from gateway.security.keys import KeyStore
from tests.conftest import running_gateway
from tests.fake_upstream import FakeUpstream
from tests.unit.adapters.conftest import BASE, adapter_settings, write_adapter

ALIASES = [f"style{i:02d}" for i in range(12)]


def metric(text: str, name: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


async def test_twelve_aliases_share_two_slots_without_a_failed_request(tmp_path: Path, upstreams) -> None:
    fake: FakeUpstream = await upstreams(BASE)
    fake.behaviour.max_loras = 2
    fake.behaviour.lora_load_s = 0.02
    fake.behaviour.delay_s = 0.05  # requests overlap, so slots are sometimes all busy
    settings = adapter_settings(tmp_path, fake.url, max_loras=2)
    keys = KeyStore(state_url(settings))
    admin, inference = (keys.create(scope, scope)[1] for scope in ("admin", "inference"))
    keys.close()
    as_admin = {"authorization": f"Bearer {admin}"}
    as_user = {"authorization": f"Bearer {inference}"}
    async with running_gateway(settings) as client:
        before = (await client.get("/metrics", headers=as_admin)).text
        for alias in ALIASES:
            body = {"alias": alias, "weights": write_adapter(tmp_path / alias), "base_model": BASE}
            assert (await client.post("/admin/adapters/", json=body, headers=as_admin)).status_code == 201
            promoted = await client.post(f"/admin/adapters/{alias}/promote", json={"version": 1}, headers=as_admin)
            assert promoted.status_code == 200, promoted.text
        assert len(fake.observed.loras) <= 2

        # Zipf-like traffic: two hot aliases and a long tail, eight requests at a time.
        rng = random.Random(7)
        weights = [1 / (rank + 1) for rank in range(len(ALIASES))]
        asked = rng.choices(ALIASES, weights=weights, k=120) + ALIASES  # every alias at least once
        rng.shuffle(asked)
        limit = asyncio.Semaphore(8)

        async def ask(alias: str) -> tuple[str, int, str]:
            async with limit:
                body = {"model": alias, "messages": [{"role": "user", "content": "hi"}]}
                reply = await client.post("/v1/chat/completions", json=body, headers=as_user)
                answered = reply.json().get("model", "") if reply.status_code == 200 else reply.text
                return alias, reply.status_code, answered

        results = await asyncio.gather(*(ask(alias) for alias in asked))
        failed = [(alias, status, body) for alias, status, body in results if status != 200]
        assert not failed, failed[:3]
        assert all(answered == f"{alias}@1" for alias, _, answered in results)  # each by its own adapter
        assert len(fake.observed.loras) <= 2

        after = (await client.get("/metrics", headers=as_admin)).text
        evictions = metric(after, "driftgate_adapter_evictions_total") - metric(
            before, "driftgate_adapter_evictions_total"
        )
        waited = metric(after, "driftgate_adapter_load_wait_seconds_count") - metric(
            before, "driftgate_adapter_load_wait_seconds_count"
        )
        loads = metric(after, "driftgate_adapter_loads_total") - metric(before, "driftgate_adapter_loads_total")
        print(f"132 requests, 12 aliases, 2 slots: {loads:.0f} loads, {evictions:.0f} evictions, {waited:.0f} waits")
        assert evictions >= 10 and loads >= 12 and waited >= 10
        assert f'driftgate_adapters_resident{{backend="{fake.url}"}}' in after
