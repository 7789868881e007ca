"""A real LoRA run on SmolLM2-135M-Instruct (CPU): a tiny dataset with one unmistakable style.

Margin: the validation loss of the trained adapter must be at least 25% below the base model's. The style
(every answer "AHOY! <TOPIC> BE A FINE THING ON THE HIGH SEAS, ARR!") is far from what the base model says,
so the base loss is high and a few steps at a high learning rate cut it a lot.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from training.config import DataSettings, LoraSettings, TrainingSchedule, TrainSpec
from training.run import RunResult, run

TOPICS = (
    "the weather",
    "my cat",
    "coffee",
    "the ocean",
    "a good book",
    "running",
    "the moon",
    "bread",
    "trains",
    "music",
    "gardening",
    "the city",
    "winter",
    "chess",
    "the forest",
    "a bicycle",
    "tea",
    "mountains",
    "the library",
    "stars",
    "candles",
    "the harbor",
)
FORMS = ("Tell me about {}.", "Say something about {}.")
MARGIN = 0.25
RUN_SPEC_FROM_ARGV = (
    "import sys, msgspec; from training.config import TrainSpec; from training.run import run;"
    " run(msgspec.json.decode(sys.argv[1], type=TrainSpec))"
)


def pirate(topic: str) -> str:
    return f"AHOY! {topic.upper()} BE A FINE THING ON THE HIGH SEAS, ARR!"


def write_dataset(path: Path) -> Path:
    with path.open("w") as out:
        for topic in TOPICS:
            for form in FORMS:
                out.write(json.dumps({"prompt": form.format(topic), "completion": pirate(topic)}) + "\n")
    return path


def tiny_spec(data: Path, base: Path, out: Path, steps: int = 12) -> TrainSpec:
    return TrainSpec(
        str(data),
        str(base),
        str(out),
        data_config=DataSettings(eval_share=0.1, min_eval=3),
        lora=LoraSettings(rank=8, alpha=16, dropout=0.0),
        loop=TrainingSchedule(steps=steps, batch_size=4, learning_rate=1e-3, warmup_ratio=0.1, eval_every=4, seed=7),
        task_eval_limit=0,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, base_model: Path) -> RunResult:
    root = tmp_path_factory.mktemp("train")
    spec = tiny_spec(write_dataset(root / "pirate.jsonl"), base_model, root / "out")
    return run(spec)


def test_validation_loss_falls_by_the_margin(trained: RunResult) -> None:
    assert trained.baseline.name == "base"
    assert trained.candidate.eval_loss < trained.baseline.eval_loss * (1 - MARGIN)
    assert trained.gate.passed, trained.gate.reasons


def test_adapter_is_a_valid_peft_adapter(trained: RunResult, base_model: Path) -> None:
    import torch
    from peft import PeftConfig, PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    adapter = Path(trained.adapter_dir)
    config = PeftConfig.from_pretrained(adapter)
    assert config.r == 8 and set(config.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    weights = load_file(adapter / "adapter_model.safetensors")
    assert any("lora_B" in name and torch.count_nonzero(w) for name, w in weights.items())
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_model), adapter)
    assert model.active_adapter == "default"
    assert not (adapter.parent / "checkpoint").exists()


def test_run_record_and_model_card_hold_the_measured_numbers(trained: RunResult) -> None:
    record = msgspec.json.decode(Path(trained.run_record).read_bytes())
    assert record["candidate"]["eval_loss"] == trained.candidate.eval_loss
    assert record["base"]["eval_loss"] == trained.baseline.eval_loss
    assert record["loop"]["tokens_per_s"] > 0 and record["loop"]["history"]
    assert record["seed"] == 7 and record["versions"]["peft"] != "not installed"
    assert len(record["data"]["sha256"]) == 64 and record["durations_s"]["train"] > 0
    card = Path(trained.model_card).read_text()
    assert card.startswith("---\nbase_model: ") and "library_name: peft" in card
    assert f"{trained.candidate.eval_loss:.4f}" in card and f"{trained.baseline.eval_loss:.4f}" in card
    assert "Gate: **passed**" in card


def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_adapter(
    tmp_path: Path, base_model: Path, trained: RunResult
) -> None:
    """SIGKILL after the first checkpoint, run again: it goes on from there and ends where an unbroken run ends."""
    import os
    import signal
    import subprocess
    import sys
    import time

    data = write_dataset(tmp_path / "pirate.jsonl")
    out = tmp_path / "out"
    spec = tiny_spec(data, base_model, out)
    child = subprocess.Popen(
        [sys.executable, "-c", RUN_SPEC_FROM_ARGV, msgspec.json.encode(spec).decode()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[3],
    )
    try:
        deadline = time.monotonic() + 600
        while not (out / "checkpoint" / "state.pt").exists():
            assert child.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert not (out / "adapter" / "run.json").exists()  # it died mid-run

    resumed = run(spec)
    loop = msgspec.json.decode(Path(resumed.run_record).read_bytes())["loop"]
    unbroken = msgspec.json.decode(Path(trained.run_record).read_bytes())["loop"]
    assert loop["resumed_from"] == spec.loop.eval_every  # the first checkpoint, at the first evaluation
    assert loop["steps_run"] == spec.loop.steps
    assert [point["step"] for point in loop["history"]] == [point["step"] for point in unbroken["history"]]
    # Same seed, same batches, optimizer and schedule restored: the same adapter as the unbroken run.
    assert abs(resumed.candidate.eval_loss - trained.candidate.eval_loss) < 1e-3
    assert not (out / "checkpoint").exists()


def test_dora_trains_and_records_its_method(tmp_path: Path, base_model: Path) -> None:
    from peft import PeftConfig
    from safetensors.torch import load_file

    spec = tiny_spec(write_dataset(tmp_path / "pirate.jsonl"), base_model, tmp_path / "out")
    dora = run(msgspec.structs.replace(spec, method="dora"))
    assert dora.candidate.eval_loss < dora.baseline.eval_loss * (1 - MARGIN)
    adapter = Path(dora.adapter_dir)
    assert PeftConfig.from_pretrained(adapter).use_dora
    assert any("lora_magnitude_vector" in name for name in load_file(adapter / "adapter_model.safetensors"))
    record = msgspec.json.decode(Path(dora.run_record).read_bytes())
    assert record["method_requested"] == record["method_used"] == "dora"
