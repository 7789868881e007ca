"""Adapters through the real app against fake vLLM backends: resolution, canary, moves, reconciliation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import sqlalchemy as sa

from tests.conftest import running_gateway
from tests.fake_upstream import FakeUpstream
from tests.unit.adapters.conftest import BASE, adapter_settings


def chat(model: str, user: str | None = None, stream: bool = False) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    if user is not None:
        body["user"] = user
    return body


async def register(client: httpx.AsyncClient, weights: str, alias: str = "support") -> dict:
    reply = await client.post("/admin/adapters/", json={"alias": alias, "weights": weights, "base_model": BASE})
    assert reply.status_code == 201, reply.text
    return reply.json()


async def served_by(client: httpx.AsyncClient, model: str, user: str | None = None) -> str:
    reply = await client.post("/v1/chat/completions", json=chat(model, user))
    assert reply.status_code == 200, reply.text
    return reply.json()["model"]  # the fake echoes the model name it was sent: the LoRA name


async def eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_alias_pinned_and_base_names_resolve(tmp_path: Path, upstreams, adapter_dir) -> None:
    fake: FakeUpstream = await upstreams(BASE)
    async with running_gateway(adapter_settings(tmp_path, fake.url)) as client:
        await register(client, adapter_dir("one"))
        await register(client, adapter_dir("two"))
        assert (await client.post("/v1/chat/completions", json=chat("support"))).status_code == 404  # no production
        promoted = await client.post("/admin/adapters/support/promote", json={"version": 1})
        assert promoted.status_code == 200 and promoted.json()["production"] == "support@1"
        assert fake.observed.loras.keys() == {"support@1"}
        assert await served_by(client, "support") == "support@1"
        assert await served_by(client, "support@2") == "support@2"  # pinned: loaded on demand
        assert await served_by(client, BASE) == BASE
        for unknown in ("nope", "support@9"):
            reply = await client.post("/v1/chat/completions", json=chat(unknown))
            assert reply.status_code == 404 and reply.json()["error"]["code"] == "model_not_found"
        models = (await client.get("/v1/models")).json()["data"]
        assert [(m["id"], m.get("version")) for m in models] == [
            (BASE, None),
            ("support", "support@1"),
            ("support@1", "support@1"),
        ]
        metrics = (await client.get("/metrics")).text
        assert 'driftgate_adapter_requests_total{alias="support",version="support@1"} 1.0' in metrics
        assert 'driftgate_adapter_version_info{alias="support",stage="production",version="support@1"} 1.0' in metrics
        assert 'driftgate_requests_total{model="support",route="/v1/chat/completions",status="200"}' in metrics


async def test_canary_share_and_stickiness(tmp_path: Path, upstreams, adapter_dir) -> None:
    fake = await upstreams(BASE)
    async with running_gateway(adapter_settings(tmp_path, fake.url)) as client:
        await register(client, adapter_dir("one"))
        await register(client, adapter_dir("two"))
        await client.post("/admin/adapters/support/promote", json={"version": 1})
        reply = await client.post("/admin/adapters/support/canary", json={"version": 2, "share": 0.1})
        assert reply.status_code == 200 and reply.json()["canary"] == "support@2"
        users = [f"user-{index}" for index in range(400)]
        first = [await served_by(client, "support", user) for user in users]
        share = first.count("support@2") / len(users)
        assert abs(share - 0.1) <= 0.05, share
        again = [await served_by(client, "support", user) for user in users[:100]]
        assert again == first[:100]  # one user, one version
        # Rollback during a canary ends the canary.
        assert (await client.post("/admin/adapters/support/rollback")).json()["canary"] is None
        assert {await served_by(client, "support", user) for user in users[:50]} == {"support@1"}


async def test_bad_input_is_a_clear_4xx_and_changes_nothing(tmp_path: Path, upstreams, adapter_dir) -> None:
    fake = await upstreams(BASE)
    async with running_gateway(adapter_settings(tmp_path, fake.url)) as client:
        await register(client, adapter_dir("one"))
        await client.post("/admin/adapters/support/promote", json={"version": 1})
        await register(client, adapter_dir("two"))
        await client.post("/admin/adapters/support/promote", json={"version": 2})
        before = (await client.get("/admin/adapters/")).json()
        cases = [
            (
                "/admin/adapters/",
                {"alias": "support", "weights": adapter_dir("ia3", peft_type="IA3"), "base_model": BASE},
            ),
            ("/admin/adapters/", {"alias": "support", "weights": adapter_dir("big", r=64), "base_model": BASE}),
            (
                "/admin/adapters/",
                {"alias": "support", "weights": adapter_dir("dora", use_dora=True), "base_model": BASE},
            ),
            (
                "/admin/adapters/",
                {
                    "alias": "support",
                    "weights": adapter_dir("llama", base_model_name_or_path="meta/Llama-3"),
                    "base_model": BASE,
                },
            ),
            ("/admin/adapters/", {"alias": "support", "weights": str(tmp_path / "missing"), "base_model": BASE}),
            ("/admin/adapters/", {"alias": "support", "weights": adapter_dir("ok"), "base_model": "unknown-base"}),
            ("/admin/adapters/", {"alias": "bad name!", "weights": adapter_dir("ok2"), "base_model": BASE}),
            ("/admin/adapters/support/promote", {"version": 7}),
            ("/admin/adapters/support/promote", {"version": 1}),  # archived
            ("/admin/adapters/nope/promote", {"version": 1}),
        ]
        for path, body in cases:
            reply = await client.post(path, json=body)
            assert 400 <= reply.status_code < 500, (body, reply.text)
            assert reply.json()["error"]["message"], reply.text
        assert (await client.get("/admin/adapters/")).json() == before
        big = await client.post("/admin/adapters/", json=cases[1][1])
        assert "max-lora-rank 16" in big.json()["error"]["message"]
        dora = await client.post("/admin/adapters/", json=cases[2][1])
        assert "DoRA" in dora.json()["error"]["message"]


async def test_promotion_waits_for_loads_and_in_flight_streams(tmp_path: Path, upstreams, adapter_dir) -> None:
    fake = await upstreams(BASE)
    fake.behaviour.stream_gap_s = 0.05
    fake.behaviour.stream_chunks = 10
    async with running_gateway(adapter_settings(tmp_path, fake.url)) as client:
        await register(client, adapter_dir("one"))
        await register(client, adapter_dir("two"))
        await client.post("/admin/adapters/support/promote", json={"version": 1})

        async def stream(user: str) -> set[str]:
            async with client.stream("POST", "/v1/chat/completions", json=chat("support", user, stream=True)) as reply:
                assert reply.status_code == 200
                events = [line async for line in reply.aiter_lines() if line.startswith("data: {")]
            return {json.loads(event[6:])["model"] for event in events}

        running = [asyncio.create_task(stream(f"u{index}")) for index in range(20)]
        await asyncio.sleep(0.1)
        fake.behaviour.lora_load_s = 0.2
        await client.post("/admin/adapters/support/promote", json={"version": 2})
        assert "support@1" in fake.observed.loras  # still streaming on it
        assert await served_by(client, "support") == "support@2"
        assert all(models == {"support@1"} for models in await asyncio.gather(*running))
        await eventually(lambda: "support@1" not in fake.observed.loras)
        assert fake.observed.lora_calls.index(("load", "support@2")) < fake.observed.lora_calls.index(
            ("unload", "support@1")
        )


async def test_rollback_needs_only_the_previous_weights(tmp_path: Path, upstreams, adapter_dir) -> None:
    fake = await upstreams(BASE)
    async with running_gateway(adapter_settings(tmp_path, fake.url)) as client:
        good = await register(client, adapter_dir("good"))
        broken = await register(client, adapter_dir("broken"))
        await client.post("/admin/adapters/support/promote", json={"version": 1})
        await client.post("/admin/adapters/support/promote", json={"version": 2})
        await eventually(lambda: "support@1" not in fake.observed.loras)
        # The backend restarts and support@2's weights turn out broken: it can no longer be loaded.
        fake.behaviour.broken_adapter_paths = {broken["weights"]}
        fake.observed.loras.clear()
        reply = await client.post("/admin/adapters/support/rollback")
        assert reply.status_code == 200 and reply.json()["production"] == "support@1", reply.text
        assert fake.observed.loras == {"support@1": good["weights"]}
        assert await served_by(client, "support") == "support@1"
        # Promoting the broken version again fails before anything changes.
        refused = await client.post("/admin/adapters/support/promote", json={"version": 2})
        assert refused.status_code == 409  # archived by the rollback
        metrics = (await client.get("/metrics")).text
        assert 'driftgate_adapter_swaps_total{alias="support",kind="rollback"} 1.0' in metrics


async def test_load_failure_leaves_the_alias_where_it_was(tmp_path: Path, upstreams, adapter_dir) -> None:
    fake = await upstreams(BASE)
    async with running_gateway(adapter_settings(tmp_path, fake.url)) as client:
        await register(client, adapter_dir("one"))
        broken = await register(client, adapter_dir("two"))
        await client.post("/admin/adapters/support/promote", json={"version": 1})
        fake.behaviour.broken_adapter_paths = {broken["weights"]}
        reply = await client.post("/admin/adapters/support/promote", json={"version": 2})
        assert reply.status_code == 502 and reply.json()["error"]["code"] == "adapter_load_failed"
        assert (await client.get("/admin/adapters/support")).json()["production"] == "support@1"
        assert await served_by(client, "support") == "support@1"


async def test_late_and_restarted_backends_are_filled(tmp_path: Path, upstreams, adapter_dir) -> None:
    first, late = await upstreams(BASE), await upstreams(BASE)
    late.behaviour.healthy = False
    async with running_gateway(adapter_settings(tmp_path, first.url, late.url)) as client:
        await register(client, adapter_dir("one"))
        await client.post("/admin/adapters/support/promote", json={"version": 1})
        assert "support@1" in first.observed.loras and not late.observed.loras
        late.behaviour.healthy = True
        await eventually(lambda: "support@1" in late.observed.loras)
        late.observed.loras.clear()  # a restart forgets runtime-loaded adapters
        await eventually(lambda: "support@1" in late.observed.loras)


async def test_full_backend_unloads_the_coldest_pinned_version(tmp_path: Path, upstreams, adapter_dir) -> None:
    fake = await upstreams(BASE)
    async with running_gateway(adapter_settings(tmp_path, fake.url, max_loras=2)) as client:
        for name in ("one", "two", "three"):
            await register(client, adapter_dir(name))
        await client.post("/admin/adapters/support/promote", json={"version": 1})
        assert await served_by(client, "support@2") == "support@2"
        assert await served_by(client, "support@3") == "support@3"
        assert fake.observed.loras.keys() == {"support@1", "support@3"}  # production stays, the cold pin goes
        assert await served_by(client, "support@2") == "support@2"
        assert fake.observed.loras.keys() == {"support@1", "support@2"}


async def test_other_workers_follow_the_registry(tmp_path: Path, upstreams, adapter_dir) -> None:
    fake = await upstreams(BASE)
    settings = adapter_settings(tmp_path, fake.url)
    async with running_gateway(settings) as one, running_gateway(settings) as two:
        await register(one, adapter_dir("one"))
        await one.post("/admin/adapters/support/promote", json={"version": 1})
        started = asyncio.get_running_loop().time()
        while (await two.post("/v1/chat/completions", json=chat("support"))).status_code != 200:
            assert asyncio.get_running_loop().time() - started < 2
            await asyncio.sleep(0.05)


async def test_a_version_stays_loaded_while_another_worker_streams_on_it(
    tmp_path: Path, upstreams, adapter_dir
) -> None:
    fake = await upstreams(BASE)
    fake.behaviour.stream_gap_s = 0.05
    fake.behaviour.stream_chunks = 40  # a 2 s answer: many times the grace a left version gets (0.6 s here)
    settings = adapter_settings(tmp_path, fake.url)
    async with running_gateway(settings) as one, running_gateway(settings) as two:
        await register(one, adapter_dir("one"))
        await register(one, adapter_dir("two"))
        await one.post("/admin/adapters/support/promote", json={"version": 1})
        async with asyncio.timeout(5):  # worker two has seen the promotion
            while (await two.post("/v1/chat/completions", json=chat("support"))).status_code != 200:
                await asyncio.sleep(0.05)

        async def stream_on_two() -> set[str]:
            async with two.stream("POST", "/v1/chat/completions", json=chat("support", stream=True)) as reply:
                assert reply.status_code == 200
                events = [line async for line in reply.aiter_lines() if line.startswith("data: {")]
            return {json.loads(event[6:])["model"] for event in events}

        streaming = asyncio.create_task(stream_on_two())
        await asyncio.sleep(0.2)
        assert (await one.post("/admin/adapters/support/promote", json={"version": 2})).status_code == 200
        await asyncio.sleep(1.2)  # worker one has nothing in flight on support@1 and its grace is long over
        assert "support@1" in fake.observed.loras, "unloaded under another worker's stream"
        assert await streaming == {"support@1"}
        await eventually(lambda: "support@1" not in fake.observed.loras)  # then it goes


async def test_nothing_is_unloaded_while_the_other_workers_counts_are_unknown(
    tmp_path: Path, upstreams, adapter_dir
) -> None:
    fake = await upstreams(BASE)
    async with running_gateway(adapter_settings(tmp_path, fake.url)) as client:
        await register(client, adapter_dir("one"))
        await register(client, adapter_dir("two"))
        await client.post("/admin/adapters/support/promote", json={"version": 1})
        board = client.app.state.gateway.adapters.reconciler.board
        exchange = board.exchange

        def unreachable(*args: object, **kwargs: object) -> set[str]:
            raise sa.exc.OperationalError("SELECT", {}, Exception("could not connect to server"))

        board.exchange = unreachable  # the state database goes away
        await asyncio.sleep(0.5)
        await client.post("/admin/adapters/support/promote", json={"version": 2})
        await asyncio.sleep(1.2)  # well past the grace a left version gets (0.6 s here)
        assert "support@1" in fake.observed.loras
        board.exchange = exchange
        await eventually(lambda: "support@1" not in fake.observed.loras)
