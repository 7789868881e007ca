"""The recipe search through ``training.run.run``, on a tiny random Llama with the real base model's tokenizer.

The model is two layers of width 16 (trains in seconds on a loaded CPU): these tests check the search's
mechanics (trials trained and gated one by one, the kept adapter copied, every trial in run.json, the warm
start keeping its rank), not what a real model learns (tests/unit/training/test_dpo_and_warm_start_cpu.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from tests.unit.training.test_training_cpu import write_dataset
from training.config import DataSettings, Gate, LoraSettings, Recipe, RecipeSearch, TrainingSchedule, TrainSpec
from training.models import adapter_rank
from training.run import run

RECIPES = (Recipe(1e-3, 2, rank=4, general_share=0.0), Recipe(5e-3, 3, rank=2, general_share=0.3))


def spec(data: Path, base: Path, out: Path, **changes: object) -> TrainSpec:
    made = TrainSpec(
        str(data),
        str(base),
        str(out),
        data_config=DataSettings(eval_share=0.1, min_eval=3),
        lora=LoraSettings(rank=4, alpha=8, dropout=0.0),
        loop=TrainingSchedule(steps=2, batch_size=4, eval_every=1, stop_on_forgetting=True),
        task_eval_limit=0,
    )
    return msgspec.structs.replace(made, **changes)


def test_every_trial_is_gated_and_recorded_and_the_closest_is_kept(tmp_path: Path, tiny_base: Path) -> None:
    data = write_dataset(tmp_path / "pirate.jsonl")
    impossible = Gate(min_loss_improvement=0.99)  # no trial can pass: the whole budget is spent
    result = run(spec(data, tiny_base, tmp_path / "out", gate=impossible, search=RecipeSearch(RECIPES, max_trials=3)))
    record = json.loads(Path(result.run_record).read_text())
    trials = record["trials"]
    assert [t["recipe"]["rank"] for t in trials] == [4, 2] and not any(t["passed"] for t in trials)
    assert all(t["misses"][0]["check"] == "validation" and t["misses"][0]["by"] > 0 for t in trials)
    kept = record["kept_trial"]
    assert adapter_rank(result.adapter_dir) == RECIPES[kept].rank and not result.gate.passed
    assert result.candidate.eval_loss == trials[kept]["eval_loss"]
    assert (tmp_path / "out" / "trials" / "1" / "adapter").is_dir()
    assert f"rank {RECIPES[kept].rank}, alpha {2 * RECIPES[kept].rank}" in Path(result.model_card).read_text()


def test_the_search_stops_at_the_first_pass_and_a_warm_start_keeps_its_rank(tmp_path: Path, tiny_base: Path) -> None:
    data = write_dataset(tmp_path / "pirate.jsonl")
    first = run(spec(data, tiny_base, tmp_path / "v1", gate=Gate(max_forgetting=10.0)))
    assert json.loads(Path(first.run_record).read_text())["trials"][0]["recipe"]["rank"] == 4
    warm = run(
        spec(
            data,
            tiny_base,
            tmp_path / "v2",
            gate=Gate(max_forgetting=10.0, min_loss_improvement=-1.0),  # any candidate passes
            start_adapter=first.adapter_dir,
            production_adapter=first.adapter_dir,
            search=RecipeSearch(RECIPES, max_trials=3),
        )
    )
    record = json.loads(Path(warm.run_record).read_text())
    assert len(record["trials"]) == 1 and record["trials"][0]["passed"], "stops at the first pass"
    assert record["trials"][0]["recipe"]["rank"] == 4 == adapter_rank(warm.adapter_dir)
    assert warm.baseline.name == "production"


def test_each_trial_answers_the_held_out_prompts_and_the_answer_check_can_fail_it(
    tmp_path: Path, tiny_base: Path
) -> None:
    data = write_dataset(tmp_path / "pirate.jsonl")
    # A floor above 100% no trial can reach: each trial is generated, compared and failed on its answers.
    gate = Gate(max_forgetting=10.0, min_loss_improvement=-1.0, answer_wins={"eval": 1.01})
    result = run(spec(data, tiny_base, tmp_path / "out", gate=gate, search=RecipeSearch(RECIPES, max_trials=2)))
    trials = json.loads(Path(result.run_record).read_text())["trials"]
    assert len(trials) == 2 and not result.gate.passed and result.guards is None
    for trial in trials:
        assert [m["check"] for m in trial["misses"]] == ["answers_wins:eval"]
        answers = trial["answers"]["eval"]
        assert answers["prompts"] == 4 and 0 <= answers["wins"] <= 4  # the whole eval split
        assert trial["limits"]["answers_wins:eval"] == 1.01
