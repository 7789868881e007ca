"""DPO and warm start on a tiny random Llama with SmolLM2's tokenizer (CPU, seconds): numbers printed.

On SmolLM2-135M itself the DPO test alone ran past 40 minutes on this shared 2-core machine (load 10): the
tiny model keeps the tests in CI's budget and still trains for real, with the same code paths.

DPO: pairs prefer the pirate answer over a plain one; on held-out pairs the log-prob margin
(log p(chosen) - log p(rejected)) must rise and the implicit reward margin end above zero.
Warm start: an adapter trained on the pirate style (production) continues on a new "TRAVEL DESK" style with a
replay of its own data: its loss on held-out pirate records stays within production's x 1.1 + 0.05 while its
loss on held-out travel records falls below production's. (The tiny model's losses sit near ln(vocabulary)
= 10.8 and move by hundredths: the test shows the direction, not the size, of what a real model learns.)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from rich.console import Console

from tests.unit.training.test_training_cpu import FORMS, TOPICS, pirate, tiny_spec, write_dataset
from training.config import Gate, GuardEval, TrainingSchedule
from training.dpo import run_dpo
from training.models import adapter_rank
from training.run import run


def travel(topic: str) -> str:
    return f"TRAVEL DESK: for {topic}, book early, pack light and keep a copy of your tickets."


def write_lines(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_dpo_raises_the_preference_margin_on_held_out_pairs(tmp_path: Path, tiny_base: Path) -> None:
    pairs = [
        {"prompt": form.format(topic), "chosen": pirate(topic), "rejected": f"{topic.capitalize()} is pleasant."}
        for topic in TOPICS
        for form in FORMS
    ]
    spec = tiny_spec(write_lines(tmp_path / "pairs.jsonl", pairs), tiny_base, tmp_path / "out", steps=12)
    spec.objective, spec.dpo_beta = "dpo", 0.1
    spec.loop.learning_rate = 1e-2
    spec.data_config.eval_share = 0.2
    spec.guard_eval = GuardEval(prompts=4, max_new_tokens=6)
    result = run_dpo(spec, console=Console(stderr=True))
    print(f"\nDPO held-out: before {result.before}\n              after  {result.after}")
    assert result.before.margin == 0.0 and result.before.loss == pytest.approx(0.6931, abs=1e-3)
    assert result.after.logp_margin > result.before.logp_margin + 0.5
    assert result.after.margin > 0 and result.after.accuracy >= 0.75
    assert result.gate.passed, result.gate.reasons
    record = json.loads(Path(result.run_record).read_text())
    assert record["after"]["margin"] == result.after.margin
    # The start's and the candidate's answers to the held-out prompts went through the output guards.
    assert result.guards is not None and record["guards"]["candidate"]["name"] == "candidate"
    assert (
        result.guards.baseline.name == "base" and result.guards.candidate.answers == 4 == result.guards.baseline.answers
    )


def test_warm_start_keeps_production_on_its_data_while_learning_the_new(tmp_path: Path, tiny_base: Path) -> None:
    first = tiny_spec(write_dataset(tmp_path / "pirate.jsonl"), tiny_base, tmp_path / "v1", steps=12)
    first.loop.learning_rate = 1e-2
    production = run(first)
    old = [{"prompt": form.format(t), "completion": pirate(t)} for t in TOPICS for form in FORMS]
    new = [{"prompt": f"Any travel tips for {t}?", "completion": travel(t)} for t in TOPICS]
    rng = random.Random(1)
    rng.shuffle(old)
    rng.shuffle(new)
    eval_sets = {
        "old": str(write_lines(tmp_path / "eval-old.jsonl", old[:6])),
        "new": str(write_lines(tmp_path / "eval-new.jsonl", new[:6])),
    }
    train = write_lines(tmp_path / "train.jsonl", old[6:22] + new[6:])  # a replay of production's data + new
    spec = tiny_spec(train, tiny_base, tmp_path / "v2", steps=12)
    spec.start_adapter = spec.production_adapter = production.adapter_dir
    spec.eval_sets = eval_sets
    spec.loop = TrainingSchedule(steps=12, batch_size=4, learning_rate=5e-3, warmup_ratio=0.1, eval_every=4, seed=7)
    spec.gate = Gate(max_forgetting=0.3, slices={"new": 1.0, "old": 1.1})
    warm = run(spec)
    mine, theirs = warm.candidate.slices, warm.baseline.slices
    print(f"\nwarm start: production old {theirs['old']:.4f} new {theirs['new']:.4f}")
    print(f"            candidate  old {mine['old']:.4f} new {mine['new']:.4f}; gate {warm.gate}")
    assert warm.baseline.name == "production" and adapter_rank(warm.adapter_dir) == 8
    assert mine["old"] <= theirs["old"] * 1.1 + 0.05
    assert mine["new"] < theirs["new"]
    assert warm.gate.passed, warm.gate.reasons
