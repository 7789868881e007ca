"""``model: "auto"``: the alias whose training prompts sit nearest to the prompt, through the real app with keys,
real embeddings of the adapters' registered datasets, and held-out prompts phrased unlike the training ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from demo.corpora import prompts
from gateway.adapters.content_routing import (
    FALLBACK,
    AutoRouteSettings,
    ContentIndex,
    ContentRouter,
    prototypes_of,
)
from gateway.config import AdaptersSettings, DriftWatchSettings, ModelRoute, Settings, load_settings, state_url
from gateway.security.keys import KeyStore
from monitor.request_log import RequestLogSettings
from tests.conftest import running_gateway, settings_for
from tests.unit.adapters.conftest import BASE, write_adapter
from tests.unit.monitor.conftest import MODEL_DIR

HELD_OUT = Path(__file__).resolve().parents[3] / "bench" / "data" / "auto_route_heldout.jsonl"
TOPICS = ("cooking", "programming", "travel")


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def router_over(references: dict[str, np.ndarray], **settings: object) -> ContentRouter:
    router = ContentRouter(AutoRouteSettings(**settings), embed=lambda texts: np.zeros((len(texts), 3)))
    router.index = ContentIndex(references)
    return router


def test_the_nearest_alias_wins_by_its_nearest_prototype_not_its_centroid() -> None:
    # `b` has two clusters: its centroid points nowhere near either, its nearest prototype sits on the query.
    references = {
        "a": np.stack([unit(1, 0.4, 0), unit(1, 0.5, 0)]),
        "b": np.stack([unit(0, 1, 0), unit(0, 1, 0.05), unit(0, 0, 1), unit(0.05, 0, 1)]),
    }
    router = router_over(references, min_similarity=0.5, margin=0.02)
    assert router.choose(unit(0, 1, 0.02)).alias == "b"
    assert router.choose(unit(1, 0.45, 0)).alias == "a"
    two_topics = np.concatenate([np.tile(unit(0, 1, 0), (20, 1)), np.tile(unit(0, 0, 1), (20, 1))])
    found = prototypes_of(two_topics + np.random.default_rng(0).normal(0, 0.01, two_topics.shape), 2)
    assert sorted(np.round(np.abs(found).argmax(axis=1))) == [1, 2]  # one prototype per sub-topic


def test_far_tied_or_fallback_like_prompts_go_to_the_fallback_model() -> None:
    references = {"a": np.stack([unit(1, 0, 0)]), "b": np.stack([unit(0, 1, 0)]), FALLBACK: np.stack([unit(0, 0, 1)])}
    router = router_over(references, min_similarity=0.5, margin=0.1)
    assert router.choose(unit(1, 0.1, 0)).alias == "a"
    far = router.choose(unit(1, 1, 1.5))  # nearest to the fallback's prompts
    assert far.alias is None and far.runner_up is not None
    tie = router.choose(unit(1, 1, 0))  # a and b equally near: no alias is clearly meant
    assert tie.alias is None and abs(tie.similarity - tie.runner_up_similarity) < 1e-6
    low = router_over({"a": np.stack([unit(1, 0, 0)])}, min_similarity=0.9).choose(unit(1, 1, 0))
    assert low.alias is None and 0.7 < low.similarity < 0.72


def test_a_key_only_chooses_among_its_own_adapters() -> None:
    router = router_over({"a": np.stack([unit(1, 0, 0)]), "b": np.stack([unit(0, 1, 0)])}, margin=0.0)
    assert router.choose(unit(0.2, 1, 0)).alias == "b"
    assert router.choose(unit(0.9, 1, 0), allowed=lambda alias: alias == "a").alias == "a"
    assert router.choose(unit(0, 1, 0), allowed=lambda alias: alias == "nope").alias is None


def test_auto_routing_needs_drift_detection_for_its_references(tmp_path: Path) -> None:
    config = tmp_path / "driftgate.yaml"
    config.write_text("adapters: {auto: {}}\n")
    try:
        load_settings(config, environ={})
    except ValueError as exc:
        assert "drift.adapters" in str(exc)
    else:
        raise AssertionError("adapters.auto without drift detection was accepted")
    config.write_text("adapters: {auto: {min_similarity: 0.3}}\ndrift: {adapters: true}\n")
    assert load_settings(config, environ={}).adapters.auto.min_similarity == 0.3


def auto_settings(tmp_path: Path, url: str) -> tuple[Settings, dict[str, str]]:
    settings = settings_for(
        ModelRoute(BASE, [url], max_loras=4, max_lora_rank=16),
        home=str(tmp_path),
        adapters=AdaptersSettings(
            url=f"sqlite:///{tmp_path / 'registry.db'}", poll_s=0.1, reconcile_s=0.2, auto=AutoRouteSettings()
        ),
        drift=DriftWatchSettings(adapters=True, embedder_dir=str(MODEL_DIR)),
        request_log=RequestLogSettings(url=f"sqlite:///{tmp_path / 'log.db'}", max_delay_s=0.05),
    )
    keys = KeyStore(state_url(settings))
    tokens = {scope: keys.create(scope, scope)[1] for scope in ("admin", "inference")}
    tokens["cooking_only"] = keys.create("tenant", "inference", adapters=["cooking"])[1]
    keys.close()
    return settings, tokens


def dataset(tmp_path: Path, topic: str) -> str:
    path = tmp_path / f"{topic}.jsonl"
    lines = [json.dumps({"prompt": prompt, "completion": "ok"}) for prompt in prompts(topic, 200, seed=0)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


async def test_auto_answers_each_held_out_prompt_with_its_topics_adapter(tmp_path: Path, upstreams) -> None:
    fake = await upstreams(BASE)
    settings, tokens = auto_settings(tmp_path, fake.url)
    held_out = [json.loads(line) for line in HELD_OUT.read_text().splitlines()]
    async with running_gateway(settings) as client:
        admin = {"authorization": f"Bearer {tokens['admin']}"}
        for topic in TOPICS:
            body = {
                "alias": topic,
                "weights": write_adapter(tmp_path / topic),
                "base_model": BASE,
                "dataset": dataset(tmp_path, topic),
            }
            assert (await client.post("/admin/adapters/", json=body, headers=admin)).status_code == 201
            promoted = await client.post(f"/admin/adapters/{topic}/promote", json={"version": 1}, headers=admin)
            assert promoted.status_code == 200

        async def ask(token: str | None, text: str, stream: bool = False):
            body = {"model": "auto", "messages": [{"role": "user", "content": text}], "stream": stream}
            headers = {"authorization": f"Bearer {token}"} if token else {}
            return await client.post("/v1/chat/completions", json=body, headers=headers)

        assert (await ask(None, "How long do I roast a chicken?")).status_code == 401
        for scope in ("inference", "cooking_only"):
            listed = await client.get("/v1/models", headers={"authorization": f"Bearer {tokens[scope]}"})
            assert "auto" in [model["id"] for model in listed.json()["data"]]
            one = await client.get("/v1/models/auto", headers={"authorization": f"Bearer {tokens[scope]}"})
            assert one.status_code == 200 and one.json()["id"] == "auto"
        routed = {"right": 0, "wrong": 0, "fallback": 0}
        off_topic_fallbacks = 0
        for row in held_out:
            reply = await ask(tokens["inference"], row["prompt"])
            assert reply.status_code == 200, reply.text
            chosen = reply.headers["x-driftgate-auto-route"].split(";")[0]
            # The fake echoes the model it was sent: the chosen version's LoRA name, or the base model.
            assert reply.json()["model"] == (BASE if chosen == "fallback" else f"{chosen}@1")
            if row["topic"] == "off_topic":
                off_topic_fallbacks += chosen == "fallback"
            else:
                routed["right" if chosen == row["topic"] else "fallback" if chosen == "fallback" else "wrong"] += 1
        on_topic = sum(routed.values())
        print(f"auto routing on {on_topic} held-out prompts: {routed}; off-topic fallbacks {off_topic_fallbacks}/20")
        assert routed["right"] >= 0.75 * on_topic and routed["wrong"] <= 0.1 * on_topic
        assert off_topic_fallbacks >= 0.6 * 20

        streamed = await ask(tokens["inference"], "Give me a vegan recipe for banana pancakes.", stream=True)
        assert streamed.status_code == 200 and streamed.headers["x-driftgate-auto-route"].startswith("cooking;")
        assert '"model":"cooking@1"' in streamed.text.replace(" ", "")

        # A key limited to `cooking` is routed among its own adapters only, and never to the base model.
        own = await ask(tokens["cooking_only"], "What spices go into a good chili?")
        assert own.status_code == 200 and own.json()["model"] == "cooking@1"
        other = await ask(tokens["cooking_only"], "How do I undo a git rebase?")
        assert other.status_code == 404 and other.json()["error"]["code"] == "model_not_found"

        metrics = (await client.get("/metrics", headers=admin)).text
        assert 'driftgate_auto_routes_total{alias="cooking"}' in metrics
        assert 'driftgate_auto_routes_total{alias="fallback"}' in metrics
        assert "driftgate_auto_route_seconds_count" in metrics
