"""The loop's recipe search, warm start and DPO choice through the gateway's own API (training stood in).

The stand-in job writes a run record with the trials a real search would report; the tests check what the
controller asks for (spec) and what it records (timeline, outcome, lessons for the next alert).
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from gateway.loop.policy import LoopTrainSettings
from tests.unit.loop.test_loop_gateway import StandInJobs, alert, chat, correct, loop_gateway, wait_for
from training.config import Recipe, TrainSpec
from training.evaluate import GateVerdict, Miss, ModelScores
from training.preferences import read_pairs
from training.search import Trial
from training.trainer import LoopResult


def failing_trials(spec: TrainSpec) -> list[dict]:
    """Every recipe of the spec's search missed the forgetting limit; the second came closest."""
    assert spec.search is not None
    gaps = [1.80, 1.66, 1.75]
    out = []
    for index, recipe in enumerate(spec.search.recipes[: spec.search.max_trials]):
        miss = Miss("forgetting", gaps[index], 1.65)
        loop = LoopResult(recipe.steps, recipe.steps, 1.0, False, None, 0, 10, 1.0, 10.0, [])
        verdict = GateVerdict(False, ("forgetting",), (miss,))
        out.append(Trial(index, recipe, ModelScores("candidate", 1.0, 2.7), verdict, loop, 1.0, "x").summary())
    return out


class SearchingJobs(StandInJobs):
    def start(self, spec: TrainSpec):
        status = super().start(spec)
        record = Path(status.progress.run_record)
        outcome = json.loads(record.read_bytes())
        outcome["trials"] = failing_trials(spec)
        record.write_text(json.dumps(outcome))
        return status


async def test_a_failed_search_records_every_trial_says_what_to_change_and_the_next_run_starts_closest(
    tmp_path: Path, upstreams
) -> None:
    jobs = SearchingJobs(passes=False)
    async with loop_gateway(tmp_path, upstreams, jobs) as client:
        await correct(client, 6)
        first = (await client.post("/admin/alerts", json=alert())).json()["runs"][0]
        first = await wait_for(client, first["id"], "rejected", "failed")
        assert first["status"] == "rejected", first["timeline"]
        trials = [e for e in first["timeline"] if e["step"] == "trial"]
        assert len(trials) == 3 and trials[1]["data"]["misses"][0]["by"] == round((1.66 - 1.65) / 1.65, 4)
        assert "missed forgetting by 0.6% (1.66 past 1.65)" in trials[1]["detail"]
        outcome = first["timeline"][-1]
        assert outcome["step"] == "outcome" and "max_forgetting" in outcome["detail"]
        assert "approval: manual" in outcome["detail"] and len(outcome["data"]["advice"]) == 2
        tried = jobs.specs[0].search.recipes
        assert tried[0] == Recipe(1e-3, 60, 16, 0.3, 0.5) and len(tried) == 5 and jobs.specs[0].search.max_trials == 3
        assert jobs.specs[0].loop.stop_on_forgetting, "a loop run stops a trial at the forgetting limit"

        await correct(client, 6)
        second = (await client.post("/admin/alerts", json=alert())).json()["runs"][0]
        await wait_for(client, second["id"], "rejected", "failed")
        assert jobs.specs[1].search.recipes[0] == tried[1], "the closest recipe of the last search goes first"
        assert jobs.specs[1].loop.learning_rate == tried[1].learning_rate


async def test_warm_start_continues_from_the_production_adapter(tmp_path: Path, upstreams) -> None:
    jobs = StandInJobs()
    async with loop_gateway(tmp_path, upstreams, jobs, train=LoopTrainSettings(start_from="production")) as client:
        await correct(client, 6)
        run = (await client.post("/admin/alerts", json=alert())).json()["runs"][0]
        run = await wait_for(client, run["id"], "canary", "rejected", "failed")
        production = (await client.get("/admin/adapters/helpdesk")).json()["versions"][0]["weights"]
        assert jobs.specs[0].start_adapter == production == jobs.specs[0].production_adapter
        search = next(e for e in run["timeline"] if e["step"] == "search")
        assert search["detail"].endswith("from helpdesk@1")


async def test_dpo_policy_trains_on_pairs_built_from_feedback_and_keeps_the_dataset(tmp_path: Path, upstreams) -> None:
    jobs = StandInJobs()
    async with loop_gateway(tmp_path, upstreams, jobs, train=LoopTrainSettings(objective="dpo")) as client:
        await correct(client, 6)
        for i in range(2):  # the stand-in upstream repeats its answer: votes for and against it make no pair
            for rating in (1, -1):
                reply = await chat(client, f"Is platform {i} open?")
                body = {"request_id": reply.headers["x-request-id"], "rating": rating}
                assert (await client.post("/v1/feedback", json=body)).status_code == 201
        run = (await client.post("/admin/alerts", json=alert())).json()["runs"][0]
        run = await wait_for(client, run["id"], "canary", "rejected", "failed")
        spec = jobs.specs[0]
        assert spec.objective == "dpo" and spec.start_adapter == spec.production_adapter
        assert spec.guard_eval is not None, "a DPO candidate's answers go through the output guards too"
        assert any(e["step"] == "guard_gate" and e["detail"] == "guard gate passed" for e in run["timeline"])
        pairs = read_pairs(spec.data)
        assert len(pairs) == 6 and all(p.chosen.startswith("TRAVEL DESK") for p in pairs)
        data = next(e for e in run["timeline"] if e["step"] == "data")
        assert data["data"]["pairs"] == 6 and data["data"]["path"] == spec.data, msgspec.json.encode(run["timeline"])
        candidate = (await client.get("/admin/adapters/helpdesk")).json()["versions"][1]
        registered = str(tmp_path / "registered.jsonl")
        assert candidate["training_run"]["dataset"] == registered, "the candidate keeps production's dataset"


async def test_a_dpo_candidate_that_leaks_pii_is_rejected_by_the_guard_gate(tmp_path: Path, upstreams) -> None:
    jobs = StandInJobs(leaks=5)
    async with loop_gateway(tmp_path, upstreams, jobs, train=LoopTrainSettings(objective="dpo")) as client:
        await correct(client, 6)
        run = (await client.post("/admin/alerts", json=alert())).json()["runs"][0]
        run = await wait_for(client, run["id"], "canary", "rejected", "failed")
        assert run["status"] == "rejected" and run["reason"].startswith("guard gate failed: PII in 5/8"), run
        alias = (await client.get("/admin/adapters/helpdesk")).json()
        assert (alias["production"], len(alias["versions"])) == ("helpdesk@1", 1)
